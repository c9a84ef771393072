"""Benchmark: node density, N enclaves of one image against N runc containers of the same bundle, in the same run.

One small image (busybox, and a page its httpd serves), encrypted with a CoCo KEK the KBS holds and signed with
cosign, in a local docker-registry; a KBS on 127.0.0.1 with this machine's enclave reference values. Then:

1. N times `sealpod run -d --rootfs memory --net host --no-pool` (each a fresh enclave that attests, fetches the KEK,
   checks the signature, pulls, decrypts and boots), each workload's httpd on its own loopback port; then all stopped;
2. the same N times through `sealpod node enclave-pool --size 2` (each enclave a fork of the pool's zygote, which does
   the same per request);
3. N times `runc run -d` of the bundle skopeo + umoci made of the same image (one shared read-only rootfs), the same
   httpd on its own port.

Each container counts as started when its httpd answers with the page. With all N running, the memory of each
side is the sum of the proportional set size (PSS, /proc/PID/smaps_rollup) of every process a container keeps:
sealpod's supervisor, enclave and workload (and, pooled, the pool, its zygote and its idle enclaves, once per node);
runc's container process (runc itself has exited). Prints totals, per-container figures and the ratios (goal: <= 3x
runc's memory per container).

    .venv/bin/python bench/density.py [--count 50] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import SEALPOD, default_dir, need_tools, rsa_key_files
from run import checked, key_provider_env, publish_tenant_image, register_tenant
from sealpod._internal.net import free_port
from sealpod._internal.processes import descendants
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.serving.embedded import EmbeddedKbs
from sealpod.oci.build import LayerSpec, build_image
from sealpod.oci.localregistry import LocalRegistry

PAGE = b"sealpod density bench\n"
SERVE = 'exec /bin/busybox httpd -f -p "127.0.0.1:$PORT" -h /www'


def build(work: Path) -> None:
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    www = work / "www-src" / "www"
    www.mkdir(parents=True)
    (www / "index.html").write_bytes(PAGE)
    build_image(
        work / "built",
        "bench",
        [LayerSpec(files=[(busybox, "bin/busybox")]), LayerSpec(source=work / "www-src")],
        config={"Entrypoint": ["/bin/busybox", "sh", "-c", SERVE]},
    )


def answered(port: int, deadline: float) -> bool:
    """Whether the httpd on ``port`` serves the page before ``deadline``."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as response:
                if response.read() == PAGE:
                    return True
        except OSError:
            time.sleep(0.01)
    return False


def pss_kib(pids: set[int]) -> int:
    """The summed PSS of ``pids`` (processes gone meanwhile count nothing)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def sealpod_pids(state: Path, pool: int | None) -> dict[str, set[int]]:
    """Every process of every detached sealpod container by role: the supervisors, the enclaves (the Python agent
    that attested and unpacked) and what runs below the enclaves (the workloads); with the ``pool`` pid, the pool's
    own processes (itself, its zygote, its idle pre-launched enclaves)."""
    roles: dict[str, set[int]] = {"supervisor": set(), "enclave": set(), "workload": set()}
    for record in (state / "containers").glob("*/state.json"):
        data = json.loads(record.read_text())
        pid_file = record.with_name("enclave-pid")  # the supervisor writes it once the enclave runs
        enclave = int(pid_file.read_text()) if pid_file.exists() else 0
        below = descendants(enclave) - {enclave} if enclave else set()
        if enclave:
            roles["enclave"].add(enclave)
        roles["workload"] |= below
        if data.get("supervisor_pid"):
            roles["supervisor"] |= descendants(int(data["supervisor_pid"])) - below - {enclave}
    if pool is not None:
        roles["pool"] = descendants(pool) - roles["enclave"] - roles["workload"]
    return roles


def start_pool(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`sealpod node enclave-pool --size 2`, once it listens."""
    with log.open("wb") as out:
        pool = subprocess.Popen([SEALPOD, "node", "enclave-pool", "--size", "2"], env=env, stderr=out)
    deadline = time.monotonic() + 120
    while "listening on" not in log.read_text():
        if pool.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the enclave pool did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return pool


def stop_all(state: Path, env: dict[str, str]) -> None:
    """Stop and remove every detached sealpod container, eight at a time (busybox httpd ignores SIGTERM as its
    namespace's pid 1, so each stop takes its timeout: 1 s here)."""

    def stop(name: str) -> None:
        subprocess.run([SEALPOD, "stop", "-t", "1", name], capture_output=True, env=env, timeout=60)
        subprocess.run([SEALPOD, "rm", "-f", name], capture_output=True, env=env, timeout=60)  # even if stop was slow

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(stop, [record.parent.name for record in (state / "containers").glob("*/state.json")]))


def peer_bundles(work: Path, image: str, private: Path, count: int) -> tuple[list[Path], list[int]]:
    """skopeo + umoci's bundle, then ``count`` bundle directories sharing its rootfs read-only, each with its port."""
    checked(
        ["skopeo", "copy", "--src-tls-verify=false", f"--decryption-key={private}",
         f"docker://{image}", f"oci:{work / 'layout'}:bench"]
    )  # fmt: skip
    checked(["umoci", "unpack", "--image", f"{work / 'layout'}:bench", str(work / "bundle")])
    spec = json.loads((work / "bundle" / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["root"] = {"path": str(work / "bundle" / "rootfs"), "readonly": True}
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
    bundles, ports = [], []
    for i in range(count):
        port = free_port()
        bundle = work / "bundles" / f"c{i}"
        bundle.mkdir(parents=True)
        own = json.loads(json.dumps(spec))
        own["process"]["env"] = [*own["process"]["env"], f"PORT={port}"]
        (bundle / "config.json").write_text(json.dumps(own))
        bundles.append(bundle)
        ports.append(port)
    return bundles, ports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--dir", default=default_dir(), help="where every side writes (default: %(default)s)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started on a timeout's SIGTERM too
    need_tools("skopeo", "umoci", "runc", "docker-registry", "busybox")
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-density-", dir=args.dir))
    state = work / "state"
    env = {**os.environ, "SEALPOD_STATE_DIR": str(state), "COSIGN_PASSWORD": "bench"}
    runc_root = work / "runc"
    started_peer: list[str] = []
    kbs: EmbeddedKbs | None = None
    pool: subprocess.Popen[bytes] | None = None
    try:
        print(f"writing into {work}; {args.count} containers a side")
        build(work)
        private, public = rsa_key_files(work)
        key_provider_env(work, env)
        with LocalRegistry(work / "registry") as registry:
            image = f"{registry.host}/bench/density:v1"

            def sealpod(*cli: str) -> subprocess.CompletedProcess[bytes]:
                proc = subprocess.run([SEALPOD, *cli], check=False, capture_output=True, env=env)
                if proc.returncode != 0:
                    raise SystemExit(f"sealpod {' '.join(cli[:4])} failed ({proc.returncode}): {proc.stderr!r:.2000}")
                return proc

            publish_tenant_image(work, image, public, env)
            kbs = EmbeddedKbs(work / "kbs", state / "sim-sgx").start()
            os.environ["SEALPOD_STATE_DIR"] = str(state)
            register_tenant(kbs.url, registry.host, work)
            with AdminClient(kbs.url) as admin:  # the tenant lets the host choose each workload's port, nothing else
                admin.put_resource("default/run-policy/test", json.dumps({"allow_env": ["PORT"]}).encode())

            def start_enclaves(pooled: bool) -> tuple[list[float], dict[str, int]]:
                times: list[float] = []
                for i in range(args.count):
                    port = free_port()
                    start = time.perf_counter()
                    sealpod(
                        "run", "-d", "--name", f"d{i}", "--rootfs", "memory", "--net", "host",
                        *(() if pooled else ("--no-pool",)),
                        "-e", f"PORT={port}", image, "--kbs", kbs_url, "--sim", "--tls-verify=false",
                    )  # fmt: skip
                    if not answered(port, time.monotonic() + 60):
                        logs = subprocess.run([SEALPOD, "logs", f"d{i}"], capture_output=True, env=env, check=False)
                        raise SystemExit(f"enclave d{i} did not answer on port {port}: {logs.stdout!r:.2000}")
                    times.append(time.perf_counter() - start)
                roles = sealpod_pids(state, pool.pid if pool else None)
                print(f"sealpod ({'pooled' if pooled else 'fresh'}): {args.count} enclaves answered")
                return times, {role: pss_kib(pids) for role, pids in roles.items()}

            kbs_url = kbs.url
            ours, by_role = start_enclaves(pooled=False)
            stop_all(state, env)
            pool = start_pool(env, work / "pool.log")
            pooled, pooled_by_role = start_enclaves(pooled=True)
            stop_all(state, env)
            pool.terminate()
            pool.wait(timeout=60)
            pool = None

            bundles, ports = peer_bundles(work, image, private, args.count)
            peer: list[float] = []
            for i, (bundle, port) in enumerate(zip(bundles, ports, strict=True)):
                start = time.perf_counter()
                # the container keeps runc's stdio: a pipe here would never reach EOF
                subprocess.run(
                    ["runc", "--root", str(runc_root), "run", "-d", "--bundle", str(bundle), f"p{i}"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
                started_peer.append(f"p{i}")
                if not answered(port, time.monotonic() + 30):
                    raise SystemExit(f"runc container p{i} did not answer on port {port}")
                peer.append(time.perf_counter() - start)
            peer_pids: set[int] = set()
            for name in started_peer:
                state_json = subprocess.run(
                    ["runc", "--root", str(runc_root), "state", name], capture_output=True, check=True
                ).stdout
                peer_pids |= descendants(int(json.loads(state_json)["pid"]))
            peer_kib = pss_kib(peer_pids)
        n = args.count
        peer_per = peer_kib / n / 1024
        print(f"memory (PSS), runc:           {peer_kib / 1024:8.1f} MiB total, {peer_per:6.2f} MiB per container")
        for label, roles in (("sealpod fresh:", by_role), ("sealpod pooled:", pooled_by_role)):
            total = sum(roles.values())
            print(f"memory (PSS), {label:15} {total / 1024:8.1f} MiB total, {total / n / 1024:6.2f} MiB per enclave, "
                  f"{total / max(peer_kib, 1):.1f}x runc's (goal <= 3x)")  # fmt: skip
            print("  per enclave by role: " + ", ".join(f"{r} {k / n / 1024:.2f} MiB" for r, k in roles.items()))
        peer_med = statistics.median(peer)
        print(f"start to first answer, runc:           median {peer_med:.3f} s, max {max(peer):.3f} s")
        for label, times in (("sealpod fresh:", ours), ("sealpod pooled:", pooled)):
            med = statistics.median(times)
            print(f"start to first answer, {label:15} median {med:.3f} s, max {max(times):.3f} s, "
                  f"{med / peer_med:.1f}x runc's")  # fmt: skip
    finally:
        for name in started_peer:
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", name], capture_output=True)
        stop_all(state, env)
        if pool:
            pool.terminate()
            pool.wait(timeout=60)
        if kbs:
            kbs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
