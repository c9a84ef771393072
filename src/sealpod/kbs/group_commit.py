"""Attested sessions recorded in groups: the sessions appraised during one event-loop step go to the store in one
transaction at the end of the step (one lock, one commit, each page written once), and each request is answered
when its record is in. A handshake's one write cost a worker about a tenth of its time done one at a time; the other
worker's commits meanwhile made it wait for the write lock."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from sealpod.errors import SealpodError
from sealpod.kbs.storage import Session, Storage

log = logging.getLogger(__name__)

#: What a recorded session's callback gets: whether it was recorded (False: attested before), or the store's error.
Outcome = bool | SealpodError


@dataclasses.dataclass(frozen=True, slots=True)
class Appraised:
    """An attestation the service accepted, not yet recorded: the session with its token, the token's claims and
    the TEE's key."""

    session: Session
    token_claims: dict[str, Any]
    tee_key: Any


class GroupCommit:
    """Collects sessions to record during an event-loop step and records them together after it."""

    def __init__(self, storage: Storage, counters: Counter[str]) -> None:
        self.storage = storage
        self.counters = counters
        self._pending: list[tuple[Session, Callable[[Outcome], None]]] = []

    def record(self, session: Session, then: Callable[[Outcome], None]) -> None:
        """Record ``session`` with the others of this step; ``then`` is called with the outcome after the commit
        (from the event loop, never from inside this call)."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._commit)
        self._pending.append((session, then))

    def _commit(self) -> None:
        batch, self._pending = self._pending, []
        self.counters["session_group_commits"] += 1
        self.counters["session_group_commit_sessions"] += len(batch)
        outcomes: list[Outcome]
        try:
            outcomes = list(self.storage.record_attestations([session for session, _ in batch]))
        except SealpodError as err:  # nothing of the group was recorded: every request of it fails alike
            outcomes = [err] * len(batch)
        for (session, then), outcome in zip(batch, outcomes, strict=True):
            try:
                then(outcome)
            except Exception:  # one request's answer failing must not keep the others' from being sent
                log.exception("answering the attestation of session %s failed", session.id)
