"""The KBS's state: resources, policies, reference values and sessions, in SQLite (one file, WAL, fsync on commit)
or PostgreSQL (``postgresql://...``), so that several KBS processes can share one store."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealpod.errors import SealpodError
from sealpod.kbs.admin_signal import AdminSignal, signal_path

log = logging.getLogger(__name__)
#: Expired sessions go in batches, each its own short transaction, with a pause between them for the writers
#: of the request path (a delete holds the store's write lock for as long as it runs).
PURGE_BATCH = 256
PURGE_PAUSE = 0.005
_PURGE = f"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires < ? LIMIT {PURGE_BATCH})"  # noqa: S608 (a constant)
_RECORD_INTO = "INSERT INTO sessions (id, nonce, tee, expires, token, evidence_digest) VALUES "
_RECORD_ROW = "(?, ?, ?, ?, ?, ?)"
_RECORD_TAIL = " ON CONFLICT (id) DO NOTHING RETURNING id"
_RECORD = _RECORD_INTO + _RECORD_ROW + _RECORD_TAIL
#: PostgreSQL: sessions per INSERT statement (6 parameters each; a statement takes at most 65,535)
RECORD_ROWS_PER_STATEMENT = 1000
#: How long a request's statement waits for another SQLite writer (what the busy timeout was).
BUSY_WAIT = 30.0
#: The housekeeping restarts the SQLite WAL once it holds more frames than this (32 MiB of 4 KiB pages).
WAL_RESTART_FRAMES = 8192

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS resources (path TEXT PRIMARY KEY, data {blob} NOT NULL, updated BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS policies (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, "
    "PRIMARY KEY (kind, id))",
    "CREATE TABLE IF NOT EXISTS reference_values (name TEXT PRIMARY KEY, vals TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, nonce TEXT NOT NULL, tee TEXT NOT NULL, "
    "expires BIGINT NOT NULL, token TEXT, evidence_digest TEXT)",
    "CREATE TABLE IF NOT EXISTS kbs_keys (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
    # the purge finds expired sessions by this index: without it, each purge scanned the whole table holding the
    # write lock (70 ms at 60,000 sessions, while every worker's attestations waited)
    "CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires)",
    # a counter that every change of resources, policies or reference values bumps, by triggers in the database
    # itself (so also when the writer is a process without this code), for caches to check in one read
    "CREATE TABLE IF NOT EXISTS admin_generation (id INTEGER PRIMARY KEY CHECK (id = 0), value BIGINT NOT NULL)",
    "INSERT INTO admin_generation (id, value) VALUES (0, 0) ON CONFLICT (id) DO NOTHING",
]
_ADMIN_TABLES = ("resources", "policies", "reference_values")
#: SQLite's triggers of the admin counter, one per table and event.
_GENERATION_SQLITE = [
    *(
        f"CREATE TRIGGER IF NOT EXISTS admin_generation_{table}_{event.lower()} AFTER {event} ON {table} "  # noqa: S608 (constants)
        "BEGIN UPDATE admin_generation SET value = value + 1 WHERE id = 0; END"
        for table in _ADMIN_TABLES
        for event in ("INSERT", "UPDATE", "DELETE")
    ),
]
#: PostgreSQL's: bumped once per statement, in the writer's transaction (so visible with it).
_GENERATION_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION sealpod_admin_changed() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE admin_generation SET value = value + 1 WHERE id = 0; RETURN NULL; END $$",
]
#: PostgreSQL: each admin table's trigger, made where missing (CREATE OR REPLACE TRIGGER needs PostgreSQL 14)
_GENERATION_TRIGGER_POSTGRESQL = (
    "CREATE TRIGGER admin_generation_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION sealpod_admin_changed()"
)
#: PostgreSQL: the advisory lock that one process at a time holds while it makes the schema (two processes making
#: the same table at once can fail on PostgreSQL's catalog, IF NOT EXISTS or not).
_SCHEMA_LOCK = 0x5EA1_0D_4B5


def new_session_id(expires: int) -> str:
    """A new session's id: its expiry (8 hex digits) then 96 random bits (24 hex digits), 32 hex digits as trustee's
    simple UUIDs are. Ids in the order sessions are made keep the store's key index growing at its end: random ids
    dirtied a page of that index per session recorded (3.1 pages written per session in all, 2.3 now)."""
    return f"{expires & 0xFFFFFFFF:08x}{secrets.token_hex(12)}"


class StoreBusy(SealpodError):
    """Another connection holds the SQLite store's write lock; the write was not made (try again)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One client's handshake: before attestation only in its nonce (see :mod:`sealpod.kbs.challenges`), after it
    in the store too, with its token."""

    id: str
    nonce: str
    tee: str
    expires: int
    token: str | None
    evidence_digest: str | None


class Storage:
    """SQL storage over SQLite or PostgreSQL (the same statements; placeholders differ)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None
        self._conn = self._connect(poll_busy=True)
        self._param = "?" if self._sqlite else "%s"
        #: SQLite: the change signal of the admin's data that every process of this store shares (None: PostgreSQL)
        self.admin_signal: AdminSignal | None = None
        try:
            self._make_schema()
            if self._sqlite:
                database = Path(self.url.removeprefix("sqlite://"))
                self.admin_signal = AdminSignal(signal_path(database), like=database)
        except BaseException:  # no connection left open behind a store that could not be opened
            self._conn.close()
            raise

    def _make_schema(self) -> None:
        if self._sqlite:
            for statement in [*_SCHEMA, *_GENERATION_SQLITE]:
                self._execute(statement.format(blob="BLOB"))
            return
        with self._using_store(), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in [*_SCHEMA, *_GENERATION_POSTGRESQL]:
                self._conn.execute(statement.format(blob="BYTEA"))
            for table in _ADMIN_TABLES:
                name = f"admin_generation_{table}"
                found = "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass"
                if not self._conn.execute(found, (name, table)).fetchall():
                    self._conn.execute(_GENERATION_TRIGGER_POSTGRESQL.format(table=table))

    @property
    def _sqlite(self) -> bool:
        return not self.url.startswith(("postgresql://", "postgres://"))

    def _connect(self, *, poll_busy: bool = False) -> Any:
        """A connection; with ``poll_busy`` (SQLite, the request path's) statements fail at once on another
        writer's lock and :meth:`_execute` polls: SQLite's busy handler sleeps a millisecond or more per try,
        with the event loop stalled all that while."""
        if not self._sqlite:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        path = self.url.removeprefix("sqlite://")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a committed transaction is in the WAL before commit returns, so a killed process loses
        # nothing; admin writes (resources, policies, references) switch to FULL to survive power loss too.
        conn.execute("PRAGMA synchronous=NORMAL")
        if poll_busy:
            conn.execute("PRAGMA busy_timeout=0")
        return conn

    def start_maintenance(self, interval: float = 1.0, purge_every: float = 30.0) -> None:
        """Housekeeping off the request path, in a thread with its own connection: expired sessions are deleted,
        and (SQLite) the WAL is checkpointed there instead of inside whichever request crossed the threshold (a
        checkpoint copies pages and fsyncs the database: a stall of the event loop otherwise)."""
        if self._maintenance is not None:
            return
        if self._sqlite:
            with self._lock:
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._maintenance = threading.Thread(
            target=self._maintain, args=(interval, purge_every), name="kbs-storage", daemon=True
        )
        self._maintenance.start()

    def _maintain(self, interval: float, purge_every: float) -> None:
        conn = self._connect()
        last_purge = 0.0
        try:
            while not self._stop.wait(interval):
                try:
                    if time.monotonic() - last_purge >= purge_every:
                        self._purge(conn, int(time.time()))
                        last_purge = time.monotonic()
                    if self._sqlite:
                        self._checkpoint(conn)
                except Exception as err:  # a busy or unreachable store: try again at the next round
                    log.debug("storage housekeeping failed: %s", err)
        finally:
            conn.close()

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

    @contextlib.contextmanager
    def _using_store(self) -> Iterator[None]:
        """The connection's lock held; the store's own errors (sqlite3.Error, psycopg.Error) as SealpodError."""
        with self._lock:
            try:
                yield
            except StoreBusy:
                raise
            except Exception as err:
                raise SealpodError(f"KBS storage error: {err}", hint=f"check the store at {self.url}") from err

    def _execute(self, sql: str, params: tuple[Any, ...] = (), *, durable: bool = False) -> list[tuple[Any, ...]]:
        sql = sql.replace("?", self._param)
        sqlite = self._sqlite
        with self._using_store():
            if durable and sqlite:
                self._conn.execute("PRAGMA synchronous=FULL")
            rows = self._run(sql, params) if sqlite else self._fetch(sql, params)
            if durable and sqlite:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            return rows

    def _admin_write(self, sql: str, params: tuple[Any, ...]) -> None:
        """A durable change of resources, policies or reference values, then the signal that tells every process's
        cache (even if the statement failed: a needless bump costs one check of the store)."""
        try:
            self._execute(sql, params, durable=True)
        finally:
            if self.admin_signal is not None:
                self.admin_signal.bump()

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []

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

    def close(self) -> None:
        """Stop the housekeeping and close the connection."""
        self._stop.set()
        if self._maintenance is not None:
            self._maintenance.join(timeout=10)
        self._conn.close()
        if self.admin_signal is not None:
            self.admin_signal.close()

    # -- resources ---------------------------------------------------------------------------------------------

    def put_resource(self, path: str, data: bytes) -> None:
        """Create or replace a resource (durable when this returns)."""
        self._admin_write(
            "INSERT INTO resources (path, data, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET data = excluded.data, updated = excluded.updated",
            (path, data, int(time.time())),
        )

    def get_resource(self, path: str) -> bytes | None:
        rows = self._execute("SELECT data FROM resources WHERE path = ?", (path,))
        return bytes(rows[0][0]) if rows else None

    def delete_resource(self, path: str) -> bool:
        existed = self.get_resource(path) is not None
        self._admin_write("DELETE FROM resources WHERE path = ?", (path,))
        return existed

    # -- policies and reference values -------------------------------------------------------------------------

    def set_policy(self, kind: str, policy_id: str, body: str) -> None:
        self._admin_write(
            "INSERT INTO policies (kind, id, body) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
            (kind, policy_id, body),
        )

    def get_policy(self, kind: str, policy_id: str) -> str | None:
        rows = self._execute("SELECT body FROM policies WHERE kind = ? AND id = ?", (kind, policy_id))
        return str(rows[0][0]) if rows else None

    def set_reference(self, name: str, values: list[Any], expires: int) -> None:
        """Replace the reference values for ``name``."""
        self._admin_write(
            "INSERT INTO reference_values (name, vals) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET vals = excluded.vals",
            (name, json.dumps({"values": values, "expires": expires})),
        )

    def references(self, now: int | None = None) -> dict[str, list[Any]]:
        """Every unexpired reference value, by name."""
        return unexpired(self.reference_entries(), now)

    def reference_entries(self) -> list[tuple[str, list[Any], int]]:
        """Every reference value: name, values, expiry."""
        out = []
        for name, raw in self._execute("SELECT name, vals FROM reference_values"):
            entry = json.loads(raw)
            out.append((str(name), list(entry["values"]), int(entry["expires"])))
        return out

    def admin_generation(self) -> int | None:
        """The counter of changes to resources, policies and reference values (None if it is missing)."""
        rows = self._execute("SELECT value FROM admin_generation WHERE id = 0")
        return int(rows[0][0]) if rows else None

    # -- sessions ----------------------------------------------------------------------------------------------

    def shared_key(self, name: str) -> bytes:
        """A random 32-byte key that every process using this store shares: made by the first to ask."""
        self._execute(
            "INSERT INTO kbs_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, os.urandom(32)),
            durable=True,
        )
        return bytes(self._execute("SELECT value FROM kbs_keys WHERE name = ?", (name,))[0][0])

    def get_session(self, session_id: str) -> Session | None:
        """An attested session (the store holds no other)."""
        rows = self._execute(
            "SELECT id, nonce, tee, expires, token, evidence_digest FROM sessions WHERE id = ?", (session_id,)
        )
        return Session(*rows[0]) if rows else None

    def record_attestations(self, sessions: list[Session], *, wait: bool = True) -> list[bool]:
        """Record attested sessions, each unless it was attested before (True for each one recorded): a
        handshake's one write, and what makes a session's nonce good for one attestation across all processes. One
        transaction (a group commit: one lock, one commit, the pages written once), all or none; a session twice
        in the list is recorded once. Without ``wait``, :class:`StoreBusy` (nothing recorded) while another
        connection holds the SQLite store's write lock."""
        sql = _RECORD.replace("?", self._param)
        rows = [(s.id, s.nonce, s.tee, s.expires, s.token, s.evidence_digest) for s in sessions]
        with self._using_store():
            if not self._sqlite:
                return self._record_in_one_statement(sessions, rows)
            if len(rows) == 1:
                return [bool(self._run(sql, rows[0], wait=wait))]
            self._run("BEGIN IMMEDIATE", (), wait=wait)  # polled like any statement while another writer holds it
            try:
                recorded = [bool(self._fetch(sql, row)) for row in rows]
                self._fetch("COMMIT", ())
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return recorded

    def _record_in_one_statement(self, sessions: list[Session], rows: list[tuple[Any, ...]]) -> list[bool]:
        """PostgreSQL: the group as one multi-row INSERT, atomic by itself: one round trip to the server, where a
        transaction of a statement per session took two more than the sessions. A group too large for one
        statement's parameters (65,535) goes in several, in one transaction."""
        inserted: set[str] = set()
        chunks = [
            rows[start : start + RECORD_ROWS_PER_STATEMENT] for start in range(0, len(rows), RECORD_ROWS_PER_STATEMENT)
        ]
        with self._conn.transaction() if len(chunks) > 1 else contextlib.nullcontext():
            for chunk in chunks:
                sql = (_RECORD_INTO + ", ".join([_RECORD_ROW] * len(chunk)) + _RECORD_TAIL).replace("?", "%s")
                inserted.update(row[0] for row in self._conn.execute(sql, [v for row in chunk for v in row]).fetchall())
        recorded = []
        for session in sessions:  # a session twice in the group: the statement inserted it once, for the first
            recorded.append(session.id in inserted)
            inserted.discard(session.id)
        return recorded

    def _purge(self, conn: Any, now: int) -> None:
        """Delete the sessions expired at ``now``, a batch at a time, on the housekeeping connection ``conn``."""
        sql = _PURGE.replace("?", self._param)
        while conn.execute(sql, (now,)).rowcount >= PURGE_BATCH and not self._stop.wait(PURGE_PAUSE):
            pass


def unexpired(entries: list[tuple[str, list[Any], int]], now: int | None = None) -> dict[str, list[Any]]:
    """The reference values of ``entries`` that have not expired at ``now``, by name (fresh lists)."""
    now = int(time.time()) if now is None else now
    return {name: list(values) for name, values, expires in entries if expires > now}
