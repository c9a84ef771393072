"""Benchmark: starting an encrypted, signed image, sealpod's enclave against skopeo + umoci + runc, in the same run.

The realistic image (about 200 MB, 7,000 files, three gzip layers, plus a busybox layer whose entrypoint prints one
line) is encrypted once for two recipients, a JWE (RSA) key for the peer and a CoCo KEK that the KBS holds for the
enclave, signed with cosign and pushed to a local docker-registry. A KBS runs on 127.0.0.1 with the enclave's
reference values. Timed to the workload's first line of output, alternating, medians of --rounds:

1. cold start: `sealpod run` (attest, policy and KEK from the KBS, signature check, pull, decrypt, unpack into a fresh
   rootfs, boot) with the default gocryptfs rootfs and with --rootfs memory, against `skopeo copy --decryption-key`
   + `umoci unpack` + `runc run` (target <= 1.0x);
2. warm start: `sealpod run` again (sealed gocryptfs rootfs reopened, signatures re-checked, no layer pulled) against
   `runc run` of the unpacked bundle (targets: a fresh enclave <= 10x, a pre-launched one <= 3x).

Each sealpod start is timed twice: with a fresh enclave process (`--no-pool`), and handed to a pre-launched enclave
of `sealpod node enclave-pool` (the pool starts a replacement in the background; the bench gives it a second before
the next pooled start).

    .venv/bin/python bench/run.py [--rounds 3] [--mb 200] [--files 7000] [--dir /dev/shm]
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import SEALPOD, image_bench_args, need_tools, pick_files, rsa_key_files
from sealpod.enclave.measure import measure
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.serving.embedded import EmbeddedKbs
from sealpod.oci.build import LayerSpec, build_image
from sealpod.oci.localregistry import LocalRegistry

KEK_ID = "kbs:///default/image-kek/bench"


def checked(cmd: list[str]) -> None:
    """Run a peer command; exit with its stderr if it fails."""
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed: {proc.stderr.decode(errors='replace')[-2000:]}")


def first_line(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from start to the first line on stdout; the command must then exit 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    _, err = proc.communicate()
    if proc.returncode != 0 or not line:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return elapsed


def start_pool(state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`sealpod node enclave-pool --size 1` on this state dir, once its enclave is ready."""
    pool = subprocess.Popen(
        [SEALPOD, "node", "enclave-pool", "--size", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        if (state / "enclave-pool.sock").exists():
            break
        time.sleep(0.05)
    time.sleep(1.0)  # its enclave's imports and measurement
    return pool


def register_tenant(kbs_url: str, registry_host: str, work: Path) -> None:
    """Give the KBS what the tenant gives it: the KEK, the cosign key, the signature policy for the registry, and this
    machine's enclave's reference values (measured with $SEALPOD_STATE_DIR's signing key)."""
    policy = {
        "default": [{"type": "reject"}],
        "transports": {"docker": {registry_host: [{"type": "sigstoreSigned", "keyPath": "kbs:///k/cosign/1"}]}},
    }
    keks = json.loads((work / "keks.json").read_text())
    with AdminClient(kbs_url) as admin:
        admin.put_resource("default/image-kek/bench", base64.b64decode(keks["default/image-kek/bench"]))
        admin.put_resource("k/cosign/1", (work / "cosign.pub").read_bytes())
        admin.put_resource("default/security-policy/test", json.dumps(policy).encode())
        admin.set_reference(measure().reference_values())


def key_provider_env(work: Path, env: dict[str, str]) -> None:
    """Point ``env`` at an ocicrypt configuration whose attestation-agent provider is sealpod's, with work/keks.json."""
    provider = work / "ocicrypt.json"
    command = {"path": SEALPOD, "args": ["keyprovider", "--keys", str(work / "keks.json")]}
    provider.write_text(json.dumps({"key-providers": {"attestation-agent": {"cmd": command}}}))
    env["OCICRYPT_KEYPROVIDER_CONFIG"] = str(provider)


def publish_tenant_image(work: Path, image: str, public: Path, env: dict[str, str]) -> None:
    """What the tenant does: encrypt work/built:bench for the peer's JWE key and the KBS-held KEK, push it to
    ``image``, make a cosign key and sign it (``env`` from :func:`key_provider_env`, with COSIGN_PASSWORD)."""

    def sealpod(*cli: str) -> None:
        subprocess.run([SEALPOD, *cli], check=True, capture_output=True, env={**os.environ, **env})

    sealpod(
        "image", "encrypt", f"oci:{work / 'built'}:bench", image, "--dest-tls-verify=false",
        "--recipient", f"jwe:{public}", "--recipient", f"provider:attestation-agent:keyid={KEK_ID}",
    )  # fmt: skip
    sealpod("image", "keygen", "--output-key-prefix", str(work / "cosign"))
    sealpod("image", "sign", image, "--key", str(work / "cosign.key"), "--tls-verify=false")


def build(work: Path, mb: int, files: int) -> None:
    chosen = pick_files(mb * 1024 * 1024, files)
    third = len(chosen) // 3
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    build_image(
        work / "built",
        "bench",
        [
            LayerSpec(files=chosen[:third]),
            LayerSpec(files=chosen[third : 2 * third]),
            LayerSpec(files=chosen[2 * third :]),
            LayerSpec(files=[(busybox, "bin/busybox")]),
        ],
        config={"Entrypoint": ["/bin/busybox", "echo", "started"]},
    )
    print(f"image: {len(chosen) + 1} entries")


def main() -> None:
    args = image_bench_args(__doc__.splitlines()[0])
    need_tools("skopeo", "umoci", "runc", "docker-registry", "gocryptfs", "busybox")
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-run-", dir=args.dir))
    kbs: EmbeddedKbs | None = None
    pool: subprocess.Popen[bytes] | None = None
    try:
        print(f"writing into {work}")
        build(work, args.mb, args.files)
        private, public = rsa_key_files(work)
        state = work / "state"
        env = {"SEALPOD_STATE_DIR": str(state), "COSIGN_PASSWORD": "bench"}
        key_provider_env(work, env)
        full_env = {**os.environ, **env}
        with LocalRegistry(work / "registry") as registry:
            image = f"{registry.host}/bench/app:v1"
            publish_tenant_image(work, image, public, env)
            kbs = EmbeddedKbs(work / "kbs", state / "sim-sgx").start()
            os.environ["SEALPOD_STATE_DIR"] = str(state)
            register_tenant(kbs.url, registry.host, work)
            run_cmd = [SEALPOD, "run", image, "--kbs", kbs.url, "--sim", "--tls-verify=false"]
            fresh = [*run_cmd, "--no-pool"]
            pool = start_pool(state, full_env)
            kinds = ("cold", "cold_mem", "warm", "cold_pool", "warm_pool", "peer_cold", "peer_warm")
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for r in range(args.rounds):
                shutil.rmtree(state / "rootfs", ignore_errors=True)
                os.sync()
                times["cold"].append(first_line(fresh, env))
                os.sync()
                times["warm"].append(first_line(fresh, env))
                os.sync()
                times["cold_mem"].append(first_line([*fresh, "--rootfs", "memory"], env))
                shutil.rmtree(state / "rootfs", ignore_errors=True)
                os.sync()
                time.sleep(1.0)
                times["cold_pool"].append(first_line(run_cmd, env))
                os.sync()
                time.sleep(1.0)
                times["warm_pool"].append(first_line(run_cmd, env))
                out = work / f"r{r}"
                out.mkdir()
                os.sync()
                start = time.perf_counter()
                checked(
                    ["skopeo", "copy", "--src-tls-verify=false", f"--decryption-key={private}",
                     f"docker://{image}", f"oci:{out / 'layout'}:bench"]
                )  # fmt: skip
                checked(["umoci", "unpack", "--image", f"{out / 'layout'}:bench", str(out / "bundle")])
                spec_path = out / "bundle" / "config.json"
                spec = json.loads(spec_path.read_text())
                spec["process"]["terminal"] = False
                spec_path.write_text(json.dumps(spec))
                runc = ["runc", "--root", str(work / "runc"), "run", "--bundle", str(out / "bundle")]
                prepared = time.perf_counter() - start
                times["peer_cold"].append(prepared + first_line([*runc, f"b{r}c"]))
                os.sync()
                times["peer_warm"].append(first_line([*runc, f"b{r}w"]))
                shutil.rmtree(out)
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"cold start, sealpod run --no-pool (gocryptfs):     {med['cold']:6.3f} s")
        print(f"cold start, sealpod run --no-pool --rootfs memory: {med['cold_mem']:6.3f} s")
        print(f"cold start, sealpod run, pre-launched enclave:     {med['cold_pool']:6.3f} s")
        print(f"cold start, skopeo + umoci + runc run:             {med['peer_cold']:6.3f} s")
        print(f"  ratio: gocryptfs {med['cold'] / med['peer_cold']:.2f}x, "
              f"memory {med['cold_mem'] / med['peer_cold']:.2f}x, "
              f"pre-launched {med['cold_pool'] / med['peer_cold']:.2f}x (target <= 1.0x)")  # fmt: skip
        print(f"warm start, sealpod run --no-pool (sealed rootfs): {med['warm']:6.3f} s")
        print(f"warm start, sealpod run, pre-launched enclave:     {med['warm_pool']:6.3f} s")
        print(f"warm start, runc run of the bundle:                {med['peer_warm']:6.3f} s")
        print(f"  ratio: fresh enclave {med['warm'] / med['peer_warm']:.1f}x, "
              f"pre-launched {med['warm_pool'] / med['peer_warm']:.1f}x (targets: 10x, 3x)")  # fmt: skip
    finally:
        if pool:
            pool.terminate()
            pool.wait(timeout=30)
        if kbs:
            kbs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
