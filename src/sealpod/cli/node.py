"""``sealpod node ...``: set up a Kubernetes node (containerd) to run sealpod pods."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import err_console, run

app = typer.Typer(
    help="Set up a node: containerd's sealpod runtime handler and snapshotter; the enclave pool.", no_args_is_help=True
)


@app.command("containerd-config")
def containerd_config(
    config: Annotated[Path, typer.Option(help="containerd's config file to merge into.")] = Path(
        "/etc/containerd/config.toml"
    ),
    runtime_binary: Annotated[
        str, typer.Option(help="Path of sealpod-runtime on the node.")
    ] = "/opt/sealpod/bin/sealpod-runtime",
    snapshotter_socket: Annotated[
        str, typer.Option(help="Socket the sealpod snapshotter serves.")
    ] = "/run/sealpod/snapshotter.sock",
) -> None:
    """Merge the sealpod runtime handler, the snapshotter proxy plugin and the CRI settings they need into containerd's
    config (the original is kept as config.toml.orig). Exit status 0 when it changed (restart containerd), 3 when it
    already had them."""

    def action() -> None:
        from sealpod.runtime.containerd_config import configure, sealpod_settings

        changed = configure(config, sealpod_settings(runtime_binary, snapshotter_socket))
        err_console.print(f"{config}: {'updated: restart containerd' if changed else 'already set up'}")
        if not changed:
            raise typer.Exit(3)

    run(action)


@app.command("enclave-pool")
def enclave_pool(
    size: Annotated[int, typer.Option(help="How many enclaves to keep started and waiting.")] = 2,
    socket_path: Annotated[
        Path | None, typer.Option("--socket", help="Where to listen [default: <state dir>/enclave-pool.sock].")
    ] = None,
) -> None:
    """Keep SIZE generic enclaves pre-launched (started, imported, measured) so that `sealpod run` skips the enclave's
    start: it hands its request to a waiting enclave, and the pool starts a replacement. Each enclave runs one
    container and exits. Runs in the foreground until SIGTERM or Ctrl-C; `sealpod run --no-pool` bypasses it."""

    def action() -> None:
        import signal

        from sealpod.runtime.enclave_pool import EnclavePool
        from sealpod.runtime.pool_client import pool_socket

        pool = EnclavePool(socket_path or Path(pool_socket()), size)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: pool.stop())
        pool.serve_forever()

    run(action)
