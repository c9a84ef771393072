"""Native evaluations of sealpod's two packaged default policies (policies/default_sgx.rego and
default_resource.rego), exactly equal to running the Rego (a test checks them against regopy case by case).

The KBS uses them while the default policies are in force: a Rego evaluation costs about 1.4 ms and is the largest
single cost of a handshake. Any policy an administrator sets runs in Rego. Inputs whose types the native code does
not cover (reference values that are not plain integers or strings) return None: the caller then runs the Rego.
"""

from __future__ import annotations

from typing import Any

OTHER_CLAIMS = ("file-system", "instance-identity", "runtime-opaque", "storage-opaque", "sourced-data")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _contains(values: list[Any], item: Any) -> bool:
    return any(type(v) is type(item) and v == item for v in values)


def sgx_trust_vector(
    claims: dict[str, Any], references: dict[str, list[Any]], acceptable_tcb_statuses: list[str]
) -> dict[str, int] | None:
    """The trust vector default_sgx.rego gives for these annotated-evidence claims, or None (run the Rego)."""
    for name in ("mr_enclave", "mr_signer"):
        if not all(isinstance(v, str) for v in references.get(name, [])):
            return None
    for name in ("isv_prod_id", "isv_svn"):
        if not all(_is_int(v) for v in references.get(name, [])):
            return None
    vector = dict.fromkeys(OTHER_CLAIMS, 0) | {"executables": 33, "hardware": 97, "configuration": 36}
    sgx = claims.get("sgx")
    if not isinstance(sgx, dict):
        return vector
    raw_body = sgx.get("body")
    body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
    svns = references.get("isv_svn", [])
    if (
        isinstance(body.get("mr_enclave"), str)
        and _contains(references.get("mr_enclave", []), body["mr_enclave"])
        and isinstance(body.get("mr_signer"), str)
        and _contains(references.get("mr_signer", []), body["mr_signer"])
        and _is_int(sgx.get("isv_prod_id"))
        and _contains(references.get("isv_prod_id", []), sgx["isv_prod_id"])
        and _is_int(sgx.get("isv_svn"))
        and svns
        and sgx["isv_svn"] >= min(svns)
    ):
        vector["executables"] = 3
    debug = sgx.get("debug")
    if isinstance(sgx.get("tcb_status"), str) and sgx["tcb_status"] in acceptable_tcb_statuses and debug is False:
        vector["hardware"] = 2
    if debug is False:
        vector["configuration"] = 2
    elif debug is True:
        vector["configuration"] = 96
    return vector


def resource_allowed(claims: dict[str, Any], data: dict[str, Any]) -> bool:
    """What default_resource.rego's ``allow`` gives."""
    submods = claims.get("submods")
    cpu0 = submods.get("cpu0") if isinstance(submods, dict) else None
    if data.get("plugin") != "resource" or not isinstance(cpu0, dict) or cpu0.get("ear.status") != "affirming":
        return False
    evidence = cpu0.get("ear.veraison.annotated-evidence")
    sample = evidence.get("sample") if isinstance(evidence, dict) else None
    return sample in (None, False)
