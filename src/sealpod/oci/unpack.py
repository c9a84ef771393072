"""Applying layer tars to a root filesystem, safely.

Every path is resolved inside the rootfs the way umoci does it: names are cleaned lexically under ``/`` (so ``..``
and absolute names stay inside), intermediate symlinks are followed with the rootfs as ``/`` (so a symlink to
``/etc`` means ``ROOTFS/etc``), and the final component is never followed: an existing entry is removed before a
new one is created with ``O_EXCL | O_NOFOLLOW``. OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) hide only what
lower layers put there. Directory modes and times are applied last, deepest first.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import shutil
import stat
from dataclasses import dataclass, field

from sealpod.errors import UnpackError, UnsafeLayerError
from sealpod.oci import tarstream as ts
from sealpod.oci.chunks import ChunkReader

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 255
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR_NAMESPACES = ("user.", "trusted.", "security.", "system.posix_acl_access", "system.posix_acl_default")


@dataclass(slots=True)
class UnpackOptions:
    """How to unpack: ownership (default: only as root), device nodes (off unless allowed), bounds."""

    preserve_ownership: bool | None = None
    allow_devices: bool = False
    limits: ts.TarLimits = field(default_factory=ts.TarLimits)

    @property
    def own(self) -> bool:
        """Whether to set uid/gid from the tar (needs root)."""
        if self.preserve_ownership is None:
            return os.geteuid() == 0
        return self.preserve_ownership


@dataclass(slots=True)
class LayerStats:
    """What one layer did to the rootfs."""

    entries: int = 0
    bytes: int = 0
    whiteouts: int = 0
    skipped: list[str] = field(default_factory=list)


class RootfsWriter:
    """Applies layers, in order, to the directory ``root`` (which should be a private staging directory)."""

    def __init__(self, root: str, options: UnpackOptions | None = None) -> None:
        self.root = os.path.realpath(root)
        self.options = options or UnpackOptions()
        self._own = self.options.own
        self._dir_cache: dict[str, str] = {"/": self.root}
        self._dir_meta: dict[str, tuple[int, int]] = {}
        self._upper: set[str] = set()

    # -- path resolution -------------------------------------------------------------------------------------

    def _host(self, components: list[str]) -> str:
        return self.root + "/" + "/".join(components) if components else self.root

    def resolve_dir(self, path: str, *, create: bool) -> str | None:
        """The host path of directory ``path`` (clean, absolute, rootfs-relative), following symlinks in-root.

        A missing component is taken lexically, as umoci's securejoin takes it (a later ``..`` undoes it, so
        ``a -> x/../..`` makes no ``x``); the missing directories of the result are created when ``create``, else
        None is returned.
        """
        cached = self._dir_cache.get(path)
        if cached is not None:
            return cached
        pending = [part for part in reversed(path.split("/")) if part]
        current: list[str] = []
        existing = 0  # how many leading components of ``current`` exist
        hops = 0
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                if current:
                    current.pop()
                    existing = min(existing, len(current))
                continue
            if existing < len(current):  # below a missing directory: missing too
                current.append(part)
                continue
            host = self._host([*current, part])
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                current.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafeLayerError(f"too many levels of symbolic links resolving {path!r}")
                target = os.readlink(host)
                if target.startswith("/"):
                    current, existing = [], 0
                pending.extend(part for part in reversed(target.split("/")) if part)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerError(f"cannot resolve {path!r}: /{'/'.join([*current, part])} is not a directory")
            current.append(part)
            existing += 1
        if existing < len(current):
            if not create:
                return None
            for depth in range(existing + 1, len(current) + 1):
                made = self._host(current[:depth])
                os.mkdir(made, 0o755)
                self._upper.add(made)
        host = self._host(current)
        self._dir_cache[path] = host
        return host

    def _remove(self, host: str) -> None:
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(host)
            prefix = host + "/"
            for key in [k for k in self._dir_meta if k == host or k.startswith(prefix)]:
                del self._dir_meta[key]
        else:
            os.unlink(host)
        self._dir_cache = {"/": self.root}

    # -- layers ----------------------------------------------------------------------------------------------

    def apply(self, reader: ChunkReader) -> LayerStats:
        """Apply one uncompressed layer tar read from ``reader``; returns what it did."""
        stats = LayerStats()
        self._upper = set()
        tar = ts.TarStream(reader, self.options.limits)
        for entry in tar:
            stats.entries += 1
            try:
                self._apply_entry(tar, entry, stats)
            except UnsafeLayerError:
                raise
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise UnsafeLayerError(f"{entry.name!r}: symbolic link loop") from None
                raise UnpackError(f"cannot unpack {entry.name!r}: {err.strerror or err}") from err
        stats.bytes = tar.total_bytes
        return stats

    def _apply_entry(self, tar: ts.TarStream, entry: ts.TarEntry, stats: LayerStats) -> None:
        path = posixpath.normpath("/" + entry.name)
        if path.startswith("//"):
            path = path[1:]
        if path == "/":
            if entry.type != ts.DIRECTORY:
                raise UnsafeLayerError(f"entry {entry.name!r} names the rootfs itself but is not a directory")
            self._record_dir(self.root, entry)
            return
        parent_path, _, base = path.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            stats.whiteouts += 1
            self._whiteout(parent_path or "/", base, entry)
            return
        parent = self.resolve_dir(parent_path or "/", create=True)
        assert parent is not None
        host = parent + "/" + base
        self._upper.add(host)
        # made exclusively (O_EXCL, mkdir, symlink, link, mknod all refuse an existing name), so that a new path,
        # nearly every path of a pull, costs no lookup first; what exists is looked at and replaced only then
        try:
            self._make(tar, entry, host, stats)
        except FileExistsError:
            existing = os.lstat(host)
            if entry.type == ts.DIRECTORY and stat.S_ISDIR(existing.st_mode):
                self._directory_metadata(host, entry)
                return
            self._remove(host)
            self._make(tar, entry, host, stats)

    def _make(self, tar: ts.TarStream, entry: ts.TarEntry, host: str, stats: LayerStats) -> None:
        """Create ``host`` for ``entry``; FileExistsError, before anything is written, when the name is taken."""
        kind = entry.type
        if kind == ts.REGULAR:
            self._write_file(tar, entry, host)
        elif kind == ts.DIRECTORY:
            os.mkdir(host, 0o700)
            self._directory_metadata(host, entry)
        elif kind == ts.SYMLINK:
            os.symlink(entry.linkname, host)
            self._set_owner(host, entry)
            os.utime(host, ns=(int(entry.mtime * 1e9),) * 2, follow_symlinks=False)
        elif kind == ts.HARDLINK:
            self._hardlink(entry, host)
        else:
            self._special(entry, host, stats)

    def _directory_metadata(self, host: str, entry: ts.TarEntry) -> None:
        self._set_owner(host, entry)
        self._set_xattrs(host, entry)
        self._record_dir(host, entry)

    def _whiteout(self, parent_path: str, base: str, entry: ts.TarEntry) -> None:
        parent = self.resolve_dir(parent_path, create=False)
        if base == OPAQUE_WHITEOUT:
            if parent is not None:
                self._clear_lower(parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            log.debug("ignoring whiteout metadata entry %s", entry.name)
            return
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise UnsafeLayerError(f"whiteout {entry.name!r} names no file")
        if parent is None:
            return
        target = parent + "/" + name
        if target not in self._upper:
            self._remove(target)

    def _clear_lower(self, directory: str) -> None:
        with os.scandir(directory) as children:
            for child in list(children):
                if child.path not in self._upper:
                    self._remove(child.path)
                elif child.is_dir(follow_symlinks=False):
                    self._clear_lower(child.path)

    def _write_file(self, tar: ts.TarStream, entry: ts.TarEntry, host: str) -> None:
        fd = os.open(host, _O_CREATE, 0o600)
        try:
            tar.copy_content(entry, fd)
            if self._own:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode)
            for name, value in entry.xattrs.items():
                self._setxattr(fd, name, value, entry)
            mtime = int(entry.mtime * 1e9)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _hardlink(self, entry: ts.TarEntry, host: str) -> None:
        target_path = posixpath.normpath("/" + entry.linkname)
        if target_path.startswith("//"):
            target_path = target_path[1:]
        target_parent, _, target_base = target_path.rpartition("/")
        resolved = self.resolve_dir(target_parent or "/", create=False) if target_base else None
        target = f"{resolved}/{target_base}" if resolved is not None else None
        try:
            st = os.lstat(target) if target else None
        except FileNotFoundError:
            st = None
        if target is None or st is None:
            raise UnsafeLayerError(f"hardlink {entry.name!r} points to {entry.linkname!r}, which does not exist")
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayerError(f"hardlink {entry.name!r} points to the directory {entry.linkname!r}")
        os.link(target, host, follow_symlinks=False)

    def _special(self, entry: ts.TarEntry, host: str, stats: LayerStats) -> None:
        if entry.type == ts.FIFO:
            os.mkfifo(host, 0o600)
        else:
            if not self.options.allow_devices or os.geteuid() != 0:
                why = "not allowed (use --allow-devices)" if not self.options.allow_devices else "needs root"
                stats.skipped.append(f"device node {entry.name} ({why})")
                self._upper.discard(host)
                return
            kind = stat.S_IFCHR if entry.type == ts.CHARDEV else stat.S_IFBLK
            os.mknod(host, kind | 0o600, os.makedev(entry.devmajor, entry.devminor))
        self._set_owner(host, entry)
        os.chmod(host, entry.mode)
        self._set_xattrs(host, entry)
        os.utime(host, ns=(int(entry.mtime * 1e9),) * 2, follow_symlinks=False)

    def _set_owner(self, host: str, entry: ts.TarEntry) -> None:
        if self._own:
            os.chown(host, entry.uid, entry.gid, follow_symlinks=False)

    def _set_xattrs(self, host: str, entry: ts.TarEntry) -> None:
        for name, value in entry.xattrs.items():
            self._setxattr(host, name, value, entry)

    def _setxattr(self, target: str | int, name: str, value: bytes, entry: ts.TarEntry) -> None:
        if not name.startswith(_XATTR_NAMESPACES):
            raise UnsafeLayerError(
                f"{entry.name!r} carries xattr {name!r} outside the user, trusted, security and ACL namespaces"
            )
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
                raise
            log.warning("cannot set xattr %s on %s: %s", name, entry.name, err.strerror)

    def _record_dir(self, host: str, entry: ts.TarEntry) -> None:
        if host == self.root:
            self._set_owner(host, entry)
        self._dir_meta[host] = (entry.mode, int(entry.mtime * 1e9))

    def finish(self) -> None:
        """Apply directory modes and times, deepest first (after all layers: writes would change them)."""
        for host in sorted(self._dir_meta, key=lambda p: p.count("/"), reverse=True):
            mode, mtime = self._dir_meta[host]
            try:
                if not stat.S_ISDIR(os.lstat(host).st_mode):
                    continue
                os.chmod(host, mode)
                os.utime(host, ns=(mtime, mtime), follow_symlinks=False)
            except FileNotFoundError:
                continue
