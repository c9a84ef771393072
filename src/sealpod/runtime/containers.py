"""Containers the host has started: a directory per container under ``<state>/containers/<id>`` holding its record
(``state.json``), its combined output (``log``), and what its supervisor (:mod:`sealpod.runtime.supervise`) writes:
the enclave's pid (``enclave-pid``) and, once it ended, its exit status (``exit-code``). Nothing in it is secret:
the record is what the host passed the enclave."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sealpod.boundary.request import BootRequest
from sealpod.config import containers_dir_name
from sealpod.errors import SealpodError, UsageError
from sealpod.runtime.supervise import ENCLAVE_PID, EXIT_CODE

SUPERVISOR_MODULE = "sealpod.runtime.supervise"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def containers_dir() -> Path:
    """Where the container records live."""
    return Path(containers_dir_name())


@dataclass
class Container:
    """One container's record."""

    id: str
    name: str
    image: str
    created: str
    request: dict[str, object]
    supervisor_pid: int = 0
    auto_remove: bool = False

    @property
    def directory(self) -> Path:
        """The container's directory."""
        return containers_dir() / self.id

    @property
    def log(self) -> Path:
        """Its combined stdout and stderr."""
        return self.directory / "log"

    def save(self) -> None:
        """Write the record atomically."""
        tmp = self.directory / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.rename(self.directory / "state.json")

    def exit_code(self) -> int | None:
        """Its exit status once it ended."""
        return self._number(EXIT_CODE)

    @property
    def enclave_pid(self) -> int:
        """The pid of its enclave, once its supervisor started it (0 before)."""
        return self._number(ENCLAVE_PID) or 0

    def _number(self, name: str) -> int | None:
        try:
            return int((self.directory / name).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        """Whether its supervisor still runs (checked by pid and command line, so a reused pid does not count)."""
        if self.exit_code() is not None or not self.supervisor_pid:
            return False
        try:
            cmdline = Path(f"/proc/{self.supervisor_pid}/cmdline").read_bytes()
        except OSError:
            return False
        return SUPERVISOR_MODULE.encode() in cmdline and self.id.encode() in cmdline

    def status(self) -> str:
        """``running``, ``exited (N)`` or ``dead`` (the supervisor vanished without a status)."""
        if self.running():
            return "running"
        code = self.exit_code()
        return f"exited ({code})" if code is not None else "dead"


def load(directory: Path) -> Container:
    """Read a record."""
    try:
        values = json.loads((directory / "state.json").read_text())
        if isinstance(values, dict):
            values.pop("enclave_pid", None)  # a record of an older sealpod: its supervisor writes enclave-pid now
        return Container(**values)
    except (OSError, ValueError, TypeError) as err:
        raise SealpodError(f"container record {directory} is unreadable: {err}") from None


def all_containers() -> list[Container]:
    """Every recorded container, oldest first."""
    base = containers_dir()
    if not base.is_dir():
        return []
    found = [load(d) for d in base.iterdir() if (d / "state.json").exists()]
    return sorted(found, key=lambda c: c.created)


def find(name_or_id: str) -> Container:
    """A container by name, id, or unique id prefix."""
    matches = [c for c in all_containers() if name_or_id in (c.name, c.id) or c.id.startswith(name_or_id)]
    exact = [c for c in matches if name_or_id in (c.name, c.id)]
    if len(exact) == 1:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no container named {name_or_id!r}", hint="sealpod ps -a lists them")
    raise UsageError(f"{name_or_id!r} matches several containers", hint="give more of the id")


def create(request: BootRequest, name: str | None, *, auto_remove: bool = False) -> Container:
    """Record a new container (its name must be new)."""
    import secrets  # here, not at the top: a supervisor (one per container) loads only what it uses
    from datetime import UTC, datetime

    container_id = secrets.token_hex(16)
    name = name or f"sealpod-{container_id[:8]}"
    if not _NAME.match(name):
        raise UsageError(f"container name {name!r} is not valid", hint="letters, digits, '_', '.', '-'; up to 63")
    if any(c.name == name for c in all_containers()):
        raise UsageError(f"a container named {name!r} exists", hint=f"sealpod rm {name}, or choose another --name")
    container = Container(container_id, name, request.image, datetime.now(UTC).isoformat(timespec="seconds"), {})
    container.auto_remove = auto_remove
    container.request = request.replace(name=name).to_values()
    container.directory.mkdir(parents=True, mode=0o700)
    container.save()
    return container


def start_detached(container: Container) -> None:
    """Start the container's supervisor in its own session, its output going to the container's log."""
    with open(container.log, "ab") as log, open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(
            [sys.executable, "-m", SUPERVISOR_MODULE, container.id],
            stdin=devnull,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    container.supervisor_pid = process.pid
    container.save()


def _ended_within(container: Container, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while container.running():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop(container: Container, timeout: float = 10.0) -> int | None:
    """Stop a container and return its exit status: SIGTERM (forwarded to the workload); after ``timeout`` a second
    SIGTERM, on which the enclave kills the workload and cleans up; SIGKILL of the enclave as the last resort (the
    workload dies with it through its parent-death signal)."""
    for signal_to, target, wait in (
        (signal.SIGTERM, "supervisor", timeout),
        (signal.SIGTERM, "supervisor", 5.0),
        (signal.SIGKILL, "enclave", 10.0),
    ):
        if not container.running():
            break
        pid = container.supervisor_pid if target == "supervisor" else container.enclave_pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal_to)
        _ended_within(container, wait)
    return container.exit_code()


def remove(container: Container, *, force: bool = False) -> None:
    """Delete a container's record and log (a running one only with ``force``, which stops it first)."""
    if container.running():
        if not force:
            raise UsageError(f"container {container.name} is running", hint=f"sealpod stop {container.name}, or rm -f")
        stop(container)
    import shutil

    shutil.rmtree(container.directory, ignore_errors=True)
