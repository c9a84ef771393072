"""The native default policies give exactly what their Rego gives (regopy), case by case."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sealpod.attestation import default_policies, rego

MRE, MRS = "ab" * 32, "cd" * 32
REFS = {"mr_enclave": [MRE, "ee" * 32], "mr_signer": [MRS], "isv_prod_id": [0, 3], "isv_svn": [2, 5]}
ACCEPTABLE = ["UpToDate", "SWHardeningNeeded"]


def _claims(**changes: Any) -> dict[str, Any]:
    sgx: dict[str, Any] = {
        "body": {"mr_enclave": MRE, "mr_signer": MRS},
        "isv_prod_id": 3,
        "isv_svn": 2,
        "tcb_status": "UpToDate",
        "debug": False,
    }
    for key, value in changes.items():
        if key in ("mr_enclave", "mr_signer"):
            sgx["body"][key] = value
        elif value is _DROP:
            sgx.pop(key, None)
        else:
            sgx[key] = value
    return {"sgx": sgx, "report_data": "00", "runtime_data_claims": {"nonce": "n"}}


_DROP = object()
VARIANTS: list[dict[str, Any]] = [
    {},
    {"mr_enclave": "ff" * 32},
    {"mr_signer": "00" * 32},
    {"isv_prod_id": 1},
    {"isv_prod_id": 0},
    {"isv_svn": 1},
    {"isv_svn": 9},
    {"tcb_status": "OutOfDate"},
    {"tcb_status": "SWHardeningNeeded"},
    {"debug": True},
    {"debug": _DROP},
    {"isv_svn": _DROP},
    {"tcb_status": _DROP},
    {"isv_prod_id": "3"},
]
REFERENCE_SETS = [REFS, {}, {**REFS, "isv_svn": []}, {k: v for k, v in REFS.items() if k != "mr_signer"}]


@pytest.mark.parametrize(("variant", "references"), list(itertools.product(VARIANTS, REFERENCE_SETS)))
def test_native_sgx_policy_equals_the_rego(variant: dict[str, Any], references: dict[str, list[Any]]) -> None:
    claims = _claims(**variant)
    native = default_policies.sgx_trust_vector(claims, references, ACCEPTABLE)
    expected = rego.evaluate(
        rego.packaged("default_sgx.rego"),
        "trust_claims",
        claims,
        {"sgx": {"acceptable_tcb_statuses": ACCEPTABLE}},
        references,
    )
    assert native == expected


def test_no_sgx_claims_and_uncovered_types() -> None:
    claims = {"sample": {"svn": "1"}}
    assert default_policies.sgx_trust_vector(claims, REFS, ACCEPTABLE) == rego.evaluate(
        rego.packaged("default_sgx.rego"),
        "trust_claims",
        claims,
        {"sgx": {"acceptable_tcb_statuses": ACCEPTABLE}},
        REFS,
    )
    assert default_policies.sgx_trust_vector(_claims(), {**REFS, "isv_svn": ["2"]}, ACCEPTABLE) is None


@pytest.mark.parametrize(
    ("claims", "data"),
    [
        (
            {"submods": {"cpu0": {"ear.status": "affirming", "ear.veraison.annotated-evidence": {"sgx": {}}}}},
            {"plugin": "resource"},
        ),
        (
            {"submods": {"cpu0": {"ear.status": "affirming", "ear.veraison.annotated-evidence": {"sgx": {}}}}},
            {"plugin": "other"},
        ),
        (
            {"submods": {"cpu0": {"ear.status": "warning", "ear.veraison.annotated-evidence": {"sgx": {}}}}},
            {"plugin": "resource"},
        ),
        (
            {"submods": {"cpu0": {"ear.status": "affirming", "ear.veraison.annotated-evidence": {"sample": {}}}}},
            {"plugin": "resource"},
        ),
        ({"submods": {"cpu0": {"ear.status": "affirming"}}}, {"plugin": "resource"}),
        ({}, {"plugin": "resource"}),
    ],
)
def test_native_resource_policy_equals_the_rego(claims: dict[str, Any], data: dict[str, Any]) -> None:
    expected = rego.evaluate(rego.packaged("default_resource.rego"), "allow", claims, data) is True
    assert default_policies.resource_allowed(claims, data) == expected
