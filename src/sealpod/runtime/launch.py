"""Start the generic enclave for an image, as a separate process (or hand the request to a pre-launched one,
:mod:`sealpod.runtime.enclave_pool`), and pass its stdio and exit status through.

``sealpod run`` imports this module for every start: like :mod:`sealpod.runtime.pool_client`, it uses only the
interpreter's built-in modules (no subprocess or signal module)."""

from __future__ import annotations

import os
import sys

from sealpod.boundary import ENCLAVE_MODULE, ENCLAVE_PYTHON_FLAGS
from sealpod.runtime.pool_client import forward_signals, pool_socket, restore_signals, run_in_pool

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from collections.abc import Callable

    from sealpod.boundary.request import BootRequest


def enclave_command(request: BootRequest) -> list[str]:
    """The command that starts the enclave (on SGX hardware the same module runs under Gramine)."""
    return enclave_program(request.to_json())


def enclave_program(*args: str) -> list[str]:
    """``python -I -m sealpod.enclave ARGS``: the enclave program, isolated from the host's Python variables."""
    return [sys.executable, *ENCLAVE_PYTHON_FLAGS, "-m", ENCLAVE_MODULE, *args]


def run_enclave(request: BootRequest, on_start: Callable[[int], None] | None = None, *, use_pool: bool = True) -> int:
    """Run the enclave in the foreground; signals to this process are forwarded; returns the workload's status.

    With ``use_pool``, a pre-launched enclave of the node's pool runs it when a pool listens (not for a terminal on
    stdin: the workload would not get it as its controlling terminal); else a new enclave process does.
    """
    if use_pool and request.start_fd is None and not os.isatty(0):
        code = run_in_pool(request, pool_socket(), on_start)
        if code is not None:
            return code
    pid = spawn(enclave_command(request))
    if on_start:
        on_start(pid)
    previous = forward_signals(pid)
    try:
        _, status = os.waitpid(pid, 0)  # a forwarded signal interrupts it, and it waits on
    finally:
        restore_signals(previous)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def spawn(command: list[str]) -> int:
    """Start ``command`` with this process's stdio and environment and no other descriptor; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            os.execv(command[0], command)  # noqa: S606 - an argv, no shell
        except OSError as err:
            print(f"sealpod: cannot start the enclave {command[0]}: {err.strerror}", file=sys.stderr)
        os._exit(127)
    return pid
