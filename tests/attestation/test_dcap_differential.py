"""Differential against dcap-qvl (PyPI) on the real quotes, and hypothesis mutations of them: no crash, nothing
but the verifier's own errors, and no quote with a mutated signed byte accepted."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import dcap_qvl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealpod.attestation.sgx.collateral import Collateral
from sealpod.attestation.sgx.quote import SIGNED_SIZE, parse_quote
from sealpod.attestation.sgx.verify import DcapVerifier
from sealpod.errors import AttestationError

DATA = Path(__file__).parent.parent / "data" / "sgx"
CASES = json.loads((DATA / "expected_results.json").read_text())["cases"]
NON_DEBUG = [c for c in CASES if not c["debug_enclave"]]
VERIFIER = DcapVerifier()


def _qvl(raw: bytes, text: str, now: int) -> dcap_qvl.VerifiedReport | None:
    try:
        return dcap_qvl.verify(raw, dcap_qvl.QuoteCollateralV3.from_json(text), now)
    except Exception:  # dcap-qvl raises plain ValueErrors
        return None


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_same_verdicts_as_dcap_qvl(case: dict) -> None:  # type: ignore[type-arg]
    raw, text = (DATA / case["quote"]).read_bytes(), (DATA / case["collateral"]).read_text()
    for now in (case["verify_at"], case["validity_window"]["not_after"], case["validity_window"]["not_after"] + 1):
        theirs = _qvl(raw, text, now)
        try:
            ours = VERIFIER.verify(raw, Collateral.from_qvl_json(text), now=now)
        except AttestationError:
            ours = None
        assert (ours is None) == (theirs is None), now
        if ours is not None and theirs is not None:
            assert ours.status == theirs.status
            assert sorted(ours.advisory_ids) == sorted(theirs.advisory_ids)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NON_DEBUG), st.data())
def test_mutated_quotes_are_refused_like_dcap_qvl(case: dict, data: st.DataObject) -> None:  # type: ignore[type-arg]
    raw = bytearray((DATA / case["quote"]).read_bytes())
    text = (DATA / case["collateral"]).read_text()
    offset = data.draw(st.integers(0, len(raw) - 1))
    raw[offset] ^= data.draw(st.integers(1, 255))
    mutated = bytes(raw)
    try:
        ours = VERIFIER.verify(mutated, Collateral.from_qvl_json(text), now=case["verify_at"])
    except AttestationError:
        ours = None
    if ours is not None:
        assert offset >= SIGNED_SIZE, f"a mutated signed byte at {offset} was accepted"
        assert _qvl(mutated, text, case["verify_at"]) is not None, f"dcap-qvl refuses the byte at {offset}, we accept"


@settings(max_examples=600, deadline=None)
@given(st.binary(min_size=0, max_size=6000))
def test_parser_raises_only_its_own_error_on_garbage(blob: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_quote(blob)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CASES), st.integers(0, 5000), st.binary(min_size=1, max_size=8))
def test_parser_and_verifier_raise_only_their_own_errors_on_spliced_quotes(
    case: dict,
    offset: int,
    splice: bytes,  # type: ignore[type-arg]
) -> None:
    raw = (DATA / case["quote"]).read_bytes()
    offset %= len(raw)
    mutated = raw[:offset] + splice + raw[offset + len(splice) // 2 :]
    with contextlib.suppress(AttestationError):
        VERIFIER.verify(
            mutated, Collateral.from_qvl_json((DATA / case["collateral"]).read_text()), now=case["verify_at"]
        )
