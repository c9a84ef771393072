"""Start the generic enclave for an image, as a separate process, and pass its stdio and exit status through."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable

from sealpod.boot_request import BootRequest

ENCLAVE_MODULE = "sealpod.enclave"


def enclave_command(request: BootRequest) -> list[str]:
    """The command that starts the enclave (on SGX hardware the same module runs under Gramine)."""
    return [sys.executable, "-m", ENCLAVE_MODULE, request.to_json()]


def run_enclave(request: BootRequest, on_start: Callable[[int], None] | None = None) -> int:
    """Run the enclave in the foreground; signals to this process are forwarded; returns the workload's status."""
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
