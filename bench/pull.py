"""Benchmark: `sealpod pull` against `skopeo copy docker://... oci:...` + `umoci unpack`, in the same run.

Builds a realistic image (about 200 MB uncompressed, about 7,000 files from /usr/lib/python3* and /usr/share, in
three gzip layers), pushes it to a local docker-registry with skopeo, then times each side several times
(alternating) and prints the medians, their ratio and each side's peak memory (max RSS of its processes).

    .venv/bin/python bench/pull.py [--rounds 3] [--mb 200] [--files 7000] [--dir /dev/shm]

Both sides write into --dir (default: /dev/shm, a tmpfs, when present). On this project's VMs the disk's writeback
swings either side's time from 1 to 6 s from one run to the next; a tmpfs measures the tools, not the disk. Pass
--dir /var/tmp to measure on disk.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import SEALPOD, build_bench_image, image_bench_args, need_tools, report, timed
from sealpod.oci.localregistry import LocalRegistry


def main() -> None:
    args = image_bench_args(__doc__.splitlines()[0])
    need_tools("skopeo", "umoci", "docker-registry")
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-", dir=args.dir))
    try:
        print(f"writing into {work}")
        print("image:", build_bench_image(work / "built", args.mb, args.files))
        with LocalRegistry(work / "registry") as registry:
            ref = f"{registry.host}/bench/image:v1"
            subprocess.run(
                ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{work / 'built'}:bench", f"docker://{ref}"],
                check=True,
                capture_output=True,
            )
            ours_t, ours_m, peer_t, peer_m = [], [], [], []
            for round_ in range(args.rounds):
                out = work / f"ours-{round_}"
                t, m = timed([SEALPOD, "pull", f"docker://{ref}", "--rootfs", str(out), "--tls-verify=false"])
                ours_t.append(t)
                ours_m.append(m)
                shutil.rmtree(out)
                layout, bundle = work / f"peer-{round_}", work / f"bundle-{round_}"
                t1, m1 = timed(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:bench"])
                t2, m2 = timed(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)])
                peer_t.append(t1 + t2)
                peer_m.append(max(m1, m2))
                shutil.rmtree(layout)
                shutil.rmtree(bundle)
                print(f"round {round_ + 1}: sealpod {t:.2f} s; skopeo {t1:.2f} s + umoci {t2:.2f} s = {t1 + t2:.2f} s")
        ours, peer = statistics.median(ours_t), statistics.median(peer_t)
        print(report("sealpod pull:", ours, max(ours_m)))
        print(report("skopeo copy + umoci unpack:", peer, max(peer_m)))
        print(
            f"ratio sealpod / peer: {ours / peer:.2f}x  (targets: 1 MB <= 1.5x, 194 MB <= 0.25x, 574 MB <= 0.2x; "
            "peak <= 40 MiB)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
