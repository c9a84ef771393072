"""The shared change signal of the admin's data and the per-process cache that checks it: a view reads the store's
counter only when the signal has moved or its recheck is due, sealpod's own writes move the signal, and a writer
that does not is seen within RECHECK."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sealpod.errors import SealpodError
from sealpod.kbs.service import admin_data
from sealpod.kbs.service.admin_data import AdminData
from sealpod.kbs.service.storage import open_storage
from sealpod.kbs.service.storage.admin_signal import RECHECK, AdminSignal, signal_path

BUMPS = 50_000
_COUNTER_READ = "SELECT value FROM admin_generation WHERE id = 0"


def _bump_many(path: str, times: int, start: Any) -> None:
    signal = AdminSignal(Path(path))
    start.wait()
    for _ in range(times):
        signal.bump()
    signal.close()


def test_bumps_from_processes_at_once_are_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "kbs.sqlite-admin-signal"
    signal = AdminSignal(path)
    try:
        assert signal.value() == 0
        context = multiprocessing.get_context("fork")
        start = context.Barrier(2)
        workers = [context.Process(target=_bump_many, args=(str(path), BUMPS, start)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert [worker.exitcode for worker in workers] == [0, 0]
        assert signal.value() == 2 * BUMPS, "a bump lost to another process's would leave a cache stale"
    finally:
        signal.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_view_reads_the_store_only_when_the_signal_moves_or_the_recheck_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "kbs.sqlite"
    mine, other = open_storage(f"sqlite://{database}"), open_storage(f"sqlite://{database}")
    assert mine.admin_signal is not None
    assert mine.admin_signal.path == signal_path(database)
    statements: list[str] = []
    mine._conn.set_trace_callback(statements.append)
    clock = [1000.0]
    monkeypatch.setattr(admin_data.time, "monotonic", lambda: clock[0])
    cache = AdminData(mine)
    try:
        other.put_resource("default/key/a", b"1")
        assert cache.view().resource("default/key/a") == b"1"
        assert statements.count(_COUNTER_READ) == 1
        statements.clear()
        for _ in range(3):
            assert cache.view().resource("default/key/a") == b"1"
        assert statements == [], "an unmoved signal: the cache answers, the store is not read"

        other.put_resource("default/key/a", b"2")  # another process's write moves the signal
        assert cache.view().resource("default/key/a") == b"2"
        assert statements.count(_COUNTER_READ) == 1
        mine.delete_resource("default/key/a")  # and so does this process's own
        assert cache.view().resource("default/key/a") is None

        with sqlite3.connect(database) as raw:  # a writer without this code: the signal stays where it was
            raw.execute("INSERT INTO resources (path, data, updated) VALUES ('default/key/a', x'33', 0)")
        statements.clear()
        assert cache.view().resource("default/key/a") is None, "unseen until the recheck is due"
        assert statements == []
        clock[0] += RECHECK
        assert cache.view().resource("default/key/a") == b"3", "the recheck reads the counter the triggers moved"
        assert statements.count(_COUNTER_READ) == 1
    finally:
        mine.close()
        other.close()


def test_a_failed_admin_write_still_moves_the_signal(tmp_path: Path) -> None:
    """Nothing of a failed statement is committed; the bump costs one check of the store, and no cache can miss a
    change it might have made."""
    storage = open_storage(f"sqlite://{tmp_path / 'kbs.sqlite'}")
    try:
        assert storage.admin_signal is not None
        before = storage.admin_signal.value()
        storage._conn.execute("DROP TABLE policies")
        with pytest.raises(Exception, match="no such table"):
            storage.set_policy("resource", "default", "package policy")
        assert storage.admin_signal.value() == before + 1
        storage.put_resource("default/key/a", b"1")
        assert storage.admin_signal.value() == before + 2
        storage.record_attestations([])
        assert storage.admin_signal.value() == before + 2
    finally:
        storage.close()


def test_the_signal_takes_the_database_files_mode_and_an_unusable_one_is_named(tmp_path: Path) -> None:
    database = tmp_path / "kbs.sqlite"
    database.touch()
    database.chmod(0o640)  # a store its group may read: as SQLite does for -wal and -shm, the signal follows
    storage = open_storage(f"sqlite://{database}")
    storage.close()
    assert signal_path(database).stat().st_mode & 0o777 == 0o640

    other = tmp_path / "other.sqlite"
    signal_path(other).mkdir()
    with pytest.raises(SealpodError, match=r"cannot open the KBS store's change signal .*other\.sqlite-admin-signal"):
        open_storage(f"sqlite://{other}")
