"""An overlayfs snapshotter with containerd's overlay layout and mounts: ``<root>/snapshots/<id>/fs`` and ``work``.

A snapshot without parents is a bind mount of its own ``fs``; an active snapshot with parents is an overlay with
``upperdir``/``workdir`` over the parents' ``fs`` directories (nearest first); a view of one parent is a read-only
bind of that parent, a view of several an overlay of ``lowerdir`` only. The snapshotter never mounts anything
itself: containerd mounts what it returns.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sealpod.runtime.snapshotter.filters import parse as parse_filters
from sealpod.runtime.snapshotter.store import Info, Kind, MetaStore, Snapshot, Tx, Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    """One mount for containerd to perform (``mount -t type -o options source target``)."""

    type: str
    source: str
    options: tuple[str, ...]


def disk_usage(path: Path) -> Usage:
    """Blocks (as bytes) and distinct inodes below ``path``, as containerd's continuity ``fs.DiskUsage``."""
    seen: set[tuple[int, int]] = set()
    size = 0

    def account(st: os.stat_result) -> None:
        nonlocal size
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            size += st.st_blocks * 512

    account(os.lstat(path))
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            account(os.lstat(os.path.join(dirpath, name)))
    return Usage(size=size, inodes=len(seen))


class OverlaySnapshotter:
    """Snapshots as directories under ``root``, metadata in ``root/metadata.db``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.snapshots_dir = root / "snapshots"
        self.snapshots_dir.mkdir(mode=0o700, exist_ok=True)
        self.store = MetaStore(root / "metadata.db")
        self.index_off = Path("/sys/module/overlay/parameters/index").exists()

    def close(self) -> None:
        """Close the metadata store."""
        self.store.close()

    def upper_path(self, snapshot_id: str) -> Path:
        """The ``fs`` directory of a snapshot (its upperdir while active)."""
        return self.snapshots_dir / snapshot_id / "fs"

    def work_path(self, snapshot_id: str) -> Path:
        """The overlay workdir of an active snapshot."""
        return self.snapshots_dir / snapshot_id / "work"

    # -- reads -----------------------------------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        """The info of ``key``."""
        with self.store.read() as tx:
            return tx.get_info(key)[1]

    def usage(self, key: str) -> Usage:
        """The usage of ``key``: measured now while active, as recorded at commit otherwise."""
        with self.store.read() as tx:
            snapshot_id, info, usage = tx.get_info(key)
        if info.kind == Kind.ACTIVE:
            return disk_usage(self.upper_path(snapshot_id))
        return usage

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or view."""
        with self.store.read() as tx:
            snapshot = tx.get_snapshot(key)
        return self._mounts(snapshot)

    def walk(self, filters: list[str]) -> list[Info]:
        """The infos matching any of ``filters`` (all without filters), oldest first."""
        match = parse_filters(filters)
        with self.store.read() as tx:
            infos = [info for _, info in tx.walk()]
        return [info for info in infos if match(info)]

    # -- writes ----------------------------------------------------------------------------------------------

    def prepare(self, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        """A new writable snapshot on ``parent``."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        """A new read-only snapshot of ``parent``."""
        return self._create(Kind.VIEW, key, parent, labels)

    def update(self, name: str, labels: Mapping[str, str], paths: list[str]) -> Info:
        """Update the labels of ``name`` per field mask ``paths``."""
        with self.store.write() as tx:
            return tx.update_info(name, labels, paths)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None) -> None:
        """Commit active ``key`` as ``name``, recording its usage."""
        with self.store.write() as tx:
            found = tx.find(key)
            usage = disk_usage(self.upper_path(found[0])) if found and found[1] == Kind.ACTIVE else Usage()
            tx.commit_active(key, name, usage, labels)  # reports a missing or non-active key in containerd's order

    def remove(self, key: str) -> None:
        """Remove ``key`` and its directory."""
        with self.store.write() as tx:
            snapshot_id, _ = tx.remove(key)
        self._remove_dir(self.snapshots_dir / snapshot_id)

    def cleanup(self) -> None:
        """Remove directories that no snapshot owns (left by a crash between the database and the disk)."""
        doomed = []
        with self.store.write() as tx:
            ids = tx.ids()
            for entry in os.scandir(self.snapshots_dir):
                if entry.name in ids or entry.name.startswith("rm-"):
                    continue
                # rename under the lock: the id of an orphan may be handed out again once the lock is released
                target = Path(tempfile.mkdtemp(prefix="rm-", dir=self.snapshots_dir))
                os.rename(entry.path, target / "d")
                doomed.append(target)
        for entry in os.scandir(self.snapshots_dir):
            if entry.name.startswith("rm-") and Path(entry.path) not in doomed:
                doomed.append(Path(entry.path))
        for path in doomed:
            log.debug("cleanup: removing %s", path)
            self._remove_dir(path)

    def create_committed(
        self, name: str, parent: str, labels: Mapping[str, str] | None, populate: Callable[[Path], None]
    ) -> str:
        """A committed snapshot made directly, its ``fs`` filled by ``populate``; returns its id."""

        def register(tx: Tx, fs: Path) -> tuple[str, tuple[str, ...]]:
            populate(fs)
            snapshot_id = tx.create_committed(name, parent, labels, disk_usage(fs))
            return snapshot_id, tx.parent_ids(int(snapshot_id))[1:]

        return self._add(Kind.COMMITTED, register)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        created: list[Snapshot] = []

        def register(tx: Tx, _fs: Path) -> tuple[str, tuple[str, ...]]:
            created.append(tx.create(kind, key, parent, labels))
            return created[0].id, created[0].parent_ids

        self._add(kind, register)
        return self._mounts(created[0])

    def _add(self, kind: Kind, register: Callable[[Tx, Path], tuple[str, tuple[str, ...]]]) -> str:
        """Make a snapshot directory in a temporary place, record the snapshot, then move the directory to its id;
        all in one write transaction, so a failure leaves neither a row nor a directory."""
        installed: Path | None = None
        try:
            with self.store.write() as tx:
                tmp = self._new_dir(kind)
                try:
                    snapshot_id, parent_ids = register(tx, tmp / "fs")
                    self._chown_like_parent(parent_ids, tmp / "fs")
                    installed = self._install(tmp, snapshot_id)
                except BaseException:
                    self._remove_dir(tmp)
                    raise
        except BaseException:
            if installed is not None:  # the database commit failed after the rename
                self._remove_dir(installed)
            raise
        return snapshot_id

    def _new_dir(self, kind: Kind) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir))
        (tmp / "fs").mkdir(0o755)
        (tmp / "fs").chmod(0o755)  # whatever the umask
        if kind == Kind.ACTIVE:
            (tmp / "work").mkdir(0o711)
        return tmp

    def _chown_like_parent(self, parent_ids: tuple[str, ...], fs: Path) -> None:
        if parent_ids:
            st = os.stat(self.upper_path(parent_ids[0]))
            os.lchown(fs, st.st_uid, st.st_gid)

    def _install(self, tmp: Path, snapshot_id: str) -> Path:
        path = self.snapshots_dir / snapshot_id
        if path.exists():  # an orphan of a rolled-back transaction: its id was never committed
            log.warning("removing stale snapshot directory %s", path)
            self._remove_dir(path)
        os.rename(tmp, path)
        return path

    @staticmethod
    def _remove_dir(path: Path) -> None:
        def onerror(_func: object, failed: str, exc: tuple[type[BaseException], BaseException, object]) -> None:
            if not isinstance(exc[1], FileNotFoundError):
                log.warning("failed to remove %s: %s", failed, exc[1])

        shutil.rmtree(path, onerror=onerror)

    def _mounts(self, snapshot: Snapshot) -> list[Mount]:
        if not snapshot.parent_ids:
            mode = "ro" if snapshot.kind == Kind.VIEW else "rw"
            return [Mount("bind", str(self.upper_path(snapshot.id)), (mode, "rbind"))]
        options: list[str] = ["index=off"] if self.index_off else []
        if snapshot.kind == Kind.ACTIVE:
            options += [f"workdir={self.work_path(snapshot.id)}", f"upperdir={self.upper_path(snapshot.id)}"]
        elif len(snapshot.parent_ids) == 1:
            return [Mount("bind", str(self.upper_path(snapshot.parent_ids[0])), ("ro", "rbind"))]
        lower = ":".join(str(self.upper_path(p)) for p in snapshot.parent_ids)
        options.append(f"lowerdir={lower}")
        return [Mount("overlay", "overlay", tuple(options))]
