"""The store's one interface (:class:`Storage`): the statements every backend runs, the housekeeping, sessions."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sealpod.errors import SealpodError
from sealpod.kbs.service.storage.admin_signal import AdminSignal

log = logging.getLogger(__name__)
#: Expired sessions go in batches, each its own short transaction, with a pause between them for the writers
#: of the request path (a delete holds the store's write lock for as long as it runs).
PURGE_BATCH = 256
PURGE_PAUSE = 0.005
_PURGE = f"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires < ? LIMIT {PURGE_BATCH})"  # noqa: S608 (a constant)
RECORD_INTO = "INSERT INTO sessions (id, nonce, tee, expires, token, evidence_digest) VALUES "
RECORD_ROW = "(?, ?, ?, ?, ?, ?)"
RECORD_TAIL = " ON CONFLICT (id) DO NOTHING RETURNING id"
#: How long a request's statement waits for another SQLite writer (what the busy timeout was).
BUSY_WAIT = 30.0

SCHEMA = [
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
ADMIN_TABLES = ("resources", "policies", "reference_values")


def new_session_id(expires: int) -> str:
    """A new session's id: its expiry (8 hex digits) then 96 random bits (24 hex digits), 32 hex digits as trustee's
    simple UUIDs are. Ids in the order sessions are made keep the store's key index growing at its end: random ids
    dirtied a page of that index per session recorded (3.1 pages written per session in all, 2.3 now)."""
    return f"{expires & 0xFFFFFFFF:08x}{secrets.token_hex(12)}"


class StoreBusy(SealpodError):
    """Another connection holds the SQLite store's write lock; the write was not made (try again)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One client's handshake: before attestation only in its nonce (see :mod:`sealpod.kbs.service.challenges`),
    after it in the store too, with its token."""

    id: str
    nonce: str
    tee: str
    expires: int
    token: str | None
    evidence_digest: str | None


class Storage:
    """The store's one interface: the same SQL statements on every backend (``?`` placeholders, rewritten for the
    backend's), the housekeeping thread, and the operations the service calls. A backend supplies its connections,
    its schema's extras, how one statement runs, and how a group of attestations is recorded."""

    #: The backend's placeholder for ``?``.
    placeholder = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None
        self._conn = self._connect(poll_busy=True)
        #: SQLite: the change signal of the admin's data that every process of this store shares (None: PostgreSQL)
        self.admin_signal: AdminSignal | None = None
        try:
            self._make_schema()
            self._opened()
        except BaseException:  # no connection left open behind a store that could not be opened
            self._conn.close()
            raise

    # -- what a backend supplies -------------------------------------------------------------------------------

    def _connect(self, *, poll_busy: bool = False) -> Any:
        """A new connection to the store."""
        raise NotImplementedError

    def _make_schema(self) -> None:
        """Make the tables, indexes and triggers where missing."""
        raise NotImplementedError

    def _opened(self) -> None:
        """Called once the schema is there."""

    def _statement(self, sql: str, params: tuple[Any, ...], durable: bool) -> list[tuple[Any, ...]]:
        """Run one statement on the request connection (its lock held)."""
        raise NotImplementedError

    def record_attestations(self, sessions: list[Session], *, wait: bool = True) -> list[bool]:
        """Record attested sessions, each unless it was attested before (True for each one recorded): a
        handshake's one write, and what makes a session's nonce good for one attestation across all processes. One
        transaction, all or none; a session twice in the list is recorded once. Without ``wait``,
        :class:`StoreBusy` (nothing recorded) while another connection holds the store's write lock."""
        raise NotImplementedError

    def _prepare_maintenance(self) -> None:
        """Before the housekeeping thread starts."""

    def _housekeep(self, conn: Any) -> None:
        """A backend's own housekeeping each round, on the housekeeping connection."""

    # -- shared machinery --------------------------------------------------------------------------------------

    def start_maintenance(self, interval: float = 1.0, purge_every: float = 30.0) -> None:
        """Housekeeping off the request path, in a thread with its own connection: expired sessions are deleted,
        and the backend's own work is done there (SQLite: the WAL checkpoint) instead of inside whichever request
        crossed a threshold (a stall of the event loop otherwise)."""
        if self._maintenance is not None:
            return
        self._prepare_maintenance()
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
                    self._housekeep(conn)
                except Exception as err:  # a busy or unreachable store: try again at the next round
                    log.debug("storage housekeeping failed: %s", err)
        finally:
            conn.close()

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
        sql = sql.replace("?", self.placeholder)
        with self._using_store():
            return self._statement(sql, params, durable)

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

    def _purge(self, conn: Any, now: int) -> None:
        """Delete the sessions expired at ``now``, a batch at a time, on the housekeeping connection ``conn``."""
        sql = _PURGE.replace("?", self.placeholder)
        while conn.execute(sql, (now,)).rowcount >= PURGE_BATCH and not self._stop.wait(PURGE_PAUSE):
            pass


def unexpired(entries: list[tuple[str, list[Any], int]], now: int | None = None) -> dict[str, list[Any]]:
    """The reference values of ``entries`` that have not expired at ``now``, by name (fresh lists)."""
    now = int(time.time()) if now is None else now
    return {name: list(values) for name, values, expires in entries if expires > now}
