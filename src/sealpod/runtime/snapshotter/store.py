"""The snapshot metadata in SQLite (WAL, synchronous=FULL): containerd's ``snapshots/storage`` semantics.

Each snapshot has a numeric id that names its directory and is never reused (AUTOINCREMENT), a unique name (the
key while active or a view, the committed name after Commit), an optional committed parent, a kind, timestamps,
labels and, once committed, its usage. Callers group reads and writes in :meth:`MetaStore.read` and
:meth:`MetaStore.write` transactions, so that the directory work of an operation commits or rolls back with it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from sealpod.runtime.snapshotter.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    parent_id INTEGER REFERENCES snapshots(id),
    kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    size INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
"""


class Kind(IntEnum):
    """The snapshot kinds, numbered as containerd's ``Kind`` enum."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass(frozen=True)
class Info:
    """What Stat and List return; times are nanoseconds since the epoch (UTC)."""

    name: str
    parent: str = ""
    kind: Kind = Kind.UNKNOWN
    created: int = 0
    updated: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """Bytes and inodes used by one snapshot's own directory."""

    size: int = 0
    inodes: int = 0


@dataclass(frozen=True)
class Snapshot:
    """An active or view snapshot as the mount code needs it: its id and its parents' ids, nearest first."""

    id: str
    kind: Kind
    parent_ids: tuple[str, ...] = ()


def _clean_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Labels as stored: an empty value removes the label (as containerd's boltutil.WriteLabels)."""
    return {k: v for k, v in (labels or {}).items() if v != ""}


class Tx:
    """The operations of one transaction (use only inside :meth:`MetaStore.read` or :meth:`MetaStore.write`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _row(self, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute("SELECT * FROM snapshots WHERE name = ?", (name,)).fetchone()
        return row

    def _name_of(self, snapshot_id: int | None) -> str:
        if snapshot_id is None:
            return ""
        row = self._conn.execute("SELECT name FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"parent snapshot id {snapshot_id} does not exist")
        return str(row["name"])

    def _info(self, row: sqlite3.Row, parent_name: str | None = None) -> Info:
        return Info(
            name=row["name"],
            parent=self._name_of(row["parent_id"]) if parent_name is None else parent_name,
            kind=Kind(row["kind"]),
            created=row["created"],
            updated=row["updated"],
            labels=json.loads(row["labels"]),
        )

    def parent_ids(self, snapshot_id: int) -> tuple[str, ...]:
        """The ids of ``snapshot_id`` and its ancestors, nearest first."""
        rows = self._conn.execute(
            "WITH RECURSIVE chain(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM snapshots WHERE id = ?"
            " UNION ALL SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id)"
            " SELECT id FROM chain ORDER BY depth",
            (snapshot_id,),
        ).fetchall()
        return tuple(str(r["id"]) for r in rows)

    def find(self, key: str) -> tuple[str, Kind] | None:
        """The id and kind of ``key``, or None."""
        row = self._row(key)
        return (str(row["id"]), Kind(row["kind"])) if row is not None else None

    def get_info(self, key: str) -> tuple[str, Info, Usage]:
        """The id, info and stored usage of ``key`` (NOT_FOUND if missing)."""
        row = self._row(key)
        if row is None:
            raise NotFoundError(f"snapshot {key} does not exist")
        return str(row["id"]), self._info(row), Usage(row["size"], row["inodes"])

    def get_snapshot(self, key: str) -> Snapshot:
        """The mount view of an active or view snapshot (FAILED_PRECONDITION if committed)."""
        row = self._row(key)
        if row is None:
            raise NotFoundError(f"snapshot {key} does not exist")
        kind = Kind(row["kind"])
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise FailedPreconditionError(f"requested snapshot {key} not active or view")
        parents = self.parent_ids(row["parent_id"]) if row["parent_id"] is not None else ()
        return Snapshot(str(row["id"]), kind, parents)

    def _committed_parent(self, parent: str) -> sqlite3.Row | None:
        if not parent:
            return None
        prow = self._row(parent)
        if prow is None:
            raise NotFoundError(f"missing parent {parent!r}")
        if Kind(prow["kind"]) != Kind.COMMITTED:
            raise InvalidArgumentError(f"parent {parent!r} is not a committed snapshot")
        return prow

    def _insert(self, kind: Kind, key: str, parent_id: int | None, labels: Mapping[str, str] | None) -> int:
        now = time.time_ns()
        try:
            cur = self._conn.execute(
                "INSERT INTO snapshots (name, parent_id, kind, created, updated, labels) VALUES (?, ?, ?, ?, ?, ?)",
                (key, parent_id, int(kind), now, now, json.dumps(_clean_labels(labels), sort_keys=True)),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExistsError(f"snapshot {key} already exists") from None
        assert cur.lastrowid is not None
        return cur.lastrowid

    def create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> Snapshot:
        """Add an active or view snapshot ``key`` on the committed ``parent`` ("" for none)."""
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise InvalidArgumentError(f"snapshot type {kind.name} invalid; only active or view can be created")
        if not key:
            raise InvalidArgumentError("snapshot key is empty")
        prow = self._committed_parent(parent)
        if self._row(key) is not None:
            raise AlreadyExistsError(f"snapshot {key} already exists")
        new_id = self._insert(kind, key, prow["id"] if prow is not None else None, labels)
        parents = self.parent_ids(prow["id"]) if prow is not None else ()
        return Snapshot(str(new_id), kind, parents)

    def create_committed(self, name: str, parent: str, labels: Mapping[str, str] | None, usage: Usage) -> str:
        """Add a committed snapshot directly (a remote snapshot: nothing to extract); returns its id."""
        if not name:
            raise InvalidArgumentError("snapshot name is empty")
        prow = self._committed_parent(parent)
        new_id = self._insert(Kind.COMMITTED, name, prow["id"] if prow is not None else None, labels)
        self._conn.execute("UPDATE snapshots SET size = ?, inodes = ? WHERE id = ?", (usage.size, usage.inodes, new_id))
        return str(new_id)

    def commit_active(self, key: str, name: str, usage: Usage, labels: Mapping[str, str] | None) -> str:
        """Turn active ``key`` into committed ``name`` (same id and directory, the given labels); returns the id."""
        if not name:
            raise InvalidArgumentError("committed name is empty")
        if self._row(name) is not None:
            raise AlreadyExistsError(f"committed snapshot {name} already exists")
        row = self._row(key)
        if row is None:
            raise NotFoundError(f"failed to get active snapshot {key!r}")
        if Kind(row["kind"]) != Kind.ACTIVE:
            raise FailedPreconditionError(f"snapshot {key!r} is not active")
        now = time.time_ns()
        self._conn.execute(
            "UPDATE snapshots SET name = ?, kind = ?, created = ?, updated = ?, labels = ?, size = ?, inodes = ?"
            " WHERE id = ?",
            (
                name,
                int(Kind.COMMITTED),
                now,
                now,
                json.dumps(_clean_labels(labels), sort_keys=True),
                usage.size,
                usage.inodes,
                row["id"],
            ),
        )
        return str(row["id"])

    def remove(self, key: str) -> tuple[str, Kind]:
        """Delete ``key`` (FAILED_PRECONDITION while it has children); returns its id and kind."""
        row = self._row(key)
        if row is None:
            raise NotFoundError(f"snapshot {key} does not exist")
        child = self._conn.execute("SELECT name FROM snapshots WHERE parent_id = ? LIMIT 1", (row["id"],)).fetchone()
        if child is not None:
            raise FailedPreconditionError(f"cannot remove snapshot {key} with child {child['name']}")
        self._conn.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
        return str(row["id"]), Kind(row["kind"])

    def update_info(self, name: str, labels: Mapping[str, str], paths: list[str]) -> Info:
        """Update the labels of ``name`` per field ``paths`` (``labels`` or ``labels.KEY``; none means all)."""
        row = self._row(name)
        if row is None:
            raise NotFoundError(f"snapshot {name} does not exist")
        current: dict[str, str] = json.loads(row["labels"])
        if paths:
            for path in paths:
                if path.startswith("labels."):
                    key = path.removeprefix("labels.")
                    current[key] = labels.get(key, "")
                elif path == "labels":
                    current = dict(labels)
                else:
                    raise InvalidArgumentError(f"cannot update {path!r} field on snapshot {name!r}")
        else:
            current = dict(labels)
        self._conn.execute(
            "UPDATE snapshots SET labels = ?, updated = ? WHERE id = ?",
            (json.dumps(_clean_labels(current), sort_keys=True), time.time_ns(), row["id"]),
        )
        return self.get_info(name)[1]

    def walk(self) -> list[tuple[str, Info]]:
        """Every snapshot's id and info, in id order."""
        rows = self._conn.execute(
            "SELECT s.*, COALESCE(p.name, '') AS parent_name FROM snapshots s"
            " LEFT JOIN snapshots p ON p.id = s.parent_id ORDER BY s.id"
        ).fetchall()
        return [(str(r["id"]), self._info(r, r["parent_name"])) for r in rows]

    def ids(self) -> set[str]:
        """The ids of all snapshots (their directory names)."""
        return {str(r["id"]) for r in self._conn.execute("SELECT id FROM snapshots")}


class MetaStore:
    """The SQLite database; one connection, transactions serialised by a lock (operations are short)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise RuntimeError(f"{path}: unknown metadata schema version {version}")
        with self.write():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield Tx(self._conn)
            finally:
                self._conn.execute("ROLLBACK")

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction: committed when the block ends normally, rolled back on an exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            self._conn.close()
