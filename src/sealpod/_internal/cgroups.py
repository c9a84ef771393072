"""Resource limits for the workload through whichever cgroup version the host offers: the v2 unified hierarchy when
it has the controller, else the v1 controller hierarchy (hosts are often hybrid: v1 memory/pids, v2 without them).

Under Kubernetes the container's cgroup (``linux.cgroupsPath`` of its bundle, under the pod's) holds the whole
enclave: the enclave process in the leaf ``<path>/enclave`` (with gocryptfs, counted against the pod, whose
RuntimeClass overhead covers it) and the workload in ``<path>/workload`` with the container's limits. Leaves only, so
that cgroup v2's rule against processes in inner cgroups holds too.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


def _directory(controller: str, name: str, root: Path, parent: str = "sealpod") -> tuple[Path, str]:
    """The cgroup directory ``<parent>/<name>`` for ``controller`` and which version it is."""
    if _v2_has(controller, root):
        return root / parent / name, "v2"
    unified = root / "unified"
    if _v2_has(controller, unified):
        return unified / parent / name, "v2"
    if (root / controller / "cgroup.procs").exists():
        return root / controller / parent / name, "v1"
    raise SealpodError(
        f"this host offers no {controller} cgroup controller", hint=f"run without the {controller} limit"
    )


def _hierarchies(root: Path) -> list[Path]:
    """Every mounted hierarchy a process belongs to: the v1 controllers' and the unified one (or only the latter)."""
    if (root / "cgroup.controllers").exists():
        return [root]
    return [path for path in sorted(root.iterdir()) if (path / "cgroup.procs").exists() and not path.is_symlink()]


def valid_container_path(path: str) -> bool:
    """A cgroupfs-style container cgroup path (``/kubepods/.../<id>``) without ``..`` or an empty part."""
    parts = path.split("/")
    return path.startswith("/") and len(parts) > 1 and all(p and p not in (".", "..") for p in parts[1:])


def join_container(path: str, root: Path = CGROUP_ROOT) -> None:
    """Move this process (the enclave) into the leaf ``<path>/enclave`` of every hierarchy, made as needed; on
    cgroup v2 the container cgroup passes the memory and pids controllers down to its leaves."""
    relative = path.strip("/")
    for hierarchy in _hierarchies(root):
        container = hierarchy / relative
        leaf = container / "enclave"
        try:
            leaf.mkdir(parents=True, exist_ok=True)
            _inherit_cpuset(hierarchy, leaf)
            subtree = container / "cgroup.subtree_control"
            if subtree.exists():
                available = (container / "cgroup.controllers").read_text().split()
                wanted = " ".join(f"+{c}" for c in ("memory", "pids") if c in available)
                if wanted:
                    subtree.write_text(wanted)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as err:
            raise SealpodError(f"cannot join the container's cgroup {leaf}: {err}") from None


def _inherit_cpuset(hierarchy: Path, leaf: Path) -> None:
    """cgroup v1's cpuset refuses tasks in a cgroup whose cpus or mems are empty: new levels copy their parent's."""
    if not (hierarchy / "cpuset.cpus").exists():
        return
    level = hierarchy
    for part in leaf.relative_to(hierarchy).parts:
        child = level / part
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not (child / name).read_text().strip():
                (child / name).write_text((level / name).read_text())
        level = child


def remove_container(path: str, root: Path = CGROUP_ROOT) -> None:
    """Remove the container's cgroups (its enclave and workload leaves, then itself) once its processes are gone."""
    relative = path.strip("/")
    for hierarchy in _hierarchies(root):
        container = hierarchy / relative
        for directory in (container / "workload", container / "enclave", container):
            _remove_when_empty(directory)


def kill_container(path: str, root: Path = CGROUP_ROOT) -> None:
    """SIGKILL every process in the container's cgroups (as ``runc delete --force`` does)."""
    relative = path.strip("/")
    for hierarchy in _hierarchies(root):
        container = hierarchy / relative
        for directory in (container / "workload", container / "enclave", container):
            try:
                pids = (directory / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def _remove_when_empty(directory: Path, attempts: int = 50) -> None:
    """rmdir a cgroup, retrying briefly: the kernel releases an exited task's membership asynchronously."""
    for _ in range(attempts):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


class Cgroups:
    """The workload's cgroups: made with the limits, joined by the workload before it execs, removed after it ends."""

    def __init__(self, name: str, limits: Limits, root: Path = CGROUP_ROOT, parent: str = "sealpod") -> None:
        self.directories: list[Path] = []
        self.parent = parent
        wanted = {"memory": limits.memory, "pids": limits.pids}
        try:
            for controller, value in wanted.items():
                if value is None:
                    continue
                directory, version = _directory(controller, name, root, parent)
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
            _remove_when_empty(directory)
            if self.parent == "sealpod":  # our own parent: removed when empty; a container's is the runtime's
                with contextlib.suppress(OSError):
                    os.rmdir(directory.parent)
        self.directories = []
