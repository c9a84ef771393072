"""The attestation service: verify a TEE's evidence, check its report-data binding, appraise the claims with the
Rego attestation policy against the reference values, and sign an EAR token.

TEE verifiers: ``sgx`` (the DCAP verifier; Intel's root always, the simulated platform's root only with
``allow_sim``) and trustee's ``sample`` (no hardware, no signature; only when ``allow_sample``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from sealpod.attestation import default_policies, ear, rego
from sealpod.attestation.init_data import InitData, check_binding
from sealpod.attestation.sgx.collateral_source import CollateralSource
from sealpod.attestation.sgx.quote import parse_quote
from sealpod.attestation.sgx.verify import DcapVerifier, TrustedRoot, intel_root
from sealpod.errors import AttestationError

DEFAULT_ACCEPTABLE_TCB = ("UpToDate", "SWHardeningNeeded")


@dataclass
class AttestationSettings:
    """How evidence is appraised."""

    allow_sim: bool = False
    sim_roots: list[TrustedRoot] = field(default_factory=list)
    allow_sample: bool = False
    allow_debug: bool = False
    acceptable_tcb_statuses: tuple[str, ...] = DEFAULT_ACCEPTABLE_TCB
    token_lifetime: int = 300
    issuer: str = "sealpod-kbs"


@dataclass(frozen=True)
class Appraisal:
    """An accepted piece of evidence: the token and what went into it."""

    token: str
    claims: dict[str, Any]
    vector: dict[str, int]
    token_claims: dict[str, Any]


class AttestationService:
    """Evidence in, EAR token out."""

    def __init__(
        self, settings: AttestationSettings, signing_key: ec.EllipticCurvePrivateKey, collateral: CollateralSource
    ) -> None:
        self.settings = settings
        self.signing_key = signing_key
        self.collateral = collateral
        roots = [TrustedRoot.from_der("intel", intel_root())]
        if settings.allow_sim:
            roots.extend(settings.sim_roots)
        self.verifier = DcapVerifier(roots)

    def _sgx(self, evidence: Any, expected: bytes, now: int, init_data: InitData | None) -> dict[str, Any]:
        if not isinstance(evidence, dict) or not isinstance(evidence.get("quote"), str):
            raise AttestationError('SGX evidence must be {"quote": "<base64>"}')
        try:
            raw = base64.b64decode(evidence["quote"], validate=True)
        except (binascii.Error, ValueError):
            raise AttestationError("the SGX quote is not base64") from None
        quote = parse_quote(raw)
        collateral = self.collateral.for_quote(quote)
        verdict = self.verifier.verify_parsed(quote, collateral, now=now, allow_debug=self.settings.allow_debug)
        if verdict.quote.report.report_data != expected.ljust(64, b"\0")[:64]:
            raise AttestationError(
                "the quote's report data does not bind this session's nonce and tee-pubkey",
                hint="the evidence was made for another challenge (a replay?) or the tee-pubkey was substituted",
            )
        if init_data is not None:
            check_binding(init_data, verdict.quote.report.config_id.hex())
        claims = verdict.claims()
        claims.update(
            isv_prod_id=verdict.quote.report.isv_prod_id,
            isv_svn=verdict.quote.report.isv_svn,
            debug=verdict.quote.report.debug,
        )
        return claims

    def _sample(self, evidence: Any, expected: bytes, init_data: InitData | None) -> dict[str, Any]:
        """trustee's sample verifier: the report data checked, the same fixed claims, and init-data's digest put in
        unchecked (the sample TEE has nowhere to carry it; it proves nothing anyway)."""
        if not self.settings.allow_sample:
            raise AttestationError("the 'sample' TEE is disabled", hint="it proves nothing; enable it only for tests")
        if not isinstance(evidence, dict) or not isinstance(evidence.get("svn"), str):
            raise AttestationError("sample evidence must be a JSON object with svn and report_data strings")
        report_data = evidence.get("report_data")
        try:
            digest = base64.b64decode(str(report_data), validate=True)
        except (binascii.Error, ValueError):
            raise AttestationError("sample report_data is not base64") from None
        if digest.ljust(64, b"\0")[:64] != expected.ljust(64, b"\0")[:64]:
            raise AttestationError("the sample evidence's report data does not bind this session")
        claims: dict[str, Any] = {
            "svn": evidence["svn"],
            "report_data": report_data,
            "launch_digest": "abcde",
            "platform_version": {"major": 1, "minor": 4},
            "debug": False,
        }
        if init_data is not None:
            claims["init_data"] = base64.b64encode(init_data.digest).decode()
        return claims

    def appraise(
        self,
        tee: str,
        evidence: Any,
        expected_report_data: bytes,
        runtime_data: dict[str, Any],
        *,
        policy: str,
        policy_id: str,
        references: dict[str, list[Any]],
        now: int,
        init_data: InitData | None = None,
    ) -> Appraisal:
        """Verify and appraise; raise :class:`AttestationError` saying why when the evidence is not acceptable.

        With ``init_data``, the evidence must carry its digest (SGX: as CONFIGID); its claims go into the token as
        trustee puts them (``init_data``: the evidence's field, ``init_data_claims``: the parsed data)."""
        if tee == "sgx":
            claims = self._sgx(evidence, expected_report_data, now, init_data)
            bound = claims.get("body", {}).get("config_id") if isinstance(claims.get("body"), dict) else None
        elif tee == "sample":
            claims = self._sample(evidence, expected_report_data, init_data)
            bound = claims.get("init_data")
        else:
            raise AttestationError(f"TEE {tee!r} is not supported by this attestation service (sgx is)")
        annotated = {
            tee: claims,
            "report_data": expected_report_data.hex(),
            "runtime_data_claims": runtime_data,
            "init_data": bound,
            "init_data_claims": init_data.claims() if init_data is not None else None,
        }
        acceptable = list(self.settings.acceptable_tcb_statuses)
        vector = None
        if policy == rego.packaged("default_sgx.rego"):
            vector = default_policies.sgx_trust_vector(annotated, references, acceptable)
        if vector is None:
            vector = rego.evaluate(
                policy, "trust_claims", annotated, {"sgx": {"acceptable_tcb_statuses": acceptable}}, references
            )
        if not isinstance(vector, dict) or set(vector) != set(ear.TRUST_CLAIMS):
            raise AttestationError(f"attestation policy {policy_id!r} did not produce an AR4SI trust vector")
        vector = {k: int(v) for k, v in vector.items()}
        token, token_claims = ear.issue(
            self.signing_key,
            issuer=self.settings.issuer,
            policy_id=policy_id,
            vector=vector,
            annotated_evidence=annotated,
            now=now,
            lifetime=self.settings.token_lifetime,
        )
        return Appraisal(token, annotated, vector, token_claims)
