"""Per-layer progress bars for pulls, on a terminal only."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sealpod.cli.console import err_console
from sealpod.oci.pull import PullEvents

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from sealpod.oci.models import Descriptor
    from sealpod.oci.unpack import LayerStats


class ProgressEvents(PullEvents):
    """Per-layer progress bars on a terminal; nothing when stderr is not one."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.tasks: dict[int, TaskID] = {}

    def layer_started(self, index: int, descriptor: Descriptor) -> None:
        if self.progress:
            self.tasks[index] = self.progress.add_task(
                f"layer {index + 1} {descriptor.digest[7:19]}", total=descriptor.size
            )

    def layer_progress(self, index: int, nbytes: int) -> None:
        if self.progress and index in self.tasks:
            self.progress.advance(self.tasks[index], nbytes)

    def layer_done(self, index: int, stats: LayerStats) -> None:
        if self.progress and index in self.tasks:
            self.progress.update(self.tasks[index], description=f"layer {index + 1} {stats.entries} entries")


@contextmanager
def progress_events() -> Iterator[ProgressEvents]:
    """Progress bars when stderr is a terminal (rich is imported only then)."""
    if not sys.stderr.isatty() or not err_console.is_terminal:
        yield ProgressEvents(None)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        yield ProgressEvents(progress)
