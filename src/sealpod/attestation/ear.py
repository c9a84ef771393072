"""EAR attestation result tokens (ES256 JWTs) as trustee's attestation service issues them."""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.jose import JoseError, public_jwk, sign_es256, verify_jws

EAT_PROFILE = "tag:github.com,2024:confidential-containers/Trustee"
VERIFIER_ID = {"developer": "https://github.com/sealpod", "build": "sealpod attestation-service 0.1.0"}
TRUST_CLAIMS = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)
_TIERS = ("none", "affirming", "warning", "contraindicated")


def tier(value: int) -> str:
    """AR4SI tier of one trust claim value."""
    magnitude = abs(value)
    if magnitude <= 1:
        return "none"
    if magnitude < 32:
        return "affirming"
    if magnitude < 96:
        return "warning"
    return "contraindicated"


def ear_status(vector: dict[str, int]) -> str:
    """The worst tier of the vector (``none`` when nothing is asserted)."""
    return max((tier(v) for v in vector.values()), key=_TIERS.index, default="none")


def issue(
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: str,
    policy_id: str,
    vector: dict[str, int],
    annotated_evidence: dict[str, Any],
    now: int | None = None,
    lifetime: int = 300,
) -> tuple[str, dict[str, Any]]:
    """A signed EAR token and its claims (what :func:`verify` returns for it)."""
    now = int(time.time()) if now is None else now
    claims = {
        "eat_profile": EAT_PROFILE,
        "iat": now,
        "exp": now + lifetime,
        "iss": issuer,
        "ear.verifier-id": VERIFIER_ID,
        "submods": {
            "cpu0": {
                "ear.status": ear_status(vector),
                "ear.trustworthiness-vector": vector,
                "ear.appraisal-policy-id": policy_id,
                "ear.veraison.annotated-evidence": annotated_evidence,
            }
        },
    }
    token = sign_es256(key, {"typ": "JWT", "alg": "ES256", "jwk": _jwk(key)}, claims)
    return token, claims


_JWKS: dict[int, tuple[ec.EllipticCurvePrivateKey, dict[str, str]]] = {}


def _jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The signing key's public JWK for the token header, made once per key."""
    known = _JWKS.get(id(key))
    if known is None or known[0] is not key:
        known = (key, public_jwk(key.public_key()))
        if len(_JWKS) > 16:
            _JWKS.clear()
        _JWKS[id(key)] = known
    return known[1]


def check_expiry(claims: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """``claims`` if the token has not expired."""
    now = int(time.time()) if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp < now:
        raise JoseError("the attestation token has expired")
    return claims


def verify(token: str, key: ec.EllipticCurvePublicKey, *, now: int | None = None) -> dict[str, Any]:
    """The claims of a token this attestation service signed and that has not expired."""
    return check_expiry(verify_jws(token, key, ("ES256",)), now)
