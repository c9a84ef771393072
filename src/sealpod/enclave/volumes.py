"""The host's volumes in the workload's rootfs, with the sealed secrets in them unsealed.

Each volume is bound at its destination, resolved inside the rootfs (a symlink in the image cannot point it
elsewhere), ``nosuid,nodev`` and read-only when asked. In a read-only volume (Kubernetes mounts Secret and
ConfigMap volumes read-only) every regular file whose whole content is a sealed secret (``sealed.<JWS>``, an ending
newline allowed) is unsealed: the plaintext goes into a tmpfs in the enclave's private mount namespace and is bound
over the file, so the workload reads the secret at the file's path while the host's copy stays sealed.

All of it happens in the enclave's private mount namespace, after attestation and before the workload starts.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sealpod._internal.files import read_bounded
from sealpod.agent.secrets import is_sealed
from sealpod.boundary.volumes import VolumeSpec
from sealpod.config import state_dir
from sealpod.enclave import linux
from sealpod.errors import SealpodError
from sealpod.oci.unpack import RootfsWriter

#: The largest file read as a possible sealed secret (a sealed secret is a short JWS).
MAX_SEALED_FILE = 64 * 1024
#: The most entries of a read-only volume scanned for sealed secrets; a bigger volume is bound as it is.
MAX_SCANNED = 10_000
MAX_SYMLINK_HOPS = 40
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20


class VolumeError(SealpodError):
    """A volume cannot be mounted, or a sealed secret in it cannot be unsealed; the workload does not start."""


class MountedVolumes:
    """The volumes bound into a rootfs and the tmpfs holding their unsealed files; :meth:`close` unmounts them."""

    def __init__(self) -> None:
        self.mounts: list[str] = []
        self.unsealed: list[str] = []
        self._secrets: Path | None = None
        self._count = 0

    def secret_file(self, content: bytes, mode: int, uid: int, gid: int) -> str:
        """A new file in the enclave's secrets tmpfs holding ``content``, with the given mode and owner."""
        if self._secrets is None:
            base = state_dir() / "run"
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._secrets = Path(tempfile.mkdtemp(prefix="secrets-", dir=base))
            linux.mount(
                "tmpfs",
                str(self._secrets),
                "tmpfs",
                linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "mode=0700,size=16m",
            )
        self._count += 1
        path = str(self._secrets / str(self._count))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, content)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, stat.S_IMODE(mode))
        finally:
            os.close(fd)
        return path

    def close(self) -> None:
        """Unmount every volume and unsealed file (the last first), then the secrets tmpfs."""
        for target in reversed(self.mounts):
            with contextlib.suppress(OSError):  # the namespace ends with the enclave anyway
                linux.umount(target, linux.MNT_DETACH)
        self.mounts.clear()
        if self._secrets is not None:
            try:
                linux.umount(str(self._secrets), linux.MNT_DETACH)
                os.rmdir(self._secrets)
            except OSError:
                pass
            self._secrets = None


def mount_volumes(
    rootfs: Path,
    specs: list[VolumeSpec],
    unseal: Callable[[str], bytes],
    allowed: Callable[[VolumeSpec, bool], None],
) -> MountedVolumes:
    """Bind ``specs`` into ``rootfs`` and unseal the sealed files of the read-only ones with ``unseal``.

    ``allowed(spec, covers)`` raises when the tenant's run policy refuses the volume (``covers``: the destination
    holds something of the image's). On any failure what was mounted is unmounted again.
    """
    mounted = MountedVolumes()
    try:
        for spec in specs:
            _mount_one(rootfs, spec, unseal, allowed, mounted)
    except BaseException:
        mounted.close()
        raise
    return mounted


def _mount_one(
    rootfs: Path,
    spec: VolumeSpec,
    unseal: Callable[[str], bytes],
    allowed: Callable[[VolumeSpec, bool], None],
    mounted: MountedVolumes,
) -> None:
    try:
        source = os.stat(spec.source)
    except OSError as err:
        raise VolumeError(f"the volume {spec}: its source cannot be read: {err.strerror}") from None
    is_dir = stat.S_ISDIR(source.st_mode)
    if not is_dir and not stat.S_ISREG(source.st_mode):
        raise VolumeError(f"the volume {spec}: its source is neither a directory nor a regular file")
    target = _target(rootfs, spec, is_dir, allowed)
    linux.mount(spec.source, target, None, linux.MS_BIND | linux.MS_REC)
    mounted.mounts.append(target)
    flags = linux.MS_BIND | _MS_REMOUNT | linux.MS_NOSUID | linux.MS_NODEV | (_MS_RDONLY if spec.read_only else 0)
    linux.mount("none", target, None, flags)
    if spec.read_only:
        _unseal_files(target, spec, unseal, mounted)


def _target(rootfs: Path, spec: VolumeSpec, is_dir: bool, allowed: Callable[[VolumeSpec, bool], None]) -> str:
    """The mount point of ``spec`` inside ``rootfs``, following the image's symlinks in-root, once ``allowed``
    (told whether something of the image's is there: a file, or a directory that is not empty) let it; a missing
    mount point (and its missing parents) is made only then, so that a refused volume leaves the rootfs as it was."""
    writer = RootfsWriter(str(rootfs))
    path = spec.destination
    for _ in range(MAX_SYMLINK_HOPS):
        parent, name = posixpath.split(path)
        try:
            host_parent = writer.resolve_dir(parent, create=False)
            st = os.lstat(f"{host_parent}/{name}") if host_parent is not None else None
        except FileNotFoundError:
            st = None
        except SealpodError as err:
            raise VolumeError(f"the volume {spec}: its destination cannot be resolved in the image: {err}") from None
        if st is None:
            allowed(spec, False)
            host = f"{writer.resolve_dir(parent, create=True)}/{name}"
            if is_dir:
                os.mkdir(host, 0o755)
            else:
                os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
            return host
        host = f"{host_parent}/{name}"
        if stat.S_ISLNK(st.st_mode):
            link = os.readlink(host)
            path = "/" + posixpath.normpath(link if link.startswith("/") else posixpath.join(parent, link)).lstrip("/")
            continue
        if stat.S_ISDIR(st.st_mode) != is_dir:
            kind = "a directory" if is_dir else "a file"
            raise VolumeError(f"the volume {spec}: its source is {kind} and the image's {path} is not")
        allowed(spec, (not is_dir) or bool(os.listdir(host)))
        return host
    raise VolumeError(f"the volume {spec}: too many symbolic links resolving its destination in the image")


def _unseal_files(target: str, spec: VolumeSpec, unseal: Callable[[str], bytes], mounted: MountedVolumes) -> None:
    """Bind the plaintext of each sealed file under ``target`` over it."""
    candidates = [(target, spec.destination)] if os.path.isfile(target) else _regular_files(target, spec)
    for host, shown in candidates:
        sealed = _sealed_content(host)
        if sealed is None:
            continue
        try:
            secret = unseal(sealed)
        except SealpodError as err:
            raise VolumeError(
                f"the sealed secret in the file {shown} (volume {spec}) cannot be unsealed: {err}",
                hint=err.hint or "check that the KBS holds the secret and its verification key, and allows them",
            ) from None
        _overmount(host, shown, spec, secret, mounted)


def _regular_files(root: str, spec: VolumeSpec) -> list[tuple[str, str]]:
    """The regular files under ``root`` (symlinks not followed), with their paths as the workload sees them;
    none when the volume has more than :data:`MAX_SCANNED` entries."""
    found: list[tuple[str, str]] = []
    pending = [("", root)]
    seen = 0
    while pending:
        relative, directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        seen += len(entries)
        if seen > MAX_SCANNED:
            print(
                f"sealpod: the volume {spec} has over {MAX_SCANNED} entries: not scanned for sealed secrets",
                file=sys.stderr,
            )
            return []
        for entry in entries:
            shown = f"{relative}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                pending.append((shown, entry.path))
            elif entry.is_file(follow_symlinks=False):
                found.append((entry.path, spec.destination + shown))
    return found


def _sealed_content(path: str) -> str | None:
    """The sealed secret that is the whole content of the regular file ``path`` (not a symlink), else None."""
    try:
        raw = read_bounded(path, MAX_SEALED_FILE, "volume file", VolumeError, follow_symlinks=False)
        text = raw.removesuffix(b"\n").decode("ascii")
    except (OSError, VolumeError, UnicodeDecodeError):
        return None  # not a file that can hold a sealed secret: the workload sees it as it is
    return text if is_sealed(text) else None


def _overmount(host: str, shown: str, spec: VolumeSpec, secret: bytes, mounted: MountedVolumes) -> None:
    """Bind a tmpfs file holding ``secret`` over the file ``host`` (opened without following a symlink, so a
    host that swaps the file for a link cannot move the mount)."""
    fd = os.open(host, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VolumeError(f"the file {shown} (volume {spec}) changed while it was unsealed")
        plain = mounted.secret_file(secret, st.st_mode, st.st_uid, st.st_gid)
        where = f"/proc/self/fd/{fd}"
        linux.mount(plain, where, None, linux.MS_BIND)
        mounted.mounts.append(host)
        linux.mount("none", host, None, linux.MS_BIND | _MS_REMOUNT | _MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
    finally:
        os.close(fd)
    mounted.unsealed.append(shown)
