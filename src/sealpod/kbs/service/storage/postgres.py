"""The KBS store on PostgreSQL (``postgresql://...``): any number of KBS processes and machines on one database.
The admin's change counter is bumped by statement triggers in the writer's transaction; a group of attestations is
one multi-row INSERT."""

from __future__ import annotations

import contextlib
from typing import Any

from sealpod.kbs.service.storage.base import (
    ADMIN_TABLES,
    RECORD_INTO,
    RECORD_ROW,
    RECORD_TAIL,
    SCHEMA,
    Session,
    Storage,
)

#: Sessions per INSERT statement (6 parameters each; a statement takes at most 65,535)
RECORD_ROWS_PER_STATEMENT = 1000
#: The admin counter's function: bumped once per statement, in the writer's transaction (so visible with it).
_GENERATION = [
    "CREATE OR REPLACE FUNCTION sealpod_admin_changed() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN UPDATE admin_generation SET value = value + 1 WHERE id = 0; RETURN NULL; END $$",
]
#: Each admin table's trigger, made where missing (CREATE OR REPLACE TRIGGER needs PostgreSQL 14)
_GENERATION_TRIGGER = (
    "CREATE TRIGGER admin_generation_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION sealpod_admin_changed()"
)
#: The advisory lock that one process at a time holds while it makes the schema (two processes making the same
#: table at once can fail on PostgreSQL's catalog, IF NOT EXISTS or not).
_SCHEMA_LOCK = 0x5EA1_0D_4B5


class PostgresStorage(Storage):
    """A store in the PostgreSQL database of ``postgresql://...``."""

    placeholder = "%s"

    def _connect(self, *, poll_busy: bool = False) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def _make_schema(self) -> None:
        with self._using_store(), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in [*SCHEMA, *_GENERATION]:
                self._conn.execute(statement.format(blob="BYTEA"))
            for table in ADMIN_TABLES:
                name = f"admin_generation_{table}"
                found = "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass"
                if not self._conn.execute(found, (name, table)).fetchall():
                    self._conn.execute(_GENERATION_TRIGGER.format(table=table))

    def _statement(self, sql: str, params: tuple[Any, ...], durable: bool) -> list[tuple[Any, ...]]:
        return self._fetch(sql, params)

    def record_attestations(self, sessions: list[Session], *, wait: bool = True) -> list[bool]:
        """The group as one multi-row INSERT, atomic by itself: one round trip to the server, where a transaction of
        a statement per session took two more than the sessions. A group too large for one statement's parameters
        (65,535) goes in several, in one transaction."""
        rows = [(s.id, s.nonce, s.tee, s.expires, s.token, s.evidence_digest) for s in sessions]
        inserted: set[str] = set()
        chunks = [
            rows[start : start + RECORD_ROWS_PER_STATEMENT] for start in range(0, len(rows), RECORD_ROWS_PER_STATEMENT)
        ]
        with self._using_store(), self._conn.transaction() if len(chunks) > 1 else contextlib.nullcontext():
            for chunk in chunks:
                sql = (RECORD_INTO + ", ".join([RECORD_ROW] * len(chunk)) + RECORD_TAIL).replace("?", "%s")
                inserted.update(row[0] for row in self._conn.execute(sql, [v for row in chunk for v in row]).fetchall())
        recorded = []
        for session in sessions:  # a session twice in the group: the statement inserted it once, for the first
            recorded.append(session.id in inserted)
            inserted.discard(session.id)
        return recorded
