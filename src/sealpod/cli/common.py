"""What every command shares: the error boundary, flags, consoles. Library modules are imported inside the
commands, so that each command loads only what it uses (start-up time is part of every command's cost)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from sealpod.cli.console import (
    err_console,
    escape,
    log_to_stderr,
    out_console,
    report,
    strip_markup,
)
from sealpod.cli.values import bool_value, parse_size
from sealpod.errors import SealpodError

if TYPE_CHECKING:
    from sealpod.oci.source import RegistryOptions

__all__ = [
    "CaFile",
    "State",
    "TlsVerify",
    "configure_logging",
    "err_console",
    "escape",
    "out_console",
    "parse_bool",
    "parse_size",
    "registry_options",
    "run",
    "strip_markup",
]

T = TypeVar("T")


class State:
    """Global flags set by the app callback."""

    debug = False


def parse_bool(value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no), as skopeo's ``--tls-verify=false``."""
    parsed = bool_value(value)
    if parsed is None:
        raise typer.BadParameter(f"{value!r} is not true or false")
    return parsed


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
    except (SealpodError, OSError) as err:
        raise typer.Exit(report(err, State.debug)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def configure_logging(debug: bool) -> None:
    """Log warnings (everything with --debug) to stderr."""
    State.debug = debug
    log_to_stderr(debug)
