"""The enclave zygote (``python -m sealpod.enclave --zygote FD``): it forks one pre-launched enclave per fork request,
each its own session and process, refuses anything else by name without forking, and ends when the pool closes its
channel."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpod.boundary.channel import receive_message, send_message


def _status(pid: int) -> dict[str, str]:
    fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: value.strip() for key, value in fields.items()}


def _ignores_sigchld(pid: int) -> bool:
    return bool(int(_status(pid)["SigIgn"], 16) & (1 << (signal.SIGCHLD - 1)))


def _gone(pid: int, within: float = 30.0) -> bool:
    """The process no longer exists (reaped: not even a zombie)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def zygote() -> Iterator[tuple[subprocess.Popen[bytes], socket.socket]]:
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-m", "sealpod.enclave", "--zygote", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    control.settimeout(120)
    try:
        message, _ = receive_message(control)
        assert message == {"ready": process.pid}
        yield process, control
    finally:
        control.close()
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _fork(control: socket.socket) -> tuple[int, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        send_message(control, {"fork": True}, [theirs.fileno()])
    ours.settimeout(60)
    message, _ = receive_message(ours)
    pid = message["ready"]
    assert isinstance(pid, int)
    return pid, ours


def test_each_fork_request_makes_its_own_pre_launched_enclave_and_closing_the_channel_ends_the_zygote(
    zygote: tuple[subprocess.Popen[bytes], socket.socket],
) -> None:
    process, control = zygote
    first, first_channel = _fork(control)
    second, second_channel = _fork(control)
    assert len({first, second, process.pid}) == 3
    assert _ignores_sigchld(process.pid)  # the kernel reaps the zygote's forks
    for pid in (first, second):
        assert _status(pid)["PPid"] == str(process.pid)
        assert os.getsid(pid) == pid  # its own session, as a pre-launched enclave has
        assert not _ignores_sigchld(pid)  # an enclave waits for its own gocryptfs and workload
    # a pre-launched enclave whose channel closes before a request came runs nothing and ends, reaped at once
    first_channel.close()
    second_channel.close()
    assert _gone(first)
    assert _gone(second)
    assert process.poll() is None
    control.close()
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("message", "with_fd", "named"),
    [
        ({"fork": False}, True, "not a fork request"),
        ({"fork": "yes"}, True, "not a fork request"),
        ({"run": "x"}, True, "not a fork request"),
        ({"fork": True}, False, "with 0 descriptors"),
    ],
)
def test_anything_but_a_fork_request_is_refused_by_name_and_nothing_is_forked(
    zygote: tuple[subprocess.Popen[bytes], socket.socket], message: dict[str, object], with_fd: bool, named: str
) -> None:
    process, control = zygote
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        send_message(control, message, [theirs.fileno()] if with_fd else None)
        assert process.wait(timeout=30) == 125
        assert process.stderr is not None
        assert named in process.stderr.read().decode()
        theirs.close()
        ours.settimeout(10)
        assert ours.recv(100) == b""  # no enclave ever held the other end
