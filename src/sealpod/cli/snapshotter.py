"""``sealpod snapshotter ...``: the containerd snapshotter (proxy plugin) that keeps encrypted layers off the host."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import State, run

app = typer.Typer(
    help="containerd's snapshotter for sealpod nodes: overlayfs for ordinary images, remote snapshots for encrypted.",
    no_args_is_help=True,
)


@app.callback()
def snapshotter() -> None:
    """containerd's snapshotter for sealpod nodes."""


@app.command()
def serve(
    socket: Annotated[
        Path, typer.Option("--socket", help="Unix socket to serve (containerd's proxy_plugins address).")
    ] = Path("/run/sealpod/snapshotter.sock"),
    root: Annotated[Path, typer.Option("--root", help="Snapshot directories and metadata.")] = Path(
        "/var/lib/sealpod/snapshotter"
    ),
    containerd_root: Annotated[
        Path, typer.Option("--containerd-root", help="containerd's root, where its content store holds manifests.")
    ] = Path("/var/lib/containerd"),
) -> None:
    """Serve containerd's snapshot API until SIGTERM or SIGINT."""

    def action() -> None:
        from sealpod.runtime.snapshotter.server import serve as serve_snapshots

        if not State.debug:
            logging.getLogger("sealpod.runtime.snapshotter").setLevel(logging.INFO)
        serve_snapshots(socket, root, containerd_root)

    run(action)
