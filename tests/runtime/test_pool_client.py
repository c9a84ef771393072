"""``sealpod run``'s client of a pre-launched enclave, against a listener that plays the enclave: what it sends, how
it passes the workload's status and signals through, and that its start imports only what it must."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from sealpod.boundary.request import BootRequest

#: Modules a pooled ``sealpod run`` must not import: together ~30 ms of a client that needs ~10 ms.
HEAVY = ("json", "re", "dataclasses", "pathlib", "socket", "signal", "typing", "subprocess", "logging", "enum", "rich")

CLIENT = """
import sys
from sealpod.cli import fast
code = fast.run(sys.argv[1:])
print("imported:", *sorted(m for m in sys.modules if m in {heavy!r}), file=sys.stderr)
sys.exit(code)
"""


class FakeEnclave:
    """A pool socket whose 'enclave' records the request and its descriptors, and answers as told."""

    def __init__(self, path: Path, exit_status: int = 0, wait_for_signal: bool = False) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.requests: list[dict[str, object]] = []
        self.fd_count = 0
        self.exit_status = exit_status
        self.wait_for_signal = wait_for_signal
        self.signalled = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 8)
            self.fd_count = len(fds)
            for fd in fds:
                os.close(fd)
            self.requests.append(json.loads(data))
            # the 'enclave' is this test process: the client forwards its signals here
            connection.send(json.dumps({"pid": os.getpid()}).encode())
            if self.wait_for_signal:
                self.signalled.wait(20)
            connection.send(json.dumps({"exit": self.exit_status}).encode())


def _heavy_imports(stderr: str) -> list[str]:
    (line,) = [line for line in stderr.splitlines() if line.startswith("imported:")]
    return line.split()[1:]


def _client(state: Path, argv: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "SEALPOD_STATE_DIR": str(state)}
    program = CLIENT.format(heavy=set(HEAVY))
    return subprocess.Popen(
        [sys.executable, "-c", program, *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_pooled_run_sends_the_request_with_stdio_and_returns_the_workload_s_status(tmp_path: Path) -> None:
    enclave = FakeEnclave(tmp_path / "enclave-pool.sock", exit_status=7)
    client = _client(
        tmp_path, ["run", "reg.example/app:v1", "--kbs", "http://k", "--sim", "--tls-verify=false", "-e", "A=1", "sh"]
    )
    _, err = client.communicate(timeout=30)
    assert client.returncode == 7, err
    expected = BootRequest(
        image="reg.example/app:v1",
        kbs_url="http://k",
        command=["sh"],
        env=["A=1"],
        allow_sim=True,
        registry_tls_verify=False,
    )
    assert enclave.requests == [expected.to_values()]
    assert BootRequest.from_values(enclave.requests[0]) == expected
    assert enclave.fd_count == 3  # stdin, stdout, stderr
    assert _heavy_imports(err) == []


def test_a_signal_to_the_client_reaches_the_enclave(tmp_path: Path) -> None:
    enclave = FakeEnclave(tmp_path / "enclave-pool.sock", exit_status=143, wait_for_signal=True)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    got: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda signum, _: (got.append(signum), enclave.signalled.set()))
    try:
        client = _client(tmp_path, ["run", "reg.example/app:v1", "--kbs", "http://k"])
        for _ in range(200):
            if enclave.requests:
                break
            time.sleep(0.05)
        time.sleep(0.2)  # the client installs its forwarding once the enclave said its pid
        client.send_signal(signal.SIGTERM)
        _, err = client.communicate(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, original)
        signal.signal(signal.SIGUSR1, previous)
    assert got == [signal.SIGTERM], err
    assert client.returncode == 143


def test_without_a_pool_the_request_goes_to_a_new_enclave_process(tmp_path: Path) -> None:
    # no socket: the client starts `python -m sealpod.enclave REQUEST`, which refuses a non-root user or a bad KBS;
    # what matters here is that it was started and its status came back (125: the enclave refused)
    client = _client(tmp_path, ["run", "reg.example/app:v1", "--kbs", "http://127.0.0.1:9", "--net", "host"])
    _, err = client.communicate(timeout=60)
    assert client.returncode == 125, err
    assert "sealpod enclave: error:" in err
    assert _heavy_imports(err) == []


def test_a_new_enclave_runs_none_of_the_host_s_python_variables(tmp_path: Path) -> None:
    # the host chooses the enclave's environment: a PYTHONPATH with a sitecustomize must not put code into it
    injected = tmp_path / "injected"
    injected.mkdir()
    log = tmp_path / "ran-in"
    (injected / "sitecustomize.py").write_text(
        f"import sys\nopen({str(log)!r}, 'a').write(repr(sys.orig_argv) + '\\n')\n"
    )
    env = {**os.environ, "SEALPOD_STATE_DIR": str(tmp_path), "PYTHONPATH": str(injected)}
    proc = subprocess.run(
        [sys.executable, "-m", "sealpod", "run", "reg.example/app:v1", "--kbs", "http://127.0.0.1:9", "--no-pool"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 125, proc.stderr
    assert "sealpod enclave: error:" in proc.stderr  # the enclave ran, and refused
    ran_in = log.read_text().splitlines()
    assert len(ran_in) == 1, ran_in  # the host's own client, not the enclave
    assert "sealpod.enclave" not in ran_in[0]


def test_a_detached_container_s_supervisor_loads_only_built_in_modules() -> None:
    # one supervisor stays per detached container: what it imports is memory every container pays for
    program = (
        f"import sys\nimport sealpod.runtime.supervise\nprint(*sorted(m for m in sys.modules if m in {set(HEAVY)!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == []
