"""Attested sessions recorded in groups: the sessions appraised during one event-loop step go to the store in one
transaction at the end of the step (one lock, one commit, each page written once), and each request is answered
when its record is in. A handshake's one write cost a worker about a tenth of its time done one at a time; the other
worker's commits meanwhile made it wait for the write lock.

While another writer holds the SQLite store (another worker's commit, the housekeeping's checkpoint or purge, an
admin write's fsync), the group waits on the event loop, joined by the attestations appraised meanwhile, and is
tried again every :data:`RETRY_EVERY`; the worker serves its other requests in the meantime instead of stalling in
the store's busy loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from sealpod.errors import SealpodError
from sealpod.kbs.service.storage import BUSY_WAIT, Session, Storage, StoreBusy

log = logging.getLogger(__name__)

#: What a recorded session's callback gets: whether it was recorded (False: attested before), or the store's error.
Outcome = bool | SealpodError
#: How often a group waiting for another writer of the store is tried again (seconds).
RETRY_EVERY = 0.0005


class GroupCommit:
    """Collects sessions to record during an event-loop step and records them together after it."""

    def __init__(self, storage: Storage, counters: Counter[str]) -> None:
        self.storage = storage
        self.counters = counters
        self._pending: list[tuple[Session, Callable[[Outcome], None]]] = []
        self._busy_since: float | None = None

    def record(self, session: Session, then: Callable[[Outcome], None]) -> None:
        """Record ``session`` with the others of this step; ``then`` is called with the outcome after the commit
        (from the event loop, never from inside this call)."""
        if not self._pending:  # else a commit is already due (this step's, or a retry's)
            asyncio.get_running_loop().call_soon(self._commit)
        self._pending.append((session, then))

    def _commit(self) -> None:
        batch, self._pending = self._pending, []
        outcomes: list[Outcome]
        try:
            outcomes = list(self.storage.record_attestations([session for session, _ in batch], wait=False))
        except StoreBusy as err:
            now = time.monotonic()
            self._busy_since = self._busy_since or now
            if now - self._busy_since < BUSY_WAIT:
                self.counters["session_group_commit_waits"] += 1
                self._pending = batch + self._pending
                asyncio.get_running_loop().call_later(RETRY_EVERY, self._commit)
                return
            outcomes = [err] * len(batch)
        except SealpodError as err:  # nothing of the group was recorded: every request of it fails alike
            outcomes = [err] * len(batch)
        self._busy_since = None
        self.counters["session_group_commits"] += 1
        self.counters["session_group_commit_sessions"] += len(batch)
        for (session, then), outcome in zip(batch, outcomes, strict=True):
            try:
                then(outcome)
            except Exception:  # one request's answer failing must not keep the others' from being sent
                log.exception("answering the attestation of session %s failed", session.id)
