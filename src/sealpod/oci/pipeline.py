"""Running an iterator in a worker thread so that download, digest and inflate overlap with extraction."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def in_thread(make: Callable[[], Iterator[T]], depth: int = 16, name: str = "sealpod-prefetch") -> Iterator[T]:
    """Yield what ``make()`` yields, produced in a daemon thread up to ``depth`` items ahead.

    An exception in the producer is re-raised in the consumer at the point it happened; closing the consumer
    (or an error there) stops the producer.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in make():
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(err)

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
