"""``sealpod run``'s side of a pre-launched enclave (:mod:`sealpod.runtime.enclave_pool`): connect to the node's
pool, hand the enclave the request and this process's stdio, forward signals to it, return the workload's status.

Every pooled ``sealpod run`` is a short-lived process whose start-up is a large part of the container's start, so
this module and what it imports use only the interpreter's built-in modules: the C socket type (any socket.socket
is one), the C signal functions and :mod:`sealpod.boundary.jsontext`, not the socket, signal, json or pathlib modules
(~12 ms of imports together).
"""

from __future__ import annotations

import os
import sys
from _socket import AF_UNIX, SOCK_SEQPACKET, socket

from sealpod.boundary.channel import STDIO_FDS, ChannelError, expect_int, receive_message, send_message
from sealpod.config import state_dir_name
from sealpod.errors import SealpodError

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from signal import SIGHUP, SIGINT, SIGKILL, SIGTERM, signal
    from typing import Any

    from sealpod.boundary.request import BootRequest
else:
    from _signal import SIGHUP, SIGINT, SIGKILL, SIGTERM, signal  # the signal module's own, without its enums

KILLED = 128 + SIGKILL  # the status a shell reports for a process SIGKILL ended
#: What ``sealpod run`` passes on to the process that runs the workload.
FORWARDED = (SIGTERM, SIGINT, SIGHUP)


def pool_socket() -> str:
    """Where the node's enclave pool listens."""
    return os.path.join(state_dir_name(), "enclave-pool.sock")


def connect(path: str) -> socket | None:
    """A connection to the pool listening at ``path``, or None when none listens there (no socket, or a stale one)."""
    connection = socket(AF_UNIX, SOCK_SEQPACKET)
    try:
        connection.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        connection.close()
        return None
    return connection


def run_in_pool(request: BootRequest, path: str, on_start: Callable[[int], None] | None = None) -> int | None:
    """Run ``request`` in a pre-launched enclave of the pool at ``path``, with this process's stdio; signals to this
    process are forwarded to the enclave. Returns the workload's status, or None when no pool listens there."""
    connection = connect(path)
    if connection is None:
        return None
    try:
        return run_on(connection, request, on_start)
    finally:
        connection.close()


def run_on(
    connection: socket,
    request: BootRequest,
    on_start: Callable[[int], None] | None = None,
    start_fifo: int | None = None,
) -> int:
    """Hand ``request`` and this process's stdio (and the OCI runtime's ``start_fifo``, which this process then
    closes: only the enclave may wait on it) to the pre-launched enclave on ``connection``; forward signals to it
    and return the workload's status."""
    fds = [0, 1, 2]
    if start_fifo is not None:
        request = request.replace(start_fd=STDIO_FDS)  # "the descriptor after stdio"
        fds.append(start_fifo)
    try:
        send_message(connection, request.to_values(), fds)
    finally:
        if start_fifo is not None:
            os.close(start_fifo)
    message, _ = receive_message(connection)
    if "error" in message:
        raise SealpodError(f"the pre-launched enclave refused the request: {message['error']}")
    pid = expect_int(message, "pid")
    if on_start:
        on_start(pid)
    previous = forward_signals(pid)
    try:
        message, _ = receive_message(connection)
    except ChannelError:
        # only a SIGKILL (sealpod stop's last resort, the OOM killer) ends an enclave without its report
        print(f"sealpod: the enclave (pid {pid}) was killed before it reported an exit status", file=sys.stderr)
        return KILLED
    finally:
        restore_signals(previous)
    return expect_int(message, "exit")


def forward_signals(pid: int) -> list[Any]:
    """Send :data:`FORWARDED` signals this process gets to ``pid`` from now on; returns what to restore."""

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105 - contextlib would be ~2 ms more of imports
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # it has just ended: its status is on its way

    return [signal(signum, forward) for signum in FORWARDED]


def restore_signals(previous: list[Any]) -> None:
    """Put back the handlers :func:`forward_signals` replaced."""
    for signum, handler in zip(FORWARDED, previous, strict=True):
        signal(signum, handler)
