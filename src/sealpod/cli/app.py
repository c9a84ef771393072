"""The ``sealpod`` typer app: global flags and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from sealpod import __version__
from sealpod.cli import attest, containers, demo, enclave, image, kbs, keyprovider, node, pull, snapshotter
from sealpod.cli import run as run_cli
from sealpod.cli.common import configure_logging

app = typer.Typer(
    name="sealpod",
    help="Confidential containers in a process enclave: pull, verify, decrypt and run OCI images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sealpod {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs and full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Confidential containers in a process enclave."""
    configure_logging(debug)


app.command("pull")(pull.pull)
app.command("inspect")(pull.inspect)
app.command("run")(run_cli.run)
app.command("ps")(containers.ps)
app.command("logs")(containers.logs)
app.command("stop")(containers.stop)
app.command("rm")(containers.rm)
app.command("demo")(demo.demo)
app.add_typer(image.app, name="image")
app.add_typer(keyprovider.app, name="keyprovider")
app.add_typer(attest.app, name="attest")
app.add_typer(kbs.app, name="kbs")
app.add_typer(enclave.app, name="enclave")
app.add_typer(node.app, name="node")
app.add_typer(snapshotter.app, name="snapshotter")


def main() -> None:
    """Console-script entry point."""
    app()
