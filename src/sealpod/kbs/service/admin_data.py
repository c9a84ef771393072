"""What requests read of the admin's data (policies, reference values, resources), cached per process while the
store's change counter stays the same. The counter is bumped by triggers in the SQLite database on every change,
whoever makes it; a request reads it only when the store's shared change signal
(:mod:`sealpod.kbs.service.storage.admin_signal`, which sealpod's own writers bump) has moved, or :data:`RECHECK`
seconds after the last read. With PostgreSQL (its writers may be on other machines: no shared signal) a request
reads the counter each time, one query instead of one per item."""

from __future__ import annotations

import time
from typing import Any

from sealpod.kbs.service.storage import Storage, unexpired
from sealpod.kbs.service.storage.admin_signal import RECHECK

#: Resources larger than this are read from the store each time, not kept in every worker's memory.
MAX_CACHED_RESOURCE = 64 * 1024
MAX_ENTRIES = 1024
_MISSING = object()


class AdminData:
    """The per-process cache; :meth:`view` once per request."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._generation: int | None = None
        self._values: dict[tuple[str, ...], Any] = {}
        self._signal: int | None = None  # the signal when the counter was last read
        self._trusted_until = 0.0  # until when an unmoved signal stands for that read

    def view(self) -> AdminView:
        """The admin's data as of now: sealpod's own changes acknowledged before this call are seen, and any
        other writer's within :data:`RECHECK` seconds."""
        signal = self.storage.admin_signal.value() if self.storage.admin_signal is not None else None
        now = time.monotonic()
        if signal is None or signal != self._signal or now >= self._trusted_until:
            # the signal before the counter: a change committed between the two reads is seen by the next view
            generation = self.storage.admin_generation()
            if generation is None:
                return AdminView(self.storage, None)
            if generation != self._generation:
                self._generation, self._values = generation, {}
            self._signal, self._trusted_until = signal, now + RECHECK
        if len(self._values) > MAX_ENTRIES:
            self._values = {}
        return AdminView(self.storage, self._values)


class AdminView:
    """Reads for one request: from the cache of the current counter, else the store (then cached)."""

    def __init__(self, storage: Storage, values: dict[tuple[str, ...], Any] | None) -> None:
        self.storage = storage
        self.values = values

    def policy(self, kind: str, policy_id: str) -> str | None:
        key = ("policy", kind, policy_id)
        if self.values is None:
            return self.storage.get_policy(kind, policy_id)
        found = self.values.get(key, _MISSING)
        if found is _MISSING:
            found = self.values[key] = self.storage.get_policy(kind, policy_id)
        return found  # type: ignore[no-any-return]

    def references(self) -> dict[str, list[Any]]:
        if self.values is None:
            return self.storage.references()
        entries = self.values.get(("references",))
        if entries is None:
            entries = self.values[("references",)] = self.storage.reference_entries()
        return unexpired(entries)

    def resource(self, path: str) -> bytes | None:
        key = ("resource", path)
        if self.values is None:
            return self.storage.get_resource(path)
        found = self.values.get(key, _MISSING)
        if found is _MISSING:
            found = self.storage.get_resource(path)
            if found is None or len(found) <= MAX_CACHED_RESOURCE:
                self.values[key] = found
        return found  # type: ignore[no-any-return]
