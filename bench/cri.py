"""Benchmark: a pod through CRI, from RunPodSandbox to the workload's first log line, as kubelet drives containerd.

The realistic image (about 200 MB, 7,000 files, three gzip layers plus a busybox layer whose entrypoint prints one
line) runs two ways on the same containerd 1.6 in the same run, alternating, cold each round (image removed and
garbage-collected, the enclave's rootfs volume removed):

1. sealpod: the encrypted, signed image under the ``sealpod`` runtime handler and snapshotter (CRI PullImage fetches
   the manifest and config only; the enclave attests to a KBS on 127.0.0.1, pulls, verifies, decrypts and unpacks);
   with the default gocryptfs rootfs (a fresh enclave, and a pre-launched one of ``sealpod node enclave-pool``, which
   the runtime takes when the node config's ``use_pool`` allows) and with the memory rootfs;
2. runc: the same image unencrypted under the default runc handler (containerd pulls and unpacks it).

    .venv/bin/python bench/cri.py [--rounds 3] [--mb 200] [--files 7000] [--dir /dev/shm]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SEALPOD, image_bench_args, need_tools
from run import KEK_ID, build, register_tenant

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cri.containerd import Containerd, CriClient, RuntimeHandler, push_sandbox_image
from tests.cri.proto import cri_subset_pb2 as pb

from sealpod.kbs.serving.embedded import EmbeddedKbs
from sealpod.oci.localregistry import LocalRegistry
from sealpod.runtime.containerd_config import sealpod_settings

BIN = Path(sys.executable).parent


def runtime_handler(work: Path, name: str, kbs_url: str, state: Path, rootfs: str, pool: bool) -> RuntimeHandler:
    """sealpod-runtime with a node config of its own (the KBS, the sim platform, the rootfs kind, the pool)."""
    config = work / f"{name}.toml"
    config.write_text(
        f'kbs_url = "{kbs_url}"\nallow_sim = true\nregistry_tls_verify = false\nrootfs = "{rootfs}"\n'
        f'state_dir = "{state}"\nuse_pool = {str(pool).lower()}\n'
    )
    wrapper = work / name
    wrapper.write_text(f'#!/bin/sh\nSEALPOD_RUNTIME_CONFIG={config} exec {BIN / "sealpod-runtime"} "$@"\n')
    wrapper.chmod(0o755)
    return RuntimeHandler(binary_name=str(wrapper))


def first_log_line(cri: CriClient, handler: str, image: str, name: str) -> float:
    """Seconds from RunPodSandbox to the first line of the container's CRI log; the pod is removed after."""
    start = time.perf_counter()
    pod = cri.run_pod(name, runtime_handler=handler)
    cri.pull_image(image, pod_id=pod)
    container = cri.create_container(pod, "app", image)
    cri.start_container(container)
    log = Path(cri.container_status(container).log_path)
    deadline = time.monotonic() + 300
    polls = 0
    while not (log.exists() and b" stdout " in log.read_bytes()):
        polls += 1
        exited = polls % 20 == 0 and cri.container_status(container).state == pb.CONTAINER_EXITED
        if exited or time.monotonic() > deadline:
            raise SystemExit(f"{handler}: no output in {log}: {log.read_text() if log.exists() else '(none)'}")
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    status = cri.wait_for_exit(container, timeout=60)
    if status.exit_code != 0:
        raise SystemExit(f"{handler}: the workload exited {status.exit_code}: {log.read_text()}")
    cri.remove_container(container)
    cri.stop_pod(pod)
    cri.remove_pod(pod)
    cri.remove_image(image)
    return elapsed


def main() -> None:
    args = image_bench_args(__doc__.splitlines()[0])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (containerd, pods, bridge) when stopped
    need_tools("skopeo", "docker-registry", "gocryptfs", "busybox", "containerd", "runc")
    work = Path(tempfile.mkdtemp(prefix="sp-cri-", dir=args.dir))
    kbs: EmbeddedKbs | None = None
    snapshotter: subprocess.Popen[bytes] | None = None
    pool: subprocess.Popen[bytes] | None = None
    try:
        print(f"writing into {work}")
        build(work, args.mb, args.files)
        state = work / "state"
        env = {**os.environ, "SEALPOD_STATE_DIR": str(state), "COSIGN_PASSWORD": "bench"}
        command = {"path": SEALPOD, "args": ["keyprovider", "--keys", str(work / "keks.json")]}
        (work / "ocicrypt.json").write_text(json.dumps({"key-providers": {"attestation-agent": {"cmd": command}}}))
        env["OCICRYPT_KEYPROVIDER_CONFIG"] = str(work / "ocicrypt.json")
        with LocalRegistry(work / "registry") as registry:
            encrypted, plain = f"{registry.host}/bench/app:v1", f"{registry.host}/bench/plain:v1"

            def sealpod(*cli: str) -> None:
                subprocess.run([SEALPOD, *cli], check=True, capture_output=True, env=env)

            sealpod(
                "image", "encrypt", f"oci:{work / 'built'}:bench", encrypted, "--dest-tls-verify=false",
                "--recipient", f"provider:attestation-agent:keyid={KEK_ID}",
            )  # fmt: skip
            sealpod("image", "keygen", "--output-key-prefix", str(work / "cosign"))
            sealpod("image", "sign", encrypted, "--key", str(work / "cosign.key"), "--tls-verify=false")
            subprocess.run(
                ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{work / 'built'}:bench", f"docker://{plain}"],
                check=True,
                capture_output=True,
            )
            kbs = EmbeddedKbs(work / "kbs", state / "sim-sgx").start()
            os.environ["SEALPOD_STATE_DIR"] = str(state)
            register_tenant(kbs.url, registry.host, work)

            socket = work / "snap.sock"
            settings = sealpod_settings(str(BIN / "sealpod-runtime"), str(socket))
            snapshotter_log = (work / "snapshotter.log").open("wb")
            serve = ["snapshotter", "serve", "--socket", str(socket), "--root", str(work / "snapshots")]
            snapshotter = subprocess.Popen(
                [SEALPOD, *serve, "--containerd-root", str(work / "containerd" / "root")],
                stdout=snapshotter_log,
                stderr=snapshotter_log,
            )
            while not socket.exists():
                time.sleep(0.02)
            ctd = Containerd(
                work / "containerd",
                sandbox_image=push_sandbox_image(registry.host, work / "pause"),
                registries=[registry.host],
                runtimes={
                    "sealpod": runtime_handler(work, "sealpod", kbs.url, state, "gocryptfs", pool=False),
                    "sealpod-mem": runtime_handler(work, "sealpod-mem", kbs.url, state, "memory", pool=False),
                    "sealpod-pool": runtime_handler(work, "sealpod-pool", kbs.url, state, "gocryptfs", pool=True),
                },
                snapshotter=settings["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["snapshotter"],
                proxy_plugins={name: (p["type"], p["address"]) for name, p in settings["proxy_plugins"].items()},
            )
            pool_log = work / "pool.log"
            with pool_log.open("wb") as out:
                pool = subprocess.Popen([SEALPOD, "node", "enclave-pool", "--size", "2"], env=env, stderr=out)
            while "listening on" not in pool_log.read_text():
                if pool.poll() is not None:
                    raise SystemExit(f"the enclave pool did not start: {pool_log.read_text()}")
                time.sleep(0.05)
            with ctd:
                cri = ctd.client()
                first_log_line(cri, "runc", plain, "warmup")  # the pause image, once, for both sides
                times: dict[str, list[float]] = {"sealpod": [], "sealpod_mem": [], "sealpod_pool": [], "runc": []}
                for r in range(args.rounds):
                    shutil.rmtree(state / "rootfs", ignore_errors=True)
                    os.sync()
                    times["sealpod"].append(first_log_line(cri, "sealpod", encrypted, f"s{r}"))
                    os.sync()
                    times["sealpod_mem"].append(first_log_line(cri, "sealpod-mem", encrypted, f"m{r}"))
                    shutil.rmtree(state / "rootfs", ignore_errors=True)
                    os.sync()
                    times["sealpod_pool"].append(first_log_line(cri, "sealpod-pool", encrypted, f"p{r}"))
                    os.sync()
                    times["runc"].append(first_log_line(cri, "runc", plain, f"r{r}"))
                    print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"RunPodSandbox to first log line, sealpod (gocryptfs rootfs): {med['sealpod']:6.2f} s")
        print(f"RunPodSandbox to first log line, sealpod (memory rootfs):    {med['sealpod_mem']:6.2f} s")
        print(f"RunPodSandbox to first log line, sealpod, pre-launched:      {med['sealpod_pool']:6.2f} s")
        print(f"RunPodSandbox to first log line, runc, unencrypted image:    {med['runc']:6.2f} s")
        print(
            f"  ratio: gocryptfs {med['sealpod'] / med['runc']:.2f}x, memory {med['sealpod_mem'] / med['runc']:.2f}x, "
            f"pre-launched {med['sealpod_pool'] / med['runc']:.2f}x (target <= 0.5x)"
        )
    finally:
        if pool:
            pool.terminate()
            pool.wait(30)
        if snapshotter:
            snapshotter.terminate()
            snapshotter.wait(10)
        if kbs:
            kbs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
