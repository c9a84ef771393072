"""Resource limits for the workload through whichever cgroup version the host offers: the v2 unified hierarchy when
it has the controller, else the v1 controller hierarchy (hosts are often hybrid: v1 memory/pids, v2 without them)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sealpod.errors import SealpodError

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """What to limit (None: no limit)."""

    memory: int | None = None
    pids: int | None = None

    def __bool__(self) -> bool:
        return self.memory is not None or self.pids is not None


def _v2_has(controller: str, root: Path) -> bool:
    controllers = root / "cgroup.controllers"
    return controllers.exists() and controller in controllers.read_text().split()


def _directory(controller: str, name: str, root: Path) -> tuple[Path, str]:
    """The cgroup directory for ``controller`` and which version it is."""
    if _v2_has(controller, root):
        return root / "sealpod" / name, "v2"
    unified = root / "unified"
    if _v2_has(controller, unified):
        return unified / "sealpod" / name, "v2"
    if (root / controller / "cgroup.procs").exists():
        return root / controller / "sealpod" / name, "v1"
    raise SealpodError(
        f"this host offers no {controller} cgroup controller", hint=f"run without the {controller} limit"
    )


class Cgroups:
    """The workload's cgroups: made with the limits, joined by the workload before it execs, removed after it ends."""

    def __init__(self, name: str, limits: Limits, root: Path = CGROUP_ROOT) -> None:
        self.directories: list[Path] = []
        wanted = {"memory": limits.memory, "pids": limits.pids}
        try:
            for controller, value in wanted.items():
                if value is None:
                    continue
                directory, version = _directory(controller, name, root)
                directory.mkdir(parents=True, exist_ok=True)
                self.directories.append(directory)
                if controller == "memory":
                    limit_file = "memory.max" if version == "v2" else "memory.limit_in_bytes"
                else:
                    limit_file = "pids.max"
                (directory / limit_file).write_text(str(value))
        except OSError as err:
            self.remove()
            raise SealpodError(f"cannot set the {controller} limit: {err}") from None

    def join(self) -> None:
        """Move the calling process into every cgroup (called in the child, before exec)."""
        for directory in self.directories:
            (directory / "cgroup.procs").write_text("0")

    def remove(self) -> None:
        """Remove the cgroups (after the workload and all its children ended)."""
        for directory in self.directories:
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the kernel releases an exited task's membership asynchronously
            with contextlib.suppress(OSError):
                os.rmdir(directory.parent)
        self.directories = []
