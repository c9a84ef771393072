"""Collateral from a PCS/PCCS over real HTTP (served here from the sim platform's documents), with its cache;
and `sealpod attest` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote as urlquote

import pytest

from sealpod.attestation.sgx.pcs import PcsClient, pck_ca_type
from sealpod.attestation.sgx.quote import parse_quote
from sealpod.attestation.sgx.sim_pcs import SimPcs
from sealpod.attestation.sgx.verify import DcapVerifier
from sealpod.tee.sim import SIM_FMSPC, SimPlatform

SEALPOD = str(Path(sys.executable).with_name("sealpod"))
DATA = Path(__file__).parent.parent / "data" / "sgx"
MRE, MRS = b"\x11" * 32, b"\x22" * 32


@pytest.fixture
def pccs(tmp_path: Path) -> Iterator[tuple[str, SimPlatform, list[str]]]:
    platform = SimPlatform.load(tmp_path / "sim")
    docs = SimPcs(platform.files).pcs_documents()
    paths: list[str] = []
    routes = {
        f"/sgx/certification/v4/tcb?fmspc={SIM_FMSPC.hex().upper()}": (
            docs["tcb_info_response"],
            {"TCB-Info-Issuer-Chain": docs["tcb_info_issuer_chain"]},
        ),
        "/sgx/certification/v4/qe/identity": (
            docs["qe_identity_response"],
            {"SGX-Enclave-Identity-Issuer-Chain": docs["qe_identity_issuer_chain"]},
        ),
        "/sgx/certification/v4/pckcrl?ca=processor&encoding=der": (
            docs["pck_crl"],
            {"SGX-PCK-CRL-Issuer-Chain": docs["pck_crl_issuer_chain"]},
        ),
        "/sgx/certification/v4/rootcacrl": (docs["root_ca_crl"], {}),
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            paths.append(self.path)
            if self.path not in routes:
                self.send_response(404)
                self.end_headers()
                return
            body, headers = routes[self.path]
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, urlquote(value.decode()))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", platform, paths
    server.shutdown()
    server.server_close()


def test_pcs_collateral_and_cache(pccs: tuple[str, SimPlatform, list[str]], tmp_path: Path) -> None:
    url, platform, paths = pccs
    quote = platform.quote(report_data=b"p", mr_enclave=MRE, mr_signer=MRS)
    assert pck_ca_type(parse_quote(quote)) == "processor"
    client = PcsClient(url, tmp_path / "cache")
    collateral = client.collateral(SIM_FMSPC, "processor")
    verdict = DcapVerifier([SimPcs(platform.files).root]).verify(quote, collateral, now=int(time.time()))
    assert verdict.status == "UpToDate"
    assert len(paths) == 4
    client.collateral(SIM_FMSPC, "processor")
    assert len(paths) == 4, "a second fetch within nextUpdate is served from the cache"
    later = int((datetime.now(UTC) + timedelta(days=40)).timestamp())
    client.collateral(SIM_FMSPC, "processor", now=later)
    assert len(paths) == 8, "past nextUpdate the cache is refreshed"
    client.close()


def sealpod(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [SEALPOD, *map(str, args)], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )


def test_verify_quote_cli_on_a_real_quote() -> None:
    quote = DATA / "quotes/zkdcap_quote_v3_00906ED50000.bin"
    collateral = DATA / "collateral/00906ED50000_processor_20250121.json"
    case = next(
        c for c in json.loads((DATA / "expected_results.json").read_text())["cases"] if c["id"] == "zkdcap_2025"
    )
    proc = sealpod(
        "attest", "verify-quote", quote, "--collateral", collateral, "--at", str(case["verify_at"]), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["tcb_status"] == "SWHardeningNeeded"
    assert result["mr_enclave"] == case["isv_report"]["mr_enclave"]
    assert result["claims"]["body"]["mr_signer"] == case["isv_report"]["mr_signer"]
    assert result["claims"]["tcb_status"] == "SWHardeningNeeded"
    late = sealpod("attest", "verify-quote", quote, "--collateral", collateral, "--at", "2030-01-01T00:00:00Z")
    assert late.returncode == 1
    assert "not valid at 2030-01-01T00:00:00Z" in late.stderr
    bad = sealpod("attest", "verify-quote", quote, "--collateral", collateral, "--at", "yesterday")
    assert bad.returncode == 2


def test_sim_commands_round_trip(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    assert (
        sealpod(
            "attest",
            "sim-quote",
            "-o",
            tmp_path / "q.bin",
            "--report-data",
            "abcd",
            "--mr-enclave",
            MRE.hex(),
            "--sim-dir",
            sim,
        ).returncode
        == 0
    )
    assert (
        sealpod(
            "attest", "sim-collateral", "-o", tmp_path / "c.json", "--tcb-status", "OutOfDate", "--sim-dir", sim
        ).returncode
        == 0
    )
    untrusted = sealpod("attest", "verify-quote", tmp_path / "q.bin", "--collateral", tmp_path / "c.json")
    assert untrusted.returncode == 1
    assert "untrusted root" in untrusted.stderr
    trusted = sealpod(
        "attest",
        "verify-quote",
        tmp_path / "q.bin",
        "--collateral",
        tmp_path / "c.json",
        "--trust-sim",
        "--sim-dir",
        sim,
        "--json",
    )
    assert trusted.returncode == 0, trusted.stderr
    result = json.loads(trusted.stdout)
    assert (result["root"], result["tcb_status"], result["mr_enclave"]) == ("sim", "OutOfDate", MRE.hex())
    assert result["report_data"].startswith("abcd")
