"""A change signal for the admin's data of a SQLite store, in memory that every process on the host shares.

The signal is a counter in a small file beside the database (``<db>-admin-signal``), mapped into each process.
Every sealpod process bumps it, under a lock on the file, after it commits a change to resources, policies or
reference values, and before it acknowledges that change. The per-process caches of that data
(:mod:`sealpod.kbs.service.admin_data`) compare it with one memory read instead of a read transaction of the store
(twice per handshake: about 5% of a worker's CPU under load).

The database's counter, kept by triggers whoever writes, stays the authority: a cache checks it when the signal has
moved, and at least every :data:`RECHECK` seconds anyway, for writers that do not bump the signal (sqlite3 by hand,
a KBS older than this file).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from pathlib import Path

from sealpod.errors import SealpodError

#: Seconds a cache trusts an unmoved signal before it checks the database's counter again.
RECHECK = 1.0
_SIZE = 8
#: POSIX record locks exclude other processes only: this one excludes this process's other threads and instances
#: (and keeps a close, which drops every lock the process holds on the file, out of another's bump).
_IN_PROCESS = threading.Lock()


def signal_path(database: Path) -> Path:
    """Where the signal of the SQLite database ``database`` lives."""
    return database.with_name(database.name + "-admin-signal")


def _open_or_make(path: Path, like: Path | None) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    if like is not None:
        model = os.stat(like)
        if os.geteuid() == 0:
            os.fchown(fd, model.st_uid, model.st_gid)
        os.fchmod(fd, model.st_mode & 0o666)
    return fd


class AdminSignal:
    """The signal file of one SQLite store, mapped; :meth:`value` to check it, :meth:`bump` after a change."""

    def __init__(self, path: Path, like: Path | None = None) -> None:
        """Open ``path``, or make it with the owner and mode of the file ``like`` (the database: whoever may write
        the store may bump its signal, as SQLite gives its -wal and -shm files the database's), else 0600."""
        self.path = path
        try:
            self._fd = _open_or_make(path, like)
        except OSError as err:
            raise SealpodError(
                f"cannot open the KBS store's change signal {path}: {err.strerror}",
                hint="run the KBS as a user that may write the store's directory and files",
            ) from None
        try:
            if os.fstat(self._fd).st_size < _SIZE:
                os.ftruncate(self._fd, _SIZE)  # zeros; a second process doing the same at once changes nothing
            self._map = mmap.mmap(self._fd, _SIZE)
        except BaseException:
            os.close(self._fd)
            raise
        self._counter = memoryview(self._map).cast("Q")

    def value(self) -> int:
        """The counter now (it only ever changes: compare it for equality)."""
        return int(self._counter[0])

    def bump(self) -> None:
        """Move the counter on: call it after the change has been committed, before it is acknowledged."""
        with _IN_PROCESS:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)  # two writers at once must not both write the same next value
            try:
                self._counter[0] = (self._counter[0] + 1) % (1 << 64)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Unmap the signal and close its file."""
        with _IN_PROCESS:
            self._counter.release()
            self._map.close()
            os.close(self._fd)
