"""The key broker service (trustee protocol 0.4.0) without its HTTP: the RCAR handshake's steps (/auth, /attest, the
release of a resource), the admin's operations on resources, policies and reference values, and the counters.
State lives in the configured store, so any number of processes can serve one client's steps interchangeably;
:mod:`sealpod.kbs.serving` puts it on HTTP."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealpod._internal.jose import JoseError, compact_json, key_from_jwk, unb64u
from sealpod._internal.jsonio import strict_loads
from sealpod._internal.keyfiles import load_or_create_key
from sealpod.attestation import default_policies, ear, rego
from sealpod.attestation.init_data import InitData, InitDataError
from sealpod.attestation.service import AttestationService, AttestationSettings
from sealpod.attestation.sgx.collateral_source import CollateralSource
from sealpod.errors import AttestationError, SealpodError
from sealpod.kbs.client import resource_jwe
from sealpod.kbs.client.protocol import PROTOCOL_VERSION, KbsError, report_data
from sealpod.kbs.config import KbsConfig
from sealpod.kbs.service.admin_auth import AdminAuth
from sealpod.kbs.service.admin_data import AdminData, AdminView
from sealpod.kbs.service.caches import IssuedTokens, SessionCache
from sealpod.kbs.service.challenges import TEES, ChallengeError, Challenges
from sealpod.kbs.service.messages import Attestation, parse_message
from sealpod.kbs.service.messages import InitData as ProtocolInitData
from sealpod.kbs.service.messages import Request as AuthRequest
from sealpod.kbs.service.storage import Session, new_session_id, open_storage

log = logging.getLogger(__name__)
ATTESTATION_POLICY_ID = "default_cpu"
REFERENCE_LIFETIME = 365 * 24 * 3600


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_or_create_key(path, lambda: ec.generate_private_key(ec.SECP256R1()))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SealpodError(f"{path} is not an EC private key")
    return key


@dataclasses.dataclass(frozen=True, slots=True)
class Appraised:
    """An attestation the service accepted, not yet recorded: the session with its token, the token's claims and
    the TEE's key."""

    session: Session
    token_claims: dict[str, Any]
    tee_key: Any


class Kbs:
    """The service: configuration, store, attestation service, admin auth, counters."""

    def __init__(self, config: KbsConfig) -> None:
        self.config = config
        self.storage = open_storage(config.storage_url())
        self.storage.start_maintenance()
        self.signing_key = _load_or_create_key(config.signing_key_path())
        sim_roots = []
        if config.attestation.allow_sim:
            from sealpod.attestation.sgx.sim_pcs import SimPcs

            sim_roots.append(SimPcs.load(config.attestation.sim_dir).root)
        settings = AttestationSettings(
            allow_sim=config.attestation.allow_sim,
            sim_roots=sim_roots,
            allow_sample=config.attestation.allow_sample,
            allow_debug=config.attestation.allow_debug,
            acceptable_tcb_statuses=tuple(config.attestation.acceptable_tcb_statuses),
            token_lifetime=config.attestation.token_lifetime,
        )
        collateral = CollateralSource(
            sim_dir=config.attestation.sim_dir,
            allow_sim=config.attestation.allow_sim,
            directory=config.attestation.collateral_dir,
            pccs_url=config.attestation.pccs_url,
        )
        self.attestation = AttestationService(settings, self.signing_key, collateral)
        self.admin = AdminAuth(config.admin)
        self.counters: Counter[str] = Counter()
        self.sessions = SessionCache()
        self.challenges = Challenges(self.storage.shared_key("session-nonce"))
        self.admin_data = AdminData(self.storage)
        self.issued = IssuedTokens()

    # -- helpers -----------------------------------------------------------------------------------------------

    def _attested_session(self, session_id: str) -> Session | None:
        """The attested session of this cookie value (the cache, else the store), None if it is not attested."""
        session = self.sessions.get(session_id)
        if session is None:
            session = self.storage.get_session(session_id)
            if session is None:
                return None
            self.sessions.put(session)
        if session.expires < int(time.time()):
            raise KbsError(
                "AttestationError", "Attestation error: the session has expired", hint="start again with /kbs/v0/auth"
            )
        return session

    def _policy(self, kind: str, policy_id: str, packaged: str, view: AdminView | None = None) -> str:
        return (view or self.admin_data.view()).policy(kind, policy_id) or rego.packaged(packaged)

    # -- RCAR (plain values in and out: every HTTP path of :mod:`sealpod.kbs.serving` calls these) -------------

    def start_session(self, body: bytes) -> tuple[dict[str, Any], Session]:
        """/auth: the challenge and the new session."""
        message: AuthRequest = parse_message(AuthRequest, body, "Request")
        if message.version != PROTOCOL_VERSION:
            raise KbsError(
                "AttestationError",
                f"Attestation error: KBS Client Protocol Version Mismatch: the client "
                f"speaks {message.version}, this KBS {PROTOCOL_VERSION}",
                hint=f"use a client of protocol {PROTOCOL_VERSION}",
            )
        if message.tee not in TEES:
            raise KbsError(
                "AttestationError",
                f"Attestation error: TEE {message.tee!r} is not supported by this attestation service "
                f"({', '.join(TEES)} are)",
            )
        expires = int(time.time()) + self.config.attestation.session_lifetime
        session_id = new_session_id(expires)
        nonce = self.challenges.issue(session_id, message.tee, expires)
        return {"nonce": nonce, "extra-params": ""}, Session(session_id, nonce, message.tee, expires, None, None)

    def appraise_attestation(self, session_id: str | None, body: bytes) -> Appraised | tuple[dict[str, Any], Session]:
        """/attest up to the store: the appraised session to record (then :meth:`conclude_attestation`), or the
        answer for a session this process already knows attested."""
        if not session_id:
            raise KbsError("AttestationError", "Attestation error: no kbs-session-id cookie: call /kbs/v0/auth first")
        message: Attestation = parse_message(Attestation, body, "Attestation")
        nonce = message.runtime_data.nonce
        try:
            challenge = self.challenges.check(session_id, nonce)
        except ChallengeError as err:
            raise KbsError(
                "AttestationError",
                f"Attestation error: runtime-data.nonce is not this session's nonce ({err})",
                hint="answer the challenge of this session's /auth (a session of another KBS store is unknown here)",
            ) from None
        if challenge.expires < int(time.time()):
            raise KbsError(
                "AttestationError", "Attestation error: the session has expired", hint="start again with /kbs/v0/auth"
            )
        session = Session(session_id, nonce, challenge.tee, challenge.expires, None, None)
        evidence_digest = hashlib.sha256(
            compact_json(message.tee_evidence.primary_evidence, sort_keys=True)
        ).hexdigest()
        cached = self.sessions.get(session_id)
        if cached is not None:
            return _already_attested(cached, evidence_digest)
        try:
            expected = report_data(
                session.nonce, message.runtime_data.tee_pubkey, message.tee_evidence.additional_evidence
            )
            tee_key = key_from_jwk(message.runtime_data.tee_pubkey)
            if not isinstance(tee_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
                raise JoseError("the tee-pubkey must be an EC (P-256/384/521) or RSA key")
        except (JoseError, TypeError) as err:
            raise KbsError("AttestationError", f"Attestation error: unusable tee-pubkey: {err}") from None
        view = self.admin_data.view()
        try:
            appraisal = self.attestation.appraise(
                session.tee,
                message.tee_evidence.primary_evidence,
                expected,
                {"nonce": session.nonce, "tee-pubkey": message.runtime_data.tee_pubkey},
                policy=self._policy("attestation", ATTESTATION_POLICY_ID, "default_sgx.rego", view),
                policy_id=ATTESTATION_POLICY_ID,
                references=view.references(),
                now=int(time.time()),
                init_data=_init_data(message.init_data),
            )
        except AttestationError as err:
            self.counters["attestation_failures"] += 1
            raise KbsError("AttestationError", f"Attestation error: {err}", hint=err.hint) from None
        session = dataclasses.replace(session, token=appraisal.token, evidence_digest=evidence_digest)
        return Appraised(session, appraisal.token_claims, tee_key)

    def conclude_attestation(self, step: Appraised, recorded: bool) -> tuple[dict[str, Any], Session]:
        """/attest after the store recorded (``recorded``) or refused the appraised session: the token."""
        session = step.session
        if not recorded:
            # attested before (by another request, worker or process): the store's record decides
            stored = self.storage.get_session(session.id)
            if stored is None or stored.token is None:
                raise KbsError("AttestationError", "Attestation error: the session was attested concurrently")
            self.sessions.put(stored)
            return _already_attested(stored, session.evidence_digest or "")
        self.counters["attestations"] += 1
        self.sessions.put(session)
        self.issued.put(session.token or "", step.token_claims, step.tee_key)
        return {"token": session.token}, session

    def _token_claims(self, authorization: str, session_id: str | None) -> tuple[dict[str, Any], Any]:
        """The claims of the request's token and, for a token this process signed, the TEE's parsed key."""
        if authorization.startswith("Bearer "):
            token: str | None = authorization[len("Bearer ") :]
        else:
            attested = self._attested_session(session_id) if session_id else None
            token = attested.token if attested is not None else None
        if not token:
            raise KbsError("TokenNotFound", "Attestation Token not found: attest first, or send it as a Bearer token")
        try:
            issued = self.issued.get(token)
            if issued is not None:
                return ear.check_expiry(issued.claims), issued.tee_key
            return ear.verify(token, self.signing_key.public_key()), None
        except JoseError as err:
            raise KbsError(
                "TokenVerifierError", f"Token Verifier error: {err}", hint="attest again to get a fresh token"
            ) from None

    def release_resource(
        self, path: str, authorization: str | None, session_id: str | None, query: dict[str, str]
    ) -> dict[str, str]:
        """GET a resource: a JWE to the TEE's key when the attestation token and the resource policy allow, as
        trustee answers it: never plaintext, and an admin's token is not an attestation token (the admin reads a
        resource with :meth:`admin_resource`, on its own endpoint). ``session_id`` is None without a session
        cookie."""
        authorization = authorization or ""
        bearer = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        if bearer is not None and self.issued.get(bearer) is None and _is_admin_token(bearer):
            raise KbsError(
                "TokenVerifierError",
                "Token Verifier error: an admin token is not an attestation token; GET /kbs/v0/resource releases "
                "resources to attested TEEs only, encrypted to their key",
                hint="an admin reads a resource at GET /kbs/v0/admin/resource/<path> (sealpod kbs resource get)",
            )
        claims, tee_key = self._token_claims(authorization, session_id)
        data = {"plugin": "resource", "resource-path": path.split("/"), "query": query}
        view = self.admin_data.view()
        policy = self._policy("resource", "default", "default_resource.rego", view)
        if policy == rego.packaged("default_resource.rego"):
            allowed: Any = default_policies.resource_allowed(claims, data)
        else:
            allowed = rego.evaluate(policy, "allow", claims, data)
        if allowed is not True:
            self.counters["policy_denials"] += 1
            status = claims.get("submods", {}).get("cpu0", {}).get("ear.status")
            raise KbsError(
                "PolicyDeny",
                f"Access denied by policy: resource {path} (attestation status {status!r})",
                hint="register the enclave's reference values, or change the resource policy",
            )
        secret = view.resource(path)
        if secret is None:
            raise KbsError(
                "PluginInternalError",
                f"Plugin internal error: resource {path} does not exist",
                hint="put it with 'sealpod kbs resource put'",
            )
        try:
            if tee_key is not None:
                jwe = resource_jwe.encrypt_to_key(secret, tee_key)
            else:
                tee_pubkey = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"][
                    "tee-pubkey"
                ]
                jwe = resource_jwe.encrypt(secret, tee_pubkey)
        except (KeyError, TypeError, JoseError) as err:
            raise KbsError("JweError", f"JWE failed: {err}") from None
        self.counters["resources_released"] += 1
        return jwe

    # -- admin operations (the caller checked the admin's authorization) ---------------------------------------

    def admin_resource(self, path: str) -> bytes:
        """The stored bytes of the resource at ``path``, for the admin (sealpod's admin-only endpoint)."""
        stored = self.storage.get_resource(path)
        if stored is None:
            raise KbsError("PluginInternalError", f"Plugin internal error: resource {path} does not exist")
        return stored

    def put_resource(self, path: str, value: bytes) -> None:
        """Store the resource at ``path`` (``repository/type/tag``)."""
        self.storage.put_resource(path, value)

    def delete_resource(self, path: str) -> None:
        """Remove the resource at ``path``; refused when there is none."""
        if not self.storage.delete_resource(path):
            raise KbsError("PluginInternalError", f"Plugin internal error: resource {path} does not exist")

    def attestation_policy(self, policy_id: str = ATTESTATION_POLICY_ID) -> str:
        """The attestation policy ``policy_id`` (the packaged default when none was set)."""
        return self._policy("attestation", policy_id, "default_sgx.rego")

    def set_attestation_policy(self, body: bytes) -> None:
        """Set an attestation policy from trustee's ``{"type":"rego","policy_id":..,"policy":"<base64url>"}``."""
        message = _admin_message(body, "attestation policy")
        if message.get("type", "rego") != "rego" or not isinstance(message.get("policy"), str):
            raise KbsError(
                "InvalidRequest", 'attestation policy must be {"type":"rego","policy_id":..,"policy":"<base64url>"}'
            )
        text = _b64url_text(message["policy"])
        rego.evaluate(text, "trust_claims", {}, {}, {})  # refuse a policy that does not compile
        self.storage.set_policy("attestation", str(message.get("policy_id") or ATTESTATION_POLICY_ID), text)

    def resource_policy(self) -> str:
        """The resource policy (the packaged default when none was set)."""
        return self._policy("resource", "default", "default_resource.rego")

    def set_resource_policy(self, body: bytes) -> None:
        """Set the resource policy from trustee's ``{"policy":"<base64url>"}``."""
        message = _admin_message(body, "resource policy")
        if not isinstance(message.get("policy"), str):
            raise KbsError("InvalidRequest", 'resource policy must be {"policy":"<base64url>"}')
        text = _b64url_text(message["policy"])
        rego.evaluate(text, "allow", {}, {"plugin": "resource"})
        self.storage.set_policy("resource", "default", text)

    def reference_value(self, name: str) -> dict[str, list[Any]]:
        """The reference values registered under ``name``."""
        return {name: self.storage.references().get(name, [])}

    def set_reference_values(self, body: bytes) -> None:
        """Register reference values from trustee's sample RVPS message (base64 JSON of names to value lists)."""
        message = _admin_message(body, "reference value message")
        if message.get("type") != "sample" or not isinstance(message.get("payload"), str):
            raise KbsError(
                "InvalidRequest",
                'reference value message must be {"version":"0.1.0","type":'
                '"sample","payload":"<base64 of {name: [values]}>"}',
            )
        try:
            payload = strict_loads(base64.b64decode(message["payload"]))
        except (binascii.Error, ValueError, RecursionError):
            raise KbsError("InvalidRequest", "reference value payload is not base64 JSON") from None
        if not isinstance(payload, dict) or not all(isinstance(v, list) for v in payload.values()):
            raise KbsError("InvalidRequest", "reference value payload must map names to lists of values")
        expires = int(time.time()) + REFERENCE_LIFETIME
        for name, values in payload.items():
            self.storage.set_reference(str(name), values, expires)

    def check_health(self) -> None:
        """Raise when the store does not answer."""
        self.storage.references()


def _already_attested(session: Session, evidence_digest: str) -> tuple[dict[str, Any], Session]:
    """The token of an attested session for the same evidence again; other evidence is refused."""
    if session.evidence_digest == evidence_digest:
        return {"token": session.token}, session
    raise KbsError(
        "AttestationError",
        "Attestation error: this session is already attested with other evidence",
        hint="start a new handshake with /kbs/v0/auth",
    )


def _admin_message(body: bytes, what: str) -> dict[str, Any]:
    """An admin request's JSON object (strict: a key twice, a lone surrogate and the like are refused)."""
    try:
        message = strict_loads(body or b"{}")
    except (UnicodeDecodeError, ValueError) as err:
        raise KbsError("InvalidRequest", f"the {what} is not strict JSON: {err}") from None
    if not isinstance(message, dict):
        raise KbsError("InvalidRequest", f"the {what} must be a JSON object")
    return message


def _is_admin_token(token: str) -> bool:
    """Whether a bearer token is an admin's (EdDSA) rather than an EAR token (only its header is decoded)."""
    try:
        header = json.loads(unb64u(token.split(".", 1)[0], "JWS header"))
    except (JoseError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(header, dict) and header.get("alg") == "EdDSA"


def _b64url_text(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise KbsError("InvalidRequest", "the policy is not base64url-encoded UTF-8") from None


def _init_data(sent: ProtocolInitData | None) -> InitData | None:
    """The init-data of an attestation message (trustee takes only the TOML format)."""
    if sent is None:
        return None
    if sent.format != "toml":
        raise KbsError("AttestationError", f"Attestation error: unsupported init-data format {sent.format!r} (toml is)")
    try:
        return InitData.parse(sent.body, "the attestation's init-data")
    except InitDataError as err:
        raise KbsError("AttestationError", f"Attestation error: {err}", hint=err.hint) from None
