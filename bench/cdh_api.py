"""Benchmark: the workload's CDH resource API (warm token) against a `sealpod attest get-resource` loop, same run.

A KBS runs on 127.0.0.1 with a 32-byte resource and this machine's enclave's reference values. `sealpod run` starts a
small image (busybox; it prints a line and sleeps) in a fresh enclave with a memory rootfs; the enclave attests once
and serves the API on the workload's loopback. The client joins the workload's network namespace (`nsenter --net`,
which root on the host can do: the simulated platform keeps nothing from root) and sends GETs of
`/cdh/resource/default/bench/secret` over one keep-alive connection, then over --clients connections at once; each
answer is checked against the resource. Every request goes to the KBS with the enclave's token (CDH caches nothing
either). The peer is what a workload without the API would do: `sealpod attest get-resource` per secret (a new
process, a full RCAR handshake, the fetch).

Prints requests per second, p50 and p99 of each, and their ratios. Goal: a warm-token request under 2 ms p99.

    .venv/bin/python bench/cdh_api.py [--requests 2000] [--clients 4] [--peer-requests 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import SEALPOD, need_tools
from sealpod._internal.processes import descendants
from sealpod.enclave.measure import measure
from sealpod.kbs.client.admin import AdminClient
from sealpod.kbs.serving.embedded import EmbeddedKbs
from sealpod.oci.build import LayerSpec, build_image

RESOURCE = "default/bench/secret"
RUN_FLAGS = ("--sim", "--rootfs", "memory", "--no-pool")
CLIENT = r"""
import http.client, json, sys, threading, time
path, expected, count, clients = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def run(n, out):
    conn = http.client.HTTPConnection("127.0.0.1", 8006, timeout=10)
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        out.append(time.perf_counter() - start)
        if response.status != 200 or body != expected:
            raise SystemExit(f"answer {response.status}: {body[:200]!r}")
    conn.close()

run(50, [])  # warm: the connection and the enclave's first use of its token
single = []
start = time.perf_counter()
run(count, single)
single_wall = time.perf_counter() - start
many = [[] for _ in range(clients)]
threads = [threading.Thread(target=run, args=(count // clients, many[i])) for i in range(clients)]
start = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
many_wall = time.perf_counter() - start
print(json.dumps({"single": single, "single_wall": single_wall,
                  "many": [x for m in many for x in m], "many_wall": many_wall}))
"""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(label: str, latencies: list[float], wall: float) -> str:
    rate = len(latencies) / wall
    p50, p99 = _quantile(latencies, 0.5) * 1e3, _quantile(latencies, 0.99) * 1e3
    return f"{label:44} {rate:8.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"


def _image(layout: Path) -> None:
    busybox = shutil.which("busybox")
    assert busybox
    members = []
    for name, kind, link, data, mode in (
        ("bin", tarfile.DIRTYPE, "", b"", 0o755),
        ("bin/busybox", tarfile.REGTYPE, "", Path(busybox).resolve().read_bytes(), 0o755),
        ("bin/sh", tarfile.SYMTYPE, "busybox", b"", 0o777),
    ):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode, info.size = kind, link, mode, len(data)
        members.append((info, data if kind == tarfile.REGTYPE else None))
    config = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo ready; exec busybox sleep 600"]}
    build_image(layout, "bench", [LayerSpec(members=members)], config=config)


def _workload_netns(root: int) -> str:
    """The network namespace of the workload (the process below ``root`` in a pid namespace of its own)."""
    mine = os.readlink("/proc/self/ns/pid")
    for _ in range(100):
        below = descendants(root)
        for pid in below:
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != mine:
                    return f"/proc/{pid}/ns/net"
            except OSError:
                continue
        time.sleep(0.05)
    raise SystemExit(f"the workload below {root} did not appear")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--peer-requests", type=int, default=20)
    args = parser.parse_args()
    need_tools("busybox", "nsenter", "gocryptfs")
    if os.geteuid() != 0:
        sys.exit("the enclave needs root: run as root")
    work = Path(tempfile.mkdtemp(prefix="sealpod-bench-cdh-"))
    state = work / "state"
    os.environ["SEALPOD_STATE_DIR"] = str(state)
    kbs = EmbeddedKbs(work / "kbs", state / "sim-sgx")
    enclave: subprocess.Popen[bytes] | None = None
    try:
        kbs.start()
        identity = measure()
        secret = os.urandom(32)
        _image(work / "layout")
        with AdminClient(kbs.url) as admin:
            admin.set_reference(identity.reference_values())
            admin.put_resource(RESOURCE, secret)
            policy = {"default": [{"type": "insecureAcceptAnything"}]}
            admin.put_resource("default/security-policy/test", json.dumps(policy).encode())
        enclave = subprocess.Popen(
            [SEALPOD, "run", f"oci:{work / 'layout'}:bench", "--kbs", kbs.url, *RUN_FLAGS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert enclave.stdout is not None
        if enclave.stdout.readline().strip() != b"ready":
            enclave.kill()
            sys.exit(f"the enclave did not start: {enclave.communicate()[1].decode(errors='replace')[-2000:]}")
        netns = _workload_netns(enclave.pid)
        client = subprocess.run(
            [
                "nsenter",
                f"--net={netns}",
                sys.executable,
                "-c",
                CLIENT,
                f"/cdh/resource/{RESOURCE}",
                secret.hex(),
                str(args.requests),
                str(args.clients),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if client.returncode != 0:
            sys.exit(f"the API client failed: {client.stderr[-2000:]}\nKBS log: {kbs.log.read_text()[-3000:]}")
        api = json.loads(client.stdout)

        peer: list[float] = []
        out = work / "peer.bin"
        flags = ["--kbs", kbs.url, "--sim", "--mr-enclave", identity.mr_enclave.hex()]
        flags += ["--mr-signer", identity.mr_signer.hex(), "--isv-prod-id", str(identity.isv_prod_id)]
        flags += ["--isv-svn", str(identity.isv_svn), "-o", str(out)]
        for _ in range(args.peer_requests):
            start = time.perf_counter()
            proc = subprocess.run(
                [SEALPOD, "attest", "get-resource", f"kbs:///{RESOURCE}", *flags], capture_output=True, check=False
            )
            peer.append(time.perf_counter() - start)
            if proc.returncode != 0 or out.read_bytes() != secret:
                sys.exit(f"sealpod attest get-resource failed: {proc.stderr.decode(errors='replace')[-2000:]}")

        print(f"CDH API vs sealpod attest get-resource, {os.cpu_count()} cores, resource of {len(secret)} bytes")
        print(_line("CDH API, 1 keep-alive connection", api["single"], api["single_wall"]))
        print(_line(f"CDH API, {args.clients} connections at once", api["many"], api["many_wall"]))
        print(_line("sealpod attest get-resource (process each)", peer, sum(peer)))
        single_p99 = _quantile(api["single"], 0.99)
        print(
            f"ratio (API / get-resource): p99 {single_p99 / _quantile(peer, 0.99):.4f}, "
            f"mean {statistics.mean(api['single']) / statistics.mean(peer):.4f}; "
            f"goal: API p99 < 2 ms: {'met' if single_p99 < 0.002 else 'NOT met'} ({single_p99 * 1e3:.2f} ms)"
        )
    finally:
        if enclave is not None and enclave.poll() is None:
            enclave.terminate()  # the workload (pid 1 of its namespace) ignores it: the second SIGTERM kills it
            time.sleep(0.5)
            enclave.terminate()
            enclave.wait(timeout=30)
        kbs.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
