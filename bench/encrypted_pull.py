"""Benchmark: encrypted images, sealpod against skopeo, in the same run.

The foundation's realistic image (about 200 MB, 7,000 files, three gzip layers) is encrypted by skopeo for a JWE
(RSA) recipient and pushed to a local docker-registry. Timed, alternating, medians of --rounds:

1. `sealpod pull --decryption-key` vs `skopeo copy --decryption-key` + `umoci unpack` (target <= 0.25x);
2. decryption's cost: `sealpod pull --decryption-key` of the encrypted image vs `sealpod pull` of the plain one
   (target: under 15% more);
3. `sealpod image encrypt` vs `skopeo copy --encryption-key`, registry to registry (target <= 0.7x).

    .venv/bin/python bench/encrypted_pull.py [--rounds 3] [--mb 200] [--files 7000] [--dir /dev/shm]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import SEALPOD, build_bench_image, image_bench_args, need_tools, report, rsa_key_files, timed
from sealpod.oci.localregistry import LocalRegistry


def main() -> None:
    args = image_bench_args(__doc__.splitlines()[0])
    need_tools("skopeo", "umoci", "docker-registry")
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-enc-", dir=args.dir))
    try:
        print(f"writing into {work}")
        print("image:", build_bench_image(work / "built", args.mb, args.files))
        private, public = rsa_key_files(work)
        with LocalRegistry(work / "registry") as registry:
            plain, encrypted = f"{registry.host}/bench/plain:v1", f"{registry.host}/bench/enc:v1"
            subprocess.run(
                ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{work / 'built'}:bench", f"docker://{plain}"],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    f"--encryption-key=jwe:{public}",
                    f"docker://{plain}",
                    f"docker://{encrypted}",
                ],
                check=True,
                capture_output=True,
            )
            times: dict[str, list[float]] = {k: [] for k in ("dec", "plain", "peer", "enc", "peer_enc")}
            peaks: dict[str, list[int]] = {k: [] for k in times}
            for r in range(args.rounds):
                out = work / f"r{r}"
                for key, cmd in (
                    (
                        "dec",
                        [
                            SEALPOD,
                            "pull",
                            encrypted,
                            "--rootfs",
                            str(out / "dec"),
                            "--tls-verify=false",
                            "--decryption-key",
                            str(private),
                        ],
                    ),
                    ("plain", [SEALPOD, "pull", plain, "--rootfs", str(out / "plain"), "--tls-verify=false"]),
                    (
                        "enc",
                        [
                            SEALPOD,
                            "image",
                            "encrypt",
                            plain,
                            f"{registry.host}/bench/ours{r}:v1",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            "--recipient",
                            f"jwe:{public}",
                        ],
                    ),
                    (
                        "peer_enc",
                        [
                            "skopeo",
                            "copy",
                            "--src-tls-verify=false",
                            "--dest-tls-verify=false",
                            f"--encryption-key=jwe:{public}",
                            f"docker://{plain}",
                            f"docker://{registry.host}/bench/theirs{r}:v1",
                        ],
                    ),
                ):
                    t, m = timed(cmd)
                    times[key].append(t)
                    peaks[key].append(m)
                t1, m1 = timed(
                    [
                        "skopeo",
                        "copy",
                        "--src-tls-verify=false",
                        f"--decryption-key={private}",
                        f"docker://{encrypted}",
                        f"oci:{out / 'layout'}:bench",
                    ]
                )
                t2, m2 = timed(["umoci", "unpack", "--image", f"{out / 'layout'}:bench", str(out / "bundle")])
                times["peer"].append(t1 + t2)
                peaks["peer"].append(max(m1, m2))
                shutil.rmtree(out)
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        peak = {k: max(v) for k, v in peaks.items()}
        print(report("sealpod pull --decryption-key:", med["dec"], peak["dec"]))
        print(report("skopeo copy --decryption-key + umoci:", med["peer"], peak["peer"]))
        print(f"  ratio: {med['dec'] / med['peer']:.2f}x (target <= 0.25x)")
        print(report("sealpod pull (plain image):", med["plain"], peak["plain"]))
        print(f"  decryption adds {100 * (med['dec'] / med['plain'] - 1):.0f}% (target < 15%)")
        print(report("sealpod image encrypt:", med["enc"], peak["enc"]))
        print(report("skopeo copy --encryption-key:", med["peer_enc"], peak["peer_enc"]))
        print(f"  ratio: {med['enc'] / med['peer_enc']:.2f}x (target <= 0.7x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
