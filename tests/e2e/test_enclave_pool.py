"""Pre-launched enclaves (``sealpod node enclave-pool``): ``sealpod run`` hands its request and stdio to a waiting
enclave; output, exit status, stdin and signals pass as with a fresh enclave; a host that goes away takes its
workload down; a malformed request over the pool's socket is refused by name and runs nothing; without a pool (or
with a stale socket, or --no-pool) a fresh enclave runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sealpod.oci.localregistry import LocalRegistry
from tests.e2e.pool import Pool
from tests.e2e.test_run import CANARY_FILE, RUN_POLICY, SEALPOD, _deploy, _run
from tests.kbs.conftest import KbsProcess


def _gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_a_pre_launched_enclave_runs_the_image_as_a_fresh_one_would(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    pool: Pool,
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)
    flags = ("--kbs", server.url, "--sim", "--tls-verify=false")

    proc = _run(node, image, *flags, "--name", "pooled")
    assert proc.returncode == 7, proc.stderr
    lines = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert lines["user"] == "1000:1000"
    assert lines["host"] == "pooled"
    assert lines["pid"] == "1"
    assert CANARY_FILE.decode() in proc.stdout
    (first,) = pool.handed_over()
    assert _gone(first)  # one request per enclave
    # stdin passes through, a second run gets another (replacement) enclave
    proc = _run(node, image, *flags, "busybox tr a-z A-Z", stdin="through the pool\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "THROUGH THE POOL\n"
    assert len(pool.handed_over()) == 2
    assert pool.handed_over()[1] != first
    # --no-pool starts a fresh enclave
    proc = _run(node, image, *flags, "--no-pool", "echo fresh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "fresh\n"
    assert len(pool.handed_over()) == 2

    # SIGTERM to `sealpod run` reaches the workload (its trap exits 143); SIGKILL of `sealpod run` makes the enclave
    # end the workload too (SIGTERM, and after a grace time SIGKILL, as a fresh enclave whose parent died)
    for kill, expected in ((signal.SIGTERM, 143), (signal.SIGKILL, -9)):
        runner = subprocess.Popen(
            [SEALPOD, "run", image, *flags, "trap 'exit 143' TERM; echo up; while :; do busybox sleep 0.2; done"],
            env=node,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert runner.stdout is not None
        assert runner.stdout.readline() == b"up\n"
        enclave = pool.handed_over()[-1]
        runner.send_signal(kill)
        assert runner.wait(timeout=30) == expected
        assert _gone(enclave), f"enclave {enclave} outlived its host"
        runner.stdout.close()
        assert runner.stderr is not None
        runner.stderr.close()
    assert str(Path(node["SEALPOD_STATE_DIR"])) not in Path("/proc/self/mountinfo").read_text()


def _zygote(pool: Pool) -> int:
    """The pid of the pool's enclave zygote."""
    (pid,) = [
        child
        for child in map(int, Path(f"/proc/{pool.process.pid}/task/{pool.process.pid}/children").read_text().split())
        if "--zygote" in Path(f"/proc/{child}/cmdline").read_text()
    ]
    return pid


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_the_pool_s_enclaves_are_forks_of_its_zygote_and_a_dead_zygote_is_replaced(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    pool: Pool,
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)
    flags = ("--kbs", server.url, "--sim", "--tls-verify=false")
    zygote = _zygote(pool)

    def run_and_parent(text: str) -> int:
        runner = subprocess.Popen(
            [SEALPOD, "run", image, *flags, f"trap 'exit 143' TERM; echo {text}; while :; do busybox sleep 0.2; done"],
            env=node,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert runner.stdout is not None
        assert runner.stderr is not None
        with runner.stdout, runner.stderr:
            assert runner.stdout.readline() == f"{text}\n".encode(), runner.stderr.read()
            parent = _parent(pool.handed_over()[-1])
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(timeout=30) == 143
        return parent

    assert run_and_parent("first") == zygote
    assert run_and_parent("second") == zygote  # the replacement came from the same zygote
    os.kill(zygote, signal.SIGKILL)
    # the enclave forked before it died still serves (an orphan now); asking for its replacement finds the zygote gone
    assert run_and_parent("third") != zygote
    deadline = time.monotonic() + 60
    while "is gone" not in pool.log.read_text():
        assert time.monotonic() < deadline, pool.log.read_text()
        time.sleep(0.1)
    assert f"the enclave zygote (pid {zygote}) is gone" in pool.log.read_text()
    replacement = _zygote(pool)
    assert replacement != zygote
    assert run_and_parent("fourth") == replacement


def _ask_pool(pool: Pool, payload: bytes, fds: list[int]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(str(pool.socket))
        if fds:
            socket.send_fds(connection, [payload], fds)
        else:
            connection.send(payload)
        connection.settimeout(60)
        reply: dict[str, object] = json.loads(connection.recv(65536))
        assert connection.recv(65536) == b""  # and nothing more: the enclave ran nothing and ended
        return reply


def test_the_pool_refuses_malformed_requests_by_name_and_keeps_serving(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    pool: Pool,
    tmp_path: Path,
) -> None:
    with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
        stdio = [null_in.fileno(), null_out.fileno(), null_out.fileno()]
        reply = _ask_pool(pool, b"{not json", stdio)
        assert "not JSON" in str(reply["error"])
        reply = _ask_pool(pool, b"[1, 2]", stdio)
        assert "a JSON list, not an object" in str(reply["error"])
        reply = _ask_pool(pool, json.dumps({"image": "x", "kbs_url": "y", "rootfs": 3}).encode(), stdio)
        assert "malformed boot request: rootfs has the wrong type" in str(reply["error"])
        reply = _ask_pool(pool, json.dumps({"image": "x", "kbs_url": "y", "evil": 1}).encode(), stdio)
        assert "unexpected keyword argument 'evil'" in str(reply["error"])
        reply = _ask_pool(pool, json.dumps({"image": "x", "kbs_url": "y"}).encode(), [])
        assert "carried 0 descriptors, not stdin, stdout and stderr" in str(reply["error"])
        reply = _ask_pool(pool, json.dumps({"image": "x", "kbs_url": "y", "start_fd": 5}).encode(), stdio)
        assert "carries it after stdin, stdout and stderr (start_fd 3), not as start_fd 5 with 3" in str(reply["error"])
        reply = _ask_pool(pool, json.dumps({"image": "x", "kbs_url": "y", "start_fd": 3}).encode(), stdio)
        assert "not as start_fd 3 with 3 descriptors" in str(reply["error"])  # the FIFO itself is missing
        reply = _ask_pool(pool, json.dumps({"image": "x", "kbs_url": "y"}).encode(), [*stdio, null_in.fileno()])
        assert "carried 4 descriptors, not stdin, stdout and stderr" in str(reply["error"])
    assert len(pool.handed_over()) == 8
    assert not (Path(node["SEALPOD_STATE_DIR"]) / "rootfs").exists()  # nothing was attested, pulled or mounted

    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)
    proc = _run(node, image, "--kbs", server.url, "--sim", "--tls-verify=false", "echo still serving")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "still serving\n"
    assert len(pool.handed_over()) == 9


def test_without_a_listening_pool_a_fresh_enclave_runs(
    registry: LocalRegistry,
    kbs_factory: Callable[..., KbsProcess],
    node: dict[str, str],
    tmp_path: Path,
) -> None:
    server = kbs_factory()
    image = _deploy(tmp_path, registry, server, node, run_policy=RUN_POLICY)
    stale = Path(node["SEALPOD_STATE_DIR"]) / "enclave-pool.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as dead:
        dead.bind(str(stale))  # a pool that died without removing its socket
    proc = _run(node, image, "--kbs", server.url, "--sim", "--tls-verify=false", "echo fresh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "fresh\n"
