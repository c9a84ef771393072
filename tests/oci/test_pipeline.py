"""The pull's stage threads: items in order, the producer's error raised where it happened, and a consumer closed
(even one never read, as a pull's next layer is when this layer fails) stops its producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sealpod.oci.pipeline import in_thread


def _sealpod_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-stage"]


def test_items_in_order_and_the_producers_error_where_it_happened() -> None:
    def make() -> Iterator[int]:
        yield from range(5)
        raise ValueError("broke after 5")

    consumer = in_thread(make, depth=2, name="test-stage")
    assert [next(consumer) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="broke after 5"):
        next(consumer)


def test_the_producer_starts_at_once_and_closing_an_unread_consumer_stops_it() -> None:
    started = threading.Event()
    made = []

    def make() -> Iterator[int]:
        started.set()
        for item in range(1_000_000):
            made.append(item)
            yield item

    consumer = in_thread(make, depth=2, name="test-stage")
    assert started.wait(5)  # before any next(): the next layer's download overlaps this one's extraction
    time.sleep(0.05)
    assert len(made) <= 4  # bounded by the queue, not run ahead without limit
    consumer.close()
    deadline = time.monotonic() + 5
    while _sealpod_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _sealpod_threads()
    assert list(consumer) == []
