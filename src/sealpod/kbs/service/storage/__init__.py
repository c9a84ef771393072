"""The KBS's state: resources, policies, reference values and sessions, behind one interface (:class:`Storage`) with a
class per backend: SQLite (:mod:`.sqlite`: one file, WAL, fsync on commit) and PostgreSQL (:mod:`.postgres`:
``postgresql://...``, several KBS machines on one store). :func:`open_storage` picks the backend by URL."""

from __future__ import annotations

from sealpod.kbs.service.storage.base import (
    _PURGE,
    BUSY_WAIT,
    PURGE_BATCH,
    Session,
    Storage,
    StoreBusy,
    new_session_id,
    unexpired,
)

__all__ = [
    "BUSY_WAIT",
    "PURGE_BATCH",
    "_PURGE",
    "Session",
    "Storage",
    "StoreBusy",
    "new_session_id",
    "open_storage",
    "unexpired",
]


def open_storage(url: str) -> Storage:
    """The store at ``url``: PostgreSQL for ``postgresql://`` and ``postgres://``, else a SQLite file
    (``sqlite://PATH`` or a path)."""
    if url.startswith(("postgresql://", "postgres://")):
        from sealpod.kbs.service.storage.postgres import PostgresStorage

        return PostgresStorage(url)
    from sealpod.kbs.service.storage.sqlite import SqliteStorage

    return SqliteStorage(url)
