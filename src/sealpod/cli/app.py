"""The ``sealpod`` typer app: global flags and the command groups.

Each invocation imports and builds only the command it runs (typer evaluates every command's signature when it
builds the app: ~35 ms for all of them, paid by every ``sealpod run`` otherwise); ``sealpod --help`` and anything
that is not a known command get the whole app.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Annotated

import typer

from sealpod import __version__
from sealpod.cli.common import configure_logging

#: top-level commands: name -> (module in sealpod.cli, function)
COMMANDS: dict[str, tuple[str, str]] = {
    "pull": ("pull", "pull"),
    "inspect": ("pull", "inspect"),
    "run": ("run", "run"),
    "ps": ("containers", "ps"),
    "logs": ("containers", "logs"),
    "stop": ("containers", "stop"),
    "rm": ("containers", "rm"),
    "demo": ("demo", "demo"),
}
#: command groups: name -> module in sealpod.cli (its ``app``)
GROUPS = ("image", "keyprovider", "attest", "kbs", "enclave", "node", "snapshotter")
GLOBAL_FLAGS = ("--debug",)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sealpod {__version__}")
        raise typer.Exit()


def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs and full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Confidential containers in a process enclave."""
    configure_logging(debug)


def build_app(only: str | None = None) -> typer.Typer:
    """The app with every command, or with just the command named ``only``."""
    app = typer.Typer(
        name="sealpod",
        help="Confidential containers in a process enclave: pull, verify, decrypt and run OCI images.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(main_callback)
    for name, (module, function) in COMMANDS.items():
        if only in (None, name):
            app.command(name)(getattr(import_module(f"sealpod.cli.{module}"), function))
    for name in GROUPS:
        if only in (None, name):
            app.add_typer(import_module(f"sealpod.cli.{name}").app, name=name)
    return app


def invoked_command(argv: list[str]) -> str | None:
    """The command ``argv`` runs, when it is a known one after only global flags."""
    for arg in argv:
        if arg not in GLOBAL_FLAGS:
            return arg if arg in COMMANDS or arg in GROUPS else None
    return None


def main() -> None:
    """Console-script entry point."""
    build_app(invoked_command(sys.argv[1:]))()
