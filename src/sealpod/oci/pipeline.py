"""Running an iterator in a worker thread so that download, digest and inflate overlap with extraction."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def in_thread(make: Callable[[], Iterator[T]], depth: int = 16, name: str = "sealpod-prefetch") -> Consumer[T]:
    """Yield what ``make()`` yields, produced in a daemon thread up to ``depth`` items ahead.

    The thread starts at once (not at the first ``next``), so that a consumer can start the next pipeline while it
    finishes this one. An exception in the producer is re-raised in the consumer at the point it happened; closing
    the consumer (or an error there) stops the producer: close what you do not read to its end.
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
    return Consumer(items, stop, worker)


class Consumer(Iterator[T]):
    """The consuming end of :func:`in_thread`: items in order, the producer's exception where it happened;
    :meth:`close` (also of one never iterated) stops the producer."""

    def __init__(self, items: queue.Queue[object], stop: threading.Event, worker: threading.Thread) -> None:
        self._items = items
        self._stop = stop
        self._worker = worker

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item = self._items.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the producer and wait (briefly) for its thread to end."""
        self._stop.set()
        self._worker.join(timeout=5)

    def __del__(self) -> None:
        self._stop.set()  # an abandoned consumer must not leave its producer blocked forever
