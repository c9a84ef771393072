"""The counters of every worker of one ``sealpod kbs serve --workers N``, for ``/metrics`` on any of them.

A scrape reaches one worker, which alone knows its own counts. So each worker publishes a copy of its counters
(compact JSON) into its slot of anonymous shared memory made before the fork, and ``/metrics`` reports its own live
counts plus the others' latest copies. A slot is guarded by a sequence number (odd while it is being written): a
reader that sees it odd, or changed across its copy, reads again.
"""

from __future__ import annotations

import logging
import mmap
import struct
from collections import Counter
from collections.abc import Mapping

import orjson

log = logging.getLogger(__name__)

#: Bytes per worker: the sequence number and the length (16), then the JSON (the counters' names are bounded: the
#: endpoints and the trustee error variants, about 2 KiB in all).
SLOT_BYTES = 16384
_HEAD = struct.Struct("<QQ")
_READ_TRIES = 1000


class SharedCounters:
    """Per-worker copies of the counters of ``workers`` processes (each writes only its own slot)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._map = mmap.mmap(-1, SLOT_BYTES * workers)
        self._too_large = False

    def publish(self, index: int, counters: Mapping[str, int]) -> None:
        """Make ``counters`` worker ``index``'s published copy."""
        data = orjson.dumps(dict(counters))
        if _HEAD.size + len(data) > SLOT_BYTES:
            if not self._too_large:
                log.warning("the KBS counters (%d bytes) no longer fit a worker's slot: /metrics is partial", len(data))
                self._too_large = True
            return
        base = SLOT_BYTES * index
        sequence = _HEAD.unpack_from(self._map, base)[0]
        _HEAD.pack_into(self._map, base, sequence + 1, len(data))  # odd: being written
        self._map[base + _HEAD.size : base + _HEAD.size + len(data)] = data
        _HEAD.pack_into(self._map, base, sequence + 2, len(data))

    def published(self, index: int) -> Counter[str]:
        """Worker ``index``'s latest published copy (empty before its first)."""
        base = SLOT_BYTES * index
        for _ in range(_READ_TRIES):
            sequence, size = _HEAD.unpack_from(self._map, base)
            if sequence % 2:
                continue
            data = self._map[base + _HEAD.size : base + _HEAD.size + size]
            if _HEAD.unpack_from(self._map, base)[0] == sequence:
                return Counter(orjson.loads(data)) if size else Counter()
        raise RuntimeError(f"worker {index}'s counters were being rewritten through {_READ_TRIES} reads")

    def others(self, index: int) -> Counter[str]:
        """The sum of the published copies of every worker but ``index``."""
        total: Counter[str] = Counter()
        for other in range(self.workers):
            if other != index:
                total.update(self.published(other))
        return total
