"""``sealpod keyprovider``: an ocicrypt key provider (command protocol on stdin/stdout, or a gRPC server)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import err_console, run
from sealpod.config import kek_store_path

app = typer.Typer(
    help="An ocicrypt key provider that wraps layer keys in CoCo annotation packets with KEKs you keep "
    "(and register with the KBS). Configure it in $OCICRYPT_KEYPROVIDER_CONFIG as "
    '{"key-providers": {"attestation-agent": {"cmd": {"path": "sealpod", "args": ["keyprovider"]}}}}; '
    "then skopeo --encryption-key provider:attestation-agent:keyid=kbs:///default/image-kek/app.",
    invoke_without_command=True,
)

KeysOption = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        help="The KEK store (JSON: resource path -> base64 KEK, CoCo's offline_fs_kbc format). "
        "[default: $SEALPOD_KEK_STORE, else image-keks.json in the state dir]",
    ),
]


@app.callback()
def command_protocol(ctx: typer.Context, keys: KeysOption = None) -> None:
    """Without a subcommand: answer one keywrap/keyunwrap request read from stdin (ocicrypt's command protocol)."""
    if ctx.invoked_subcommand is not None:
        return

    def action() -> None:
        from sealpod.ocicrypt.keywrap.kbs import KekStore
        from sealpod.ocicrypt.provider_service import KeyProviderService

        service = KeyProviderService(KekStore(keys or kek_store_path()))
        sys.stdout.buffer.write(service.handle(sys.stdin.buffer.read()))
        sys.stdout.flush()

    run(action)


@app.command()
def serve(
    grpc: Annotated[str, typer.Option("--grpc", help="HOST:PORT to serve ocicrypt's gRPC keyprovider protocol on.")],
    keys: KeysOption = None,
) -> None:
    """Serve the gRPC keyprovider protocol until interrupted."""

    def action() -> None:
        from sealpod.ocicrypt.keywrap.kbs import KekStore
        from sealpod.ocicrypt.provider_service import KeyProviderService, serve_grpc

        server = serve_grpc(KeyProviderService(KekStore(keys or kek_store_path())), grpc)
        err_console.print(f"keyprovider listening on {grpc} (gRPC)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        server.stop(grace=2)

    run(action)
