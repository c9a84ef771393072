"""What the workload runs as: the image's own entrypoint, cmd, env, workdir and user, from the verified config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sealpod.errors import SealpodError
from sealpod.oci.models import ImageConfig

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Workload:
    """The process to start inside the sandbox."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    groups: list[int]


def _lookup(rootfs: Path, database: str, name: str) -> list[str] | None:
    path = rootfs / "etc" / database
    if path.is_symlink() or not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if fields and fields[0] == name:
            return fields
    return None


def _resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """``user[:group]`` by name or number, looked up in the image's own /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    if not name:
        name = "0"
    if name.isdigit():
        uid = int(name)
        entry = _lookup_by_uid(rootfs, uid)
        gid = int(entry[3]) if entry else uid
    else:
        fields = _lookup(rootfs, "passwd", name)
        if fields is None or len(fields) < 4:
            raise SealpodError(f"the image's user {name!r} is not in its /etc/passwd")
        uid, gid = int(fields[2]), int(fields[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            fields = _lookup(rootfs, "group", group)
            if fields is None or len(fields) < 3:
                raise SealpodError(f"the image's group {group!r} is not in its /etc/group")
            gid = int(fields[2])
    return uid, gid, [gid]


def _lookup_by_uid(rootfs: Path, uid: int) -> list[str] | None:
    path = rootfs / "etc" / "passwd"
    if path.is_symlink() or not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2] == str(uid):
            return fields
    return None


def workload_for(
    config: ImageConfig,
    rootfs: Path,
    command: list[str] | None = None,
    extra_env: list[str] | None = None,
    argv: list[str] | None = None,
) -> Workload:
    """The process the image's config describes; ``command`` replaces its Cmd, ``argv`` the whole command line, and
    ``extra_env`` adds to its Env."""
    container = config.config
    entrypoint = list(container.entrypoint or []) if container else []
    cmd = list(command) if command else list(container.cmd or []) if container else []
    argv = list(argv) if argv else entrypoint + cmd
    if not argv:
        raise SealpodError("the image has no Entrypoint or Cmd, and no command was given")
    env: dict[str, str] = {}
    for item in [DEFAULT_PATH, *(container.env or [] if container else []), *(extra_env or [])]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SealpodError(f"environment entry {item!r} is not NAME=VALUE")
        env[key] = value
    uid, gid, groups = _resolve_user(rootfs, (container.user if container else None) or "0")
    cwd = (container.working_dir if container else None) or "/"
    if not cwd.startswith("/"):
        cwd = "/" + cwd
    return Workload(argv, env, cwd, uid, gid, groups)
