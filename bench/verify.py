"""Benchmark: what checking signatures adds to a pull, for sealpod and for skopeo 1.18, in the same run.

An image (by default a small one, 20 MB / 1,000 files, so that the pull's own jitter does not hide a cost that does
not depend on the image's size) is pushed to a local docker-registry and signed (cosign format) by sealpod. Each
side pulls it with a policy that accepts anything and with a `sigstoreSigned` policy, alternating, --rounds times;
the difference of the medians is what verification costs (target for sealpod: under 50 ms). The in-process cost of
sealpod's check (fetch the attachment, verify, evaluate) is printed too, as it is less noisy than whole pulls.

    .venv/bin/python bench/verify.py [--rounds 11] [--mb 20] [--files 1000] [--dir /dev/shm]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import SEALPOD, build_bench_image, image_bench_args, need_tools, timed
from sealpod.oci.localregistry import LocalRegistry

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    args = image_bench_args(__doc__.splitlines()[0], rounds=11, mb=20, files=1000)
    need_tools("skopeo", "umoci", "docker-registry")
    trixie = (
        Path(
            subprocess.run([str(REPO / "scripts/fetch-trixie-tools.sh")], check=True, capture_output=True, text=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        / "bin"
    )
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-verify-", dir=args.dir))
    env = {"COSIGN_PASSWORD": "bench"}
    try:
        print("image:", build_bench_image(work / "built", args.mb, args.files))
        (work / "registries.d").mkdir()
        (work / "registries.d/default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
        with LocalRegistry(work / "registry") as registry:
            ref = f"{registry.host}/bench/signed:v1"
            subprocess.run(
                ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{work / 'built'}:bench", f"docker://{ref}"],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [SEALPOD, "image", "keygen", "--output-key-prefix", str(work / "k")],
                check=True,
                capture_output=True,
                env={**os.environ, **env},
            )
            subprocess.run(
                [SEALPOD, "image", "sign", ref, "--key", str(work / "k.key"), "--tls-verify=false"],
                check=True,
                capture_output=True,
                env={**os.environ, **env},
            )
            anything = work / "anything.json"
            anything.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
            signed = work / "signed.json"
            signed.write_text(
                json.dumps(
                    {
                        "default": [{"type": "sigstoreSigned", "keyPath": str(work / "k.pub")}],
                        "transports": {"oci": {"": [{"type": "insecureAcceptAnything"}]}},
                    }
                )
            )
            times: dict[str, list[float]] = {k: [] for k in ("ours_plain", "ours_signed", "peer_plain", "peer_signed")}
            for r in range(args.rounds):
                for key, policy in (("ours_plain", anything), ("ours_signed", signed)):
                    out = work / f"{key}-{r}"
                    t, _ = timed(
                        [
                            SEALPOD,
                            "pull",
                            ref,
                            "--rootfs",
                            str(out),
                            "--tls-verify=false",
                            "--policy",
                            str(policy),
                            "--registries-d",
                            str(work / "registries.d"),
                        ]
                    )
                    times[key].append(t)
                    shutil.rmtree(out)
                for key, policy in (("peer_plain", anything), ("peer_signed", signed)):
                    out = work / f"{key}-{r}"
                    t, _ = timed(
                        [
                            str(trixie / "skopeo"),
                            "--policy",
                            str(policy),
                            "--registries.d",
                            str(work / "registries.d"),
                            "copy",
                            "--src-tls-verify=false",
                            "--remove-signatures",
                            f"docker://{ref}",
                            f"oci:{out}:v1",
                        ]
                    )
                    times[key].append(t)
                    shutil.rmtree(out)
            in_process = _in_process(ref, signed, work / "registries.d", args.rounds)
        med = {k: statistics.median(v) for k, v in times.items()}
        ours = med["ours_signed"] - med["ours_plain"]
        peer = med["peer_signed"] - med["peer_plain"]
        print(
            f"sealpod pull:      {med['ours_plain']:.3f} s unsigned policy, {med['ours_signed']:.3f} s sigstoreSigned:"
            f" {ours * 1000:+.0f} ms"
        )
        print(
            f"skopeo 1.18 copy:  {med['peer_plain']:.3f} s unsigned policy, {med['peer_signed']:.3f} s sigstoreSigned:"
            f" {peer * 1000:+.0f} ms"
        )
        print(f"sealpod's check in process (attachment fetch, verify, evaluate): {in_process * 1000:.1f} ms median")
        print("(differences within a few ms of zero are the pulls' jitter: the check itself is the in-process figure)")
        print("target: sealpod adds under 50 ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _in_process(ref: str, policy: Path, registries_d: Path, rounds: int) -> float:
    from sealpod.oci.platform import host_platform
    from sealpod.oci.source import RegistryOptions, open_store, parse_location, resolve
    from sealpod.signature.policy import ImageUnderCheck, load_policy
    from sealpod.signature.registriesd import RegistriesD
    from sealpod.signature.verifier import ImageSignatures

    location = parse_location(ref)
    store = open_store(location, RegistryOptions(tls_verify=False))
    image = resolve(store, host_platform())
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        checked = load_policy(policy)
        signatures = ImageSignatures(location.reference, image.manifest_digest, store, RegistriesD.load(registries_d))
        checked.evaluate(ImageUnderCheck("docker", location.reference, image.manifest_digest), signatures)
        samples.append(time.perf_counter() - start)
    store.close()
    return statistics.median(samples)


if __name__ == "__main__":
    main()
