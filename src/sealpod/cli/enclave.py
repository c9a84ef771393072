"""``sealpod enclave ...``: the generic enclave's measurement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import out_console, run

app = typer.Typer(
    help="The generic enclave: its measurement (what a KBS registers as reference values).", no_args_is_help=True
)


@app.command()
def measure(
    key: Annotated[
        Path | None, typer.Option(help="Enclave signing key [default: <state>/enclave-signing-key.pem]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print MRENCLAVE, MRSIGNER, ISV product id and SVN of the generic enclave (simulated platform)."""

    def action() -> None:
        from sealpod.enclave.measure import measure as do_measure

        identity = do_measure(key)
        values = {
            "mr_enclave": identity.mr_enclave.hex(),
            "mr_signer": identity.mr_signer.hex(),
            "isv_prod_id": identity.isv_prod_id,
            "isv_svn": identity.isv_svn,
            "files": identity.files,
        }
        if as_json:
            typer.echo(json.dumps(values, indent=2))
        else:
            for name, value in values.items():
                out_console.print(f"[bold]{name:12}[/] {value}")

    run(action)
