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

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sealpod.oci.build import LayerSpec, build_image
from sealpod.oci.localregistry import LocalRegistry

ROOTS = [*sorted(Path("/usr/lib").glob("python3*")), Path("/usr/share")]


def pick_files(max_bytes: int, max_files: int) -> list[tuple[Path, str]]:
    """Files and dirs from ROOTS, in a stable order, until either bound is reached (small files of /usr/share are
    passed over so that the image has realistic bulk as well as many entries)."""
    chosen: list[tuple[Path, str]] = []
    total = 0
    for root in ROOTS:
        min_size = 12 * 1024 if root == Path("/usr/share") else 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            here = Path(dirpath)
            chosen.append((here, str(here.relative_to("/"))))
            for name in sorted(filenames):
                path = here / name
                if path.is_symlink() or not path.is_file():
                    continue
                size = path.stat().st_size
                if size < min_size:
                    continue
                if total + size > max_bytes or len(chosen) >= max_files:
                    return chosen
                total += size
                chosen.append((path, str(path.relative_to("/"))))
    return chosen


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command (after a sync, so earlier writeback does not interfere)."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        assert proc.stderr is not None
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode(errors='replace')}")
    return elapsed, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=7000)
    default_dir = "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()
    parser.add_argument("--dir", default=default_dir, help="where both sides write (default: %(default)s)")
    args = parser.parse_args()
    for tool in ("skopeo", "umoci", "docker-registry"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: run ./setup.sh test first")
    sealpod = str(Path(sys.executable).with_name("sealpod"))
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-", dir=args.dir))
    try:
        files = pick_files(args.mb * 1024 * 1024, args.files)
        third = len(files) // 3
        layers = [
            LayerSpec(files=files[:third]),
            LayerSpec(files=files[third : 2 * third]),
            LayerSpec(files=files[2 * third :]),
        ]
        build_image(work / "built", "bench", layers)
        size = sum(p.stat().st_size for p, _ in files if p.is_file())
        blobs = sum(p.stat().st_size for p in (work / "built/blobs/sha256").iterdir())
        print(f"writing into {work}")
        print(f"image: {len(files)} entries, {size / 1e6:.0f} MB uncompressed, {blobs / 1e6:.0f} MB of blobs")
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
                t, m = timed([sealpod, "pull", f"docker://{ref}", "--rootfs", str(out), "--tls-verify=false"])
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
        print(f"sealpod pull:          {ours:6.2f} s  peak {max(ours_m) / 2**20:5.0f} MiB")
        print(f"skopeo copy + umoci:   {peer:6.2f} s  peak {max(peer_m) / 2**20:5.0f} MiB")
        print(f"ratio sealpod / peer:  {ours / peer:6.2f}x  (target <= 0.5x, peak < 80 MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
