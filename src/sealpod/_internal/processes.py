"""Child processes sealpod starts and must stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM ``process`` if it still runs, SIGKILL it after ``timeout`` seconds, and reap it."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """Have the kernel send ``signum`` to this process when its parent thread exits (``PR_SET_PDEATHSIG``), and
    exit at once if the parent, ``parent``, is already gone (it died between the fork and this call)."""
    libc = ctypes.CDLL(None, use_errno=True)  # libc through the interpreter's symbols: no ldconfig in a fork
    if libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os._exit(1)


def descendants(pid: int) -> set[int]:
    """``pid`` and every live process below it (from ``/proc/*/task/*/children``; a process gone meanwhile is
    skipped)."""
    found = {pid}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = {int(child) for child in (task / "children").read_text().split()}
            except OSError:
                continue
            pending += children - found
            found |= children
    return found
