"""The records ``sealpod-runtime`` keeps for the containers it booted in an enclave: ``<root>/<id>/sealpod.json``
next to the start FIFO, under the ``--root`` containerd gives (runc keeps its own ``state.json`` there for the rest)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sealpod.errors import SealpodError
from sealpod.runtime.oci_names import RECORD

START_FIFO = "start"
STARTED = "started"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a live ``pid`` (tells it from a later process that reused its number); ``None``
    when there is no such process or it has exited (a zombie its parent has not reaped yet)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


@dataclass
class EnclaveContainer:
    """One enclave container's record."""

    id: str
    bundle: str
    created: str
    pid: int = 0
    pid_start: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup_path: str | None = None

    @staticmethod
    def directory_for(root: Path, container_id: str) -> Path:
        """Where the record of ``container_id`` lives."""
        if not container_id or "/" in container_id or container_id in {".", ".."}:
            raise SealpodError(f"invalid container id {container_id!r}")
        return root / container_id

    @classmethod
    def find(cls, root: Path, container_id: str) -> EnclaveContainer | None:
        """The record, or ``None`` when the container is not an enclave container (it is runc's, or unknown)."""
        path = cls.directory_for(root, container_id) / RECORD
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise SealpodError(f"unreadable record {path}: {err}") from None
        try:
            return cls(**values)
        except TypeError as err:
            raise SealpodError(f"malformed record {path}: {err}") from None

    def directory(self, root: Path) -> Path:
        """This container's directory."""
        return self.directory_for(root, self.id)

    def save(self, root: Path) -> None:
        """Write the record atomically."""
        target = self.directory(root) / RECORD
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.rename(target)

    def alive(self) -> bool:
        """Whether the enclave process still runs (and is the one this record started)."""
        return self.pid > 0 and _start_time(self.pid) == self.pid_start

    def status(self, root: Path) -> str:
        """``created``, ``running`` or ``stopped``, as runc reports them."""
        if not self.alive():
            return "stopped"
        return "running" if (self.directory(root) / STARTED).exists() else "created"

    def remove(self, root: Path) -> None:
        """Forget the container."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.directory(root))

    def record_pid(self, pid: int) -> None:
        """Remember the enclave process."""
        self.pid = pid
        self.pid_start = _start_time(pid)

    def open_start_fifo(self, root: Path) -> int:
        """Make the start FIFO and open it for the enclave to wait on (read-write, so it blocks until ``start``)."""
        fifo = self.directory(root) / START_FIFO
        os.mkfifo(fifo, 0o600)
        return os.open(fifo, os.O_RDWR)

    def signal_start(self, root: Path) -> None:
        """Let the enclave start the workload; fails when the enclave is gone."""
        fifo = self.directory(root) / START_FIFO
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            raise SealpodError(
                f"container {self.id} is not running: its enclave exited before start (the container's log says why)"
            ) from err
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
        (self.directory(root) / STARTED).touch()
