"""What every command shares: the error boundary, flags, consoles. Library modules are imported inside the
commands, so that each command loads only what it uses (start-up time is part of every command's cost)."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from sealpod.errors import SealpodError

if TYPE_CHECKING:
    from rich.console import Console

    from sealpod.oci.source import RegistryOptions

T = TypeVar("T")


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
    from sealpod.oci.source import RegistryOptions

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


_SIZE = re.compile(r"^(\d+)([kmg]?)b?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``512k`` or bytes, as podman's ``--memory``."""
    match = _SIZE.match(text.strip())
    if not match:
        raise SealpodError(f"memory size {text!r} is not a number with an optional k, m or g suffix")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]
