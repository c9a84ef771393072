"""The KBS store in one SQLite file: WAL, fsync on commit for the admin's writes, a change signal in shared memory
for every process's caches (:mod:`.admin_signal`), and group commits of attestations in one write transaction."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sealpod.kbs.service.storage.admin_signal import AdminSignal, signal_path
from sealpod.kbs.service.storage.base import (
    ADMIN_TABLES,
    BUSY_WAIT,
    RECORD_INTO,
    RECORD_ROW,
    RECORD_TAIL,
    SCHEMA,
    Session,
    Storage,
    StoreBusy,
)

#: The housekeeping restarts the SQLite WAL once it holds more frames than this (32 MiB of 4 KiB pages).
WAL_RESTART_FRAMES = 8192
#: The triggers of the admin counter, one per table and event.
_GENERATION = [
    f"CREATE TRIGGER IF NOT EXISTS admin_generation_{table}_{event.lower()} AFTER {event} ON {table} "  # noqa: S608 (constants)
    "BEGIN UPDATE admin_generation SET value = value + 1 WHERE id = 0; END"
    for table in ADMIN_TABLES
    for event in ("INSERT", "UPDATE", "DELETE")
]
_RECORD = RECORD_INTO + RECORD_ROW + RECORD_TAIL


class SqliteStorage(Storage):
    """A store in the SQLite file of ``sqlite://PATH`` (or PATH)."""

    placeholder = "?"

    @property
    def path(self) -> Path:
        """The database file."""
        return Path(self.url.removeprefix("sqlite://"))

    def _connect(self, *, poll_busy: bool = False) -> Any:
        """A connection; with ``poll_busy`` (the request path's) statements fail at once on another writer's lock
        and :meth:`_run` polls: SQLite's busy handler sleeps a millisecond or more per try, with the event loop
        stalled all that while."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a committed transaction is in the WAL before commit returns, so a killed process loses
        # nothing; admin writes (resources, policies, references) switch to FULL to survive power loss too.
        conn.execute("PRAGMA synchronous=NORMAL")
        if poll_busy:
            conn.execute("PRAGMA busy_timeout=0")
        return conn

    def _make_schema(self) -> None:
        for statement in [*SCHEMA, *_GENERATION]:
            self._execute(statement.format(blob="BLOB"))

    def _opened(self) -> None:
        self.admin_signal = AdminSignal(signal_path(self.path), like=self.path)

    def _statement(self, sql: str, params: tuple[Any, ...], durable: bool) -> list[tuple[Any, ...]]:
        if not durable:
            return self._run(sql, params)
        self._conn.execute("PRAGMA synchronous=FULL")
        rows = self._run(sql, params)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        return rows

    def _run(self, sql: str, params: tuple[Any, ...], *, wait: bool = True) -> list[tuple[Any, ...]]:
        """One autocommit statement, tried again while another connection holds the write lock (in steps of 50 us
        to 1 ms, for up to BUSY_WAIT seconds; without ``wait``, :class:`StoreBusy` at once): nothing of a statement
        that failed busy was committed."""
        delay, deadline, spins = 50e-6, 0.0, 0
        while True:
            try:
                return self._fetch(sql, params)
            except sqlite3.OperationalError as err:
                if (getattr(err, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_BUSY:
                    raise
                if not wait:
                    raise StoreBusy("KBS storage error: another writer holds the SQLite store") from None
                if spins < 64:
                    spins += 1
                    os.sched_yield()
                    continue
                now = time.monotonic()
                deadline = deadline or now + BUSY_WAIT
                if now >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.001)

    def record_attestations(self, sessions: list[Session], *, wait: bool = True) -> list[bool]:
        """A group commit: one write transaction (one lock, one commit, the pages written once)."""
        rows = [(s.id, s.nonce, s.tee, s.expires, s.token, s.evidence_digest) for s in sessions]
        with self._using_store():
            if len(rows) == 1:
                return [bool(self._run(_RECORD, rows[0], wait=wait))]
            self._run("BEGIN IMMEDIATE", (), wait=wait)  # polled like any statement while another writer holds it
            try:
                recorded = [bool(self._fetch(_RECORD, row)) for row in rows]
                self._fetch("COMMIT", ())
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return recorded

    def _prepare_maintenance(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")

    def _housekeep(self, conn: sqlite3.Connection) -> None:
        self._checkpoint(conn)

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        """PASSIVE copies the WAL's frames into the database without blocking anyone; under constant writes it
        never catches up, so the WAL would grow without end. Once it holds more than :data:`WAL_RESTART_FRAMES`,
        RESTART copies the frames written meanwhile and makes the next writer start the WAL over: it holds every
        writer off while it copies and fsyncs (5-10 ms here), so not every round."""
        frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        if frames <= WAL_RESTART_FRAMES:
            return
        conn.execute("PRAGMA busy_timeout=200")  # RESTART holds writers off while it waits
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)")
        finally:
            conn.execute("PRAGMA busy_timeout=30000")
