"""What every command shares: the error boundary, registry options and terminal progress."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from sealpod.errors import SealpodError
from sealpod.oci.models import Descriptor
from sealpod.oci.pull import PullEvents
from sealpod.oci.source import RegistryOptions
from sealpod.oci.unpack import LayerStats

T = TypeVar("T")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class State:
    """Global flags set by the app callback."""

    debug = False


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_bool(value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no), as skopeo's ``--tls-verify=false``."""
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise typer.BadParameter(f"{value!r} is not true or false") from None


TlsVerify = Annotated[
    str,
    typer.Option(
        "--tls-verify",
        metavar="true|false",
        help="Require HTTPS with a verified certificate. --tls-verify=false also allows plain HTTP (as skopeo).",
    ),
]
CaFile = Annotated[str | None, typer.Option("--ca-file", help="PEM file of CA certificates for the registry.")]


def registry_options(tls_verify: str, ca_file: str | None) -> RegistryOptions:
    """The CLI's registry flags as library options."""
    return RegistryOptions(tls_verify=parse_bool(tls_verify), ca_file=ca_file)


def run(action: Callable[[], T]) -> T:
    """Run a command body: a :class:`SealpodError` becomes one clear message and its exit code."""
    try:
        return action()
    except SealpodError as err:
        if State.debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {escape(str(err))}")
        if err.hint:
            err_console.print(f"[yellow]hint:[/] {escape(err.hint)}")
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except OSError as err:
        if State.debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {escape(str(err))}")
        err_console.print("[yellow]hint:[/] run with --debug for the full traceback")
        raise typer.Exit(1) from None


def configure_logging(debug: bool) -> None:
    """Log warnings (everything with --debug) to stderr."""
    State.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO if debug else logging.WARNING)


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
    """Progress bars when stderr is a terminal."""
    if not err_console.is_terminal:
        yield ProgressEvents(None)
        return
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
