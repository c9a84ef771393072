"""Start the generic enclave for an image, as a separate process (or hand the request to a pre-launched one,
:mod:`sealpod.runtime.enclave_pool`), and pass its stdio and exit status through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

from sealpod.boundary import ENCLAVE_MODULE
from sealpod.boundary.request import BootRequest


def enclave_command(request: BootRequest) -> list[str]:
    """The command that starts the enclave (on SGX hardware the same module runs under Gramine)."""
    return [sys.executable, "-m", ENCLAVE_MODULE, request.to_json()]


def run_enclave(request: BootRequest, on_start: Callable[[int], None] | None = None, *, use_pool: bool = True) -> int:
    """Run the enclave in the foreground; signals to this process are forwarded; returns the workload's status.

    With ``use_pool``, a pre-launched enclave of the node's pool runs it when a pool listens (not for a terminal on
    stdin: the workload would not get it as its controlling terminal); else a new enclave process does.
    """
    if use_pool and request.start_fd is None and not os.isatty(0):
        from sealpod.runtime.enclave_pool import pool_socket, run_in_pool

        code = run_in_pool(request, pool_socket(), on_start)
        if code is not None:
            return code
    process = subprocess.Popen(enclave_command(request))
    if on_start:
        on_start(process.pid)

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code
