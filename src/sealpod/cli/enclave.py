"""``sealpod enclave ...``: the generic enclave's measurement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sealpod.cli.common import out_console, run

app = typer.Typer(
    help="The generic enclave: its measurement (what a KBS registers as reference values) and SGX manifest.",
    no_args_is_help=True,
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


@app.command()
def manifest(
    gramine: Annotated[
        bool, typer.Option("--gramine", help="Write a Gramine manifest template (SGX hardware).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write here instead of standard output.")] = None,
    state: Annotated[Path, typer.Option(help="The node's state dir (the encrypted rootfs mount).")] = Path(
        "/var/lib/sealpod"
    ),
    enclave_size: Annotated[str, typer.Option(help="sgx.enclave_size.")] = "8G",
    max_threads: Annotated[int, typer.Option(help="sgx.max_threads.")] = 64,
) -> None:
    """Write the enclave's manifest for real SGX: trusted files (interpreter, stdlib, venv, sealpod), DCAP
    attestation, an encrypted rootfs mount sealed to MRENCLAVE. Then gramine-manifest and gramine-sgx-sign."""

    def action() -> None:
        from sealpod.enclave.gramine import gramine_manifest
        from sealpod.errors import UsageError

        if not gramine:
            raise UsageError("name the enclave runtime: --gramine (the only one so far)")
        text = gramine_manifest(state_dir=state, enclave_size=enclave_size, max_threads=max_threads)
        if out:
            out.write_text(text)
            out_console.print(f"wrote {out}")
        else:
            typer.echo(text, nl=False)

    run(action)
