"""Every case of expected_results.json (real Intel-signed quotes and collateral, dcap-qvl 0.7.0's verdicts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sealpod.attestation.sgx.collateral import Collateral
from sealpod.attestation.sgx.pck import parse_pck_extension
from sealpod.attestation.sgx.quote import parse_quote
from sealpod.attestation.sgx.verify import DcapVerifier, intel_root
from sealpod.errors import AttestationError

DATA = Path(__file__).parent.parent / "data" / "sgx"
EXPECTED = json.loads((DATA / "expected_results.json").read_text())
CASES = {case["id"]: case for case in EXPECTED["cases"]}


def _load(case: dict[str, Any]) -> tuple[bytes, Collateral]:
    return (DATA / case["quote"]).read_bytes(), Collateral.from_qvl_json((DATA / case["collateral"]).read_text())


def test_the_shipped_root_is_intels() -> None:
    import hashlib

    assert hashlib.sha256(intel_root()).hexdigest().upper() == EXPECTED["trusted_root"]["sha256_fingerprint"]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_parsed_fields(case_id: str) -> None:
    case = CASES[case_id]
    raw, _ = _load(case)
    quote = parse_quote(raw)
    header = case["header"]
    assert (quote.header.version, quote.header.att_key_type, quote.header.tee_type) == (
        header["version"],
        header["att_key_type"],
        header["tee_type"],
    )
    assert (quote.header.qe_svn, quote.header.pce_svn) == (header["qe_svn"], header["pce_svn"])
    assert quote.header.qe_vendor_id.hex() == header["qe_vendor_id"]
    assert quote.header.user_data.hex() == header["user_data"]
    for report, expected in ((quote.report, case["isv_report"]), (quote.qe_report, case["qe_report"])):
        assert report.cpu_svn.hex() == expected["cpu_svn"]
        assert report.raw[16:20].hex() == expected["misc_select"]
        assert report.attributes.hex() == expected["attributes"]
        assert report.mr_enclave.hex() == expected["mr_enclave"]
        assert report.mr_signer.hex() == expected["mr_signer"]
        assert (report.isv_prod_id, report.isv_svn) == (expected["isv_prod_id"], expected["isv_svn"])
        assert report.report_data.hex() == expected["report_data"]
    assert quote.report.debug == case["debug_enclave"]
    assert quote.certification_type == case["certification_data_type"]
    assert len(quote.qe_auth_data) == case["qe_auth_data_len"]
    from cryptography import x509

    pck = parse_pck_extension(x509.load_pem_x509_certificates(quote.certification_data.rstrip(b"\0"))[0])
    assert pck.fmspc.hex().upper() == case["pck"]["fmspc"]
    assert pck.pceid.hex() == case["pck"]["pceid"]
    assert pck.pcesvn == case["pck"]["pcesvn"]
    assert list(pck.tcb_components) == case["pck"]["tcb_components"]
    assert pck.sgx_type == case["pck"]["sgx_type"]
    assert pck.ppid.hex() == case["pck"]["ppid"]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_verdict_at_verify_at_and_refusal_past_the_window(case_id: str) -> None:
    case = CASES[case_id]
    raw, collateral = _load(case)
    verifier = DcapVerifier()
    expected = case["dcap_qvl"]["at_verify_at"]
    if expected["ok"]:
        verdict = verifier.verify(raw, collateral, now=case["verify_at"])
        assert verdict.status == expected["status"]
        assert sorted(verdict.advisory_ids) == sorted(expected["advisory_ids"])
        assert verdict.platform_status == expected["platform_status"]["status"]
        assert verdict.qe_status == expected["qe_status"]["status"]
        assert verdict.pck.ppid.hex() == expected["ppid"]
        assert verdict.root == "intel"
    else:
        assert "Debug" in expected["error"]
        with pytest.raises(AttestationError, match="DEBUG enclave"):
            verifier.verify(raw, collateral, now=case["verify_at"])
        verdict = verifier.verify(raw, collateral, now=case["verify_at"], allow_debug=True)
        assert verdict.status == case["reference"]["status"]
    assert (verdict.window.not_before, verdict.window.not_after) == (
        case["validity_window"]["not_before"],
        case["validity_window"]["not_after"],
    )
    assert verdict.collateral_expired is False
    assert verdict.tcb_date == case["reference"]["matched_tcb_date"]
    for edge in (case["validity_window"]["not_before"], case["validity_window"]["not_after"]):
        assert verifier.verify(raw, collateral, now=edge, allow_debug=True).status == verdict.status
    with pytest.raises(AttestationError, match="not valid at"):
        verifier.verify(raw, collateral, now=case["validity_window"]["not_after"] + 1, allow_debug=True)
    late = verifier.verify(
        raw, collateral, now=case["validity_window"]["not_after"] + 1, allow_debug=True, allow_expired=True
    )
    assert late.collateral_expired is True


def _mutate(raw: bytes, collateral_text: str, mutation: str) -> tuple[bytes, str]:
    data = json.loads(collateral_text)
    if mutation.startswith("flip bit in"):
        offset = int(mutation.rsplit("byte ", 1)[1].rstrip(")"))
        quote = bytearray(raw)
        quote[offset] ^= 0x01
        return bytes(quote), collateral_text
    if mutation == "insert one space into signed tcb_info JSON":
        data["tcb_info"] = data["tcb_info"].replace(",", ", ", 1)
    elif mutation == "change qe_identity isvprodid (signature breaks)":
        data["qe_identity"] = data["qe_identity"].replace('"isvprodid":1', '"isvprodid":2')
        assert '"isvprodid":2' in data["qe_identity"]
    elif mutation == "swap root_ca_crl and pck_crl":
        data["root_ca_crl"], data["pck_crl"] = data["pck_crl"], data["root_ca_crl"]
    else:
        raise AssertionError(f"unknown mutation {mutation!r}")
    return raw, json.dumps(data)


@pytest.mark.parametrize("warm", [False, True], ids=["fresh verifier", "after the good quote"])
@pytest.mark.parametrize("mutation", [m["mutation"] for m in EXPECTED["negative_mutations"]["results"]])
def test_negative_mutations_are_refused(mutation: str, warm: bool) -> None:
    """Refused by a new verifier, and by one whose caches (chains, collateral, their pairing, the QE report's
    status) hold the unaltered quote's checks: nothing cached stands in for a check of what was altered."""
    case = CASES[EXPECTED["negative_mutations"]["case"]]
    good, good_text = (DATA / case["quote"]).read_bytes(), (DATA / case["collateral"]).read_text()
    now = EXPECTED["negative_mutations"]["verify_at"]
    verifier = DcapVerifier()
    if warm:
        verifier.verify(good, Collateral.from_qvl_json(good_text), now=now, allow_debug=True)
    raw, text = _mutate(good, good_text, mutation)
    with pytest.raises(AttestationError):
        verifier.verify(raw, Collateral.from_qvl_json(text), now=now, allow_debug=True)


def test_raw_pcs_responses_give_the_same_collateral() -> None:
    """The assembled collateral files were made from these PCS responses; parsing the responses gives the same."""
    raw_dir = DATA / "raw_pcs" / "zkdcap_00906ED50000_20250121"
    case = CASES["zkdcap_2025"]
    reference = Collateral.from_qvl_json((DATA / case["collateral"]).read_text())
    from cryptography.hazmat.primitives.serialization import Encoding

    signing = (raw_dir / "tcb_signing_cert.pem").read_bytes()
    root_pem = reference.tcb_info_issuer_chain[-1].public_bytes(Encoding.PEM)
    rebuilt = Collateral.from_pcs(
        tcb_info_response=(raw_dir / "tcbinfov3_00906ED50000.json").read_bytes(),
        tcb_info_issuer_chain=signing + root_pem,
        qe_identity_response=(raw_dir / "qeidentityv2_sgx.json").read_bytes(),
        qe_identity_issuer_chain=signing + root_pem,
        pck_crl=(raw_dir / "pck_processor_crl.der").read_bytes(),
        pck_crl_issuer_chain=b"".join(c.public_bytes(Encoding.PEM) for c in reference.pck_crl_issuer_chain),
        root_ca_crl=(raw_dir / "intel_root_ca_crl.der").read_bytes(),
    )
    assert rebuilt.tcb_info == reference.tcb_info
    assert rebuilt.qe_identity == reference.qe_identity
    assert rebuilt.tcb_info_signature == reference.tcb_info_signature
    raw, _ = _load(case)
    assert DcapVerifier().verify(raw, rebuilt, now=case["verify_at"]).status == "SWHardeningNeeded"
