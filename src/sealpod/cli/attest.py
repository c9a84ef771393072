"""``sealpod attest ...``: verify SGX DCAP quotes; make quotes and collateral on the simulated platform."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from sealpod.cli.common import err_console, escape, out_console, run
from sealpod.errors import UsageError

app = typer.Typer(
    help="Remote attestation evidence: verify SGX DCAP quotes, use the simulated SGX platform.", no_args_is_help=True
)

SimDir = Annotated[
    Path | None, typer.Option("--sim-dir", help="The simulated platform's directory [default: <state>/sim-sgx].")
]


def _time(text: str | None) -> int:
    if text is None:
        return int(time.time())
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise UsageError(f"--at {text!r} is neither seconds since the epoch nor an ISO 8601 time") from None


def _hex(text: str, size: int | None, what: str) -> bytes:
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{what} is not hex") from None
    if size is not None and len(data) != size:
        raise UsageError(f"{what} must be {size} bytes ({2 * size} hex digits)")
    return data


@app.command("verify-quote")
def verify_quote(
    quote: Annotated[Path, typer.Argument(help="The raw quote (binary).")],
    collateral: Annotated[Path | None, typer.Option(help="Collateral as dcap-qvl's QuoteCollateralV3 JSON.")] = None,
    pcs: Annotated[str | None, typer.Option(help="Fetch collateral from this PCS/PCCS base URL instead.")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Time of check: epoch seconds or ISO 8601 [default: now].")
    ] = None,
    allow_debug: Annotated[
        bool, typer.Option(help="Accept DEBUG enclaves (their memory is open to the host).")
    ] = False,
    allow_expired: Annotated[bool, typer.Option(help="Report expired collateral instead of refusing.")] = False,
    trust_sim: Annotated[
        bool, typer.Option(help="Also trust the simulated platform's root (proves nothing about hardware).")
    ] = False,
    sim_dir: SimDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict and claims as JSON.")] = False,
) -> None:
    """Verify an SGX DCAP quote: exit 0 only when it is accepted."""

    def action() -> None:

        from sealpod.attestation.sgx.collateral import Collateral
        from sealpod.attestation.sgx.collateral_source import CollateralSource
        from sealpod.attestation.sgx.quote import parse_quote
        from sealpod.attestation.sgx.verify import DcapVerifier, TrustedRoot, intel_root

        raw = quote.read_bytes()
        if (collateral is None) == (pcs is None):
            raise UsageError("give exactly one of --collateral FILE and --pcs URL")
        if collateral is not None:
            source = CollateralSource(fixed=Collateral.from_qvl_json(collateral.read_bytes()))
        else:
            source = CollateralSource(pccs_url=str(pcs))
        try:
            coll = source.for_quote(parse_quote(raw))
        finally:
            source.close()
        roots = [TrustedRoot.from_der("intel", intel_root())]
        if trust_sim:
            from sealpod.attestation.sgx.sim_pcs import SimPcs

            roots.append(SimPcs.load(sim_dir).root)
        verdict = DcapVerifier(roots).verify(
            raw, coll, now=_time(at), allow_debug=allow_debug, allow_expired=allow_expired
        )
        report = verdict.quote.report
        summary: dict[str, Any] = {
            "verdict": "accepted",
            "root": verdict.root,
            "tcb_status": verdict.status,
            "advisory_ids": list(verdict.advisory_ids),
            "advisory_rule": verdict.advisory_rule,
            "platform": {"status": verdict.platform_status, "advisory_ids": list(verdict.platform_advisory_ids)},
            "qe": {"status": verdict.qe_status, "advisory_ids": list(verdict.qe_advisory_ids)},
            "mr_enclave": report.mr_enclave.hex(),
            "mr_signer": report.mr_signer.hex(),
            "isv_prod_id": report.isv_prod_id,
            "isv_svn": report.isv_svn,
            "debug": report.debug,
            "report_data": report.report_data.hex(),
            "fmspc": verdict.pck.fmspc.hex().upper(),
            "valid_from": verdict.window.not_before,
            "valid_until": verdict.window.not_after,
            "collateral_expired": verdict.collateral_expired,
            "claims": verdict.claims(),
        }
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        if verdict.root == "sim":
            err_console.print("[yellow]note:[/] simulated SGX: this proves the flow, not the hardware")
        for key in (
            "verdict",
            "root",
            "tcb_status",
            "advisory_ids",
            "mr_enclave",
            "mr_signer",
            "isv_prod_id",
            "isv_svn",
            "debug",
            "report_data",
            "fmspc",
            "collateral_expired",
        ):
            out_console.print(f"[bold]{key:19}[/] {escape(str(summary[key]))}")
        out_console.print(
            f"[bold]{'valid':19}[/] {datetime.fromtimestamp(verdict.window.not_before):%Y-%m-%d %H:%M} "
            f"to {datetime.fromtimestamp(verdict.window.not_after):%Y-%m-%d %H:%M}"
        )

    run(action)


@app.command("sim-quote")
def sim_quote(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the quote.")],
    report_data: Annotated[str, typer.Option(help="Up to 64 bytes, hex.")] = "",
    mr_enclave: Annotated[str, typer.Option(help="32 bytes, hex.")] = "00" * 32,
    mr_signer: Annotated[str, typer.Option(help="32 bytes, hex.")] = "00" * 32,
    isv_prod_id: Annotated[int, typer.Option()] = 0,
    isv_svn: Annotated[int, typer.Option()] = 0,
    debug: Annotated[bool, typer.Option(help="Mark the enclave DEBUG.")] = False,
    sim_dir: SimDir = None,
) -> None:
    """Make a quote v3 on the simulated SGX platform (for development; it proves nothing about hardware)."""

    def action() -> None:
        from sealpod.tee.sim import SimPlatform

        data = _hex(report_data, None, "--report-data")
        if len(data) > 64:
            raise UsageError("--report-data is at most 64 bytes")
        quote = SimPlatform.load(sim_dir).quote(
            report_data=data,
            mr_enclave=_hex(mr_enclave, 32, "--mr-enclave"),
            mr_signer=_hex(mr_signer, 32, "--mr-signer"),
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            debug=debug,
        )
        output.write_bytes(quote)
        err_console.print(f"wrote a {len(quote)}-byte simulated quote to {output}")

    run(action)


@app.command("sim-collateral")
def sim_collateral(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the collateral JSON.")],
    tcb_status: Annotated[str | None, typer.Option(help="Set the platform's TCB status first.")] = None,
    sim_dir: SimDir = None,
) -> None:
    """Write the simulated platform's collateral (dcap-qvl QuoteCollateralV3 JSON, valid 30 days from now)."""

    def action() -> None:
        from sealpod.attestation.sgx.sim_pcs import SimPcs

        platform = SimPcs.load(sim_dir)
        if tcb_status:
            platform.set_tcb_status(tcb_status)
        output.write_text(platform.collateral().to_qvl_json())
        err_console.print(f"wrote collateral (TCB status {platform.tcb_status}) to {output}")

    run(action)


@app.command("get-resource")
def get_resource(
    uri: Annotated[str, typer.Argument(help="kbs:///repository/type/tag")],
    kbs: Annotated[str, typer.Option("--kbs", envvar="SEALPOD_KBS_URL", help="The KBS address.")],
    sim: Annotated[bool, typer.Option(help="Attest with the simulated SGX platform (no hardware).")] = False,
    mr_enclave: Annotated[str, typer.Option(help="Sim enclave identity: 32 bytes hex.")] = "00" * 32,
    mr_signer: Annotated[str, typer.Option(help="Sim enclave signer: 32 bytes hex.")] = "00" * 32,
    isv_prod_id: Annotated[int, typer.Option()] = 0,
    isv_svn: Annotated[int, typer.Option()] = 0,
    sim_dir: SimDir = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the resource here.")] = None,
) -> None:
    """Attest to a KBS and fetch one resource (for debugging the attestation flow)."""

    def action() -> None:
        from sealpod.kbs.client.rcar import KbsClient
        from sealpod.tee import Attester, detect

        attester: Attester
        if sim:
            from sealpod.tee.sim import SimPlatform

            attester = SimPlatform.load(sim_dir).attester(
                mr_enclave=_hex(mr_enclave, 32, "--mr-enclave"),
                mr_signer=_hex(mr_signer, 32, "--mr-signer"),
                isv_prod_id=isv_prod_id,
                isv_svn=isv_svn,
            )
            err_console.print("[yellow]note:[/] simulated SGX: this proves the flow, not the hardware")
        else:
            attester = detect()
        with KbsClient(kbs, attester) as client:
            data = client.get_resource(uri)
        if output:
            output.write_bytes(data)
            err_console.print(f"wrote {len(data)} bytes to {output}")
        else:
            typer.echo(data, nl=False)

    run(action)
