"""The command line's output and its error report, without typer or rich: what a command's fast path
(:mod:`sealpod.cli.fast`) and the typer commands (:mod:`sealpod.cli.common`) share."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import TYPE_CHECKING, Any, cast

from sealpod.errors import SealpodError

if TYPE_CHECKING:
    from rich.console import Console

#: rich's markup tag, with the backslashes before it (rich.markup's own syntax)
_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")


def strip_markup(text: str) -> str:
    """``text`` as rich prints it where there are no styles: tags dropped, escaped brackets kept, as rich's parser
    reads them (an odd run of backslashes escapes the tag; each pair before it is one backslash; ``\\[`` in text
    is ``[``)."""
    out, position = [], 0
    for match in _TAG.finditer(text):
        out.append(text[position : match.start()].replace("\\[", "["))
        backslashes, escaped = divmod(len(match.group(1)), 2)
        out.append("\\" * backslashes + (f"[{match.group(2)}]" if escaped else ""))
        position = match.end()
    out.append(text[position:].replace("\\[", "["))
    return "".join(out)


class _LazyConsole:
    """A rich Console made on first use: importing rich costs ~15 ms (and ~3 MiB), and most commands print little or
    nothing. Where the stream is not a terminal, text is printed without rich (markup stripped, as rich would)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", **options: Any) -> None:
        """rich's Console.print; plain text with the markup stripped when the stream is not a terminal."""
        stream = sys.stderr if self._options.get("stderr") else sys.stdout
        if self._console is None and not stream.isatty() and all(isinstance(o, str) for o in objects):
            stream.write(sep.join(strip_markup(o) for o in objects) + end)
            stream.flush()
            return
        self.__getattr__("print")(*objects, sep=sep, end=end, **options)

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


err_console = cast("Console", _LazyConsole(stderr=True, highlight=False, soft_wrap=True))
out_console = cast("Console", _LazyConsole(highlight=False, soft_wrap=True))


def escape(text: str) -> str:
    """``text`` with rich markup escaped (as rich.markup.escape)."""
    escaped = _ESCAPE.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    return escaped + "\\" if escaped.endswith("\\") and not escaped.endswith("\\\\") else escaped


_ESCAPE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def report(err: SealpodError | OSError, debug: bool) -> int:
    """Print ``err`` as one line (and its hint, or where the traceback is); returns the exit status."""
    if debug:
        traceback.print_exc()
    err_console.print(f"[bold red]error:[/] {escape(str(err))}")
    if isinstance(err, SealpodError):
        if err.hint:
            err_console.print(f"[yellow]hint:[/] {escape(err.hint)}")
        return err.exit_code
    err_console.print("[yellow]hint:[/] run with --debug for the full traceback")
    return 1


def log_to_stderr(debug: bool) -> None:
    """Log warnings (everything with ``debug``) to stderr."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
