"""The KBS HTTP API (trustee protocol 0.4.0) as an ASGI app: RCAR handshake, resources, policies, reference values,
health and Prometheus metrics. State lives in the configured store, so any number of processes can serve one
client's steps interchangeably."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sealpod.attestation import default_policies, ear, rego
from sealpod.attestation.service import AttestationService, AttestationSettings
from sealpod.attestation.sgx.collateral import Collateral
from sealpod.errors import AttestationError, SealpodError
from sealpod.jose import JoseError, compact_json, key_from_jwk, unb64u
from sealpod.kbs import resource_jwe
from sealpod.kbs.admin import AdminAuth
from sealpod.kbs.admin_data import AdminData, AdminView
from sealpod.kbs.caches import IssuedTokens, SessionCache
from sealpod.kbs.challenges import TEES, ChallengeError, Challenges
from sealpod.kbs.config import KbsConfig, load_config
from sealpod.kbs.fast_asgi import FastRcar, error_body
from sealpod.kbs.group_commit import Appraised, GroupCommit
from sealpod.kbs.protocol import (
    PROTOCOL_VERSION,
    SESSION_COOKIE,
    Attestation,
    KbsError,
    check_resource_path,
    parse_message,
    report_data,
)
from sealpod.kbs.protocol import (
    Request as AuthRequest,
)
from sealpod.kbs.storage import Session, Storage, new_session_id
from sealpod.keyfiles import load_or_create_key

log = logging.getLogger(__name__)
CONFIG_ENV = "SEALPOD_KBS_CONFIG"
ATTESTATION_POLICY_ID = "default_cpu"
REFERENCE_LIFETIME = 365 * 24 * 3600


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_or_create_key(path, lambda: ec.generate_private_key(ec.SECP256R1()))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SealpodError(f"{path} is not an EC private key")
    return key


class CollateralProvider:
    """Collateral for a quote: the sim platform's (when allowed), a directory of QVL JSON files, or a PCCS."""

    def __init__(self, config: KbsConfig) -> None:
        self.config = config.attestation
        self._sim: tuple[float, Collateral] | None = None
        self._pcs: Any = None

    def __call__(self, fmspc: bytes, ca: str) -> Collateral:
        from sealpod.tee.sim import SIM_FMSPC, SimPlatform

        if self.config.allow_sim and fmspc == SIM_FMSPC:
            if self._sim is None or time.time() - self._sim[0] > 3600:
                self._sim = (time.time(), SimPlatform.load(self.config.sim_dir).collateral())
            return self._sim[1]
        if self.config.collateral_dir is not None:
            path = self.config.collateral_dir / f"{fmspc.hex().upper()}_{ca}.json"
            if path.exists():
                return Collateral.from_qvl_json(path.read_bytes())
        if self.config.pccs_url:
            from sealpod.attestation.sgx.pcs import PcsClient
            from sealpod.config import state_dir

            if self._pcs is None:
                self._pcs = PcsClient(self.config.pccs_url, state_dir() / "pcs-cache")
            collateral: Collateral = self._pcs.collateral(fmspc, ca)
            return collateral
        raise AttestationError(
            f"no collateral for FMSPC {fmspc.hex().upper()} ({ca} CA)",
            hint="configure attestation.pccs_url or attestation.collateral_dir",
        )


class Kbs:
    """The service: configuration, store, attestation service, admin auth, counters."""

    def __init__(self, config: KbsConfig) -> None:
        self.config = config
        self.storage = Storage(config.storage_url())
        self.storage.start_maintenance()
        self.signing_key = _load_or_create_key(config.signing_key_path())
        sim_roots = []
        if config.attestation.allow_sim:
            from sealpod.tee.sim import SimPlatform

            sim_roots.append(SimPlatform.load(config.attestation.sim_dir).root)
        settings = AttestationSettings(
            allow_sim=config.attestation.allow_sim,
            sim_roots=sim_roots,
            allow_sample=config.attestation.allow_sample,
            allow_debug=config.attestation.allow_debug,
            acceptable_tcb_statuses=tuple(config.attestation.acceptable_tcb_statuses),
            token_lifetime=config.attestation.token_lifetime,
        )
        self.attestation = AttestationService(settings, self.signing_key, CollateralProvider(config))
        self.admin = AdminAuth(config.admin)
        self.counters: Counter[str] = Counter()
        #: The other workers' counters (set by ``--workers``), which /metrics adds to this process's.
        self.peer_counters: Callable[[], Counter[str]] | None = None
        self.sessions = SessionCache()
        self.challenges = Challenges(self.storage.shared_key("session-nonce"))
        self.admin_data = AdminData(self.storage)
        self.issued = IssuedTokens()
        self.group_commit = GroupCommit(self.storage, self.counters)

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

    def _admin(self, request: Request) -> str:
        return self.admin.check(request.headers.get("Authorization"), f"{request.method} {request.url.path}")

    async def _body(self, request: Request) -> bytes:
        body = await request.body()
        if len(body) > self.config.http.max_body_bytes:
            raise KbsError("InvalidRequest", f"request body over {self.config.http.max_body_bytes} bytes", status=413)
        return body

    # -- RCAR (plain values in and out: the Starlette routes and the raw ASGI fast path share these) ---------------

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
                init_data=message.init_data.model_dump() if message.init_data else None,
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
        self, path: str, endpoint: str, authorization: str | None, session_id: str | None, query: dict[str, str]
    ) -> dict[str, str] | bytes:
        """GET a resource: the plain bytes for an admin, else a JWE to the TEE's key when the token and the
        resource policy allow. ``session_id`` is None without a session cookie; ``endpoint`` is ``GET /path``."""
        authorization = authorization or ""
        anonymous = not authorization and session_id is None
        bearer = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        if (anonymous and self.admin.insecure) or (
            bearer is not None and self.issued.get(bearer) is None and _is_admin_token(bearer)
        ):
            self.admin.check(authorization or None, endpoint)
            stored = self.storage.get_resource(path)
            if stored is None:
                raise KbsError("PluginInternalError", f"Plugin internal error: resource {path} does not exist")
            return stored
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

    # -- Starlette endpoints ------------------------------------------------------------------------------------

    async def resource(self, request: Request) -> Response:
        p = request.path_params
        path = check_resource_path(p["repository"], p["type"], p["tag"])
        if request.method in ("POST", "DELETE"):
            self._admin(request)
            if request.method == "POST":
                self.storage.put_resource(path, await self._body(request))
            elif not self.storage.delete_resource(path):
                raise KbsError("PluginInternalError", f"Plugin internal error: resource {path} does not exist")
            return Response(status_code=200)
        released = self.release_resource(
            path,
            f"{request.method} {request.url.path}",
            request.headers.get("Authorization"),
            request.cookies.get(SESSION_COOKIE),
            dict(request.query_params),
        )
        if isinstance(released, bytes):
            return Response(released, media_type="application/octet-stream")
        return JSONResponse(released)

    # -- admin -------------------------------------------------------------------------------------------------

    async def attestation_policy(self, request: Request) -> Response:
        self._admin(request)
        if request.method == "GET":
            policy_id = request.path_params.get("policy_id", ATTESTATION_POLICY_ID)
            return PlainTextResponse(self._policy("attestation", policy_id, "default_sgx.rego"))
        body = json.loads(await self._body(request) or b"{}")
        if body.get("type", "rego") != "rego" or not isinstance(body.get("policy"), str):
            raise KbsError(
                "InvalidRequest", 'attestation policy must be {"type":"rego","policy_id":..,"policy":"<base64url>"}'
            )
        text = _b64url_text(body["policy"])
        rego.evaluate(text, "trust_claims", {}, {}, {})  # refuse a policy that does not compile
        self.storage.set_policy("attestation", str(body.get("policy_id") or ATTESTATION_POLICY_ID), text)
        return Response(status_code=200)

    async def resource_policy(self, request: Request) -> Response:
        self._admin(request)
        if request.method == "GET":
            return PlainTextResponse(self._policy("resource", "default", "default_resource.rego"))
        body = json.loads(await self._body(request) or b"{}")
        if not isinstance(body.get("policy"), str):
            raise KbsError("InvalidRequest", 'resource policy must be {"policy":"<base64url>"}')
        text = _b64url_text(body["policy"])
        rego.evaluate(text, "allow", {}, {"plugin": "resource"})
        self.storage.set_policy("resource", "default", text)
        return Response(status_code=200)

    async def reference_value(self, request: Request) -> Response:
        self._admin(request)
        if request.method == "GET":
            name = request.path_params["name"]
            return JSONResponse({name: self.storage.references().get(name, [])})
        message = json.loads(await self._body(request) or b"{}")
        if message.get("type") != "sample" or not isinstance(message.get("payload"), str):
            raise KbsError(
                "InvalidRequest",
                'reference value message must be {"version":"0.1.0","type":'
                '"sample","payload":"<base64 of {name: [values]}>"}',
            )
        try:
            payload = json.loads(base64.b64decode(message["payload"]))
        except (binascii.Error, ValueError):
            raise KbsError("InvalidRequest", "reference value payload is not base64 JSON") from None
        if not isinstance(payload, dict) or not all(isinstance(v, list) for v in payload.values()):
            raise KbsError("InvalidRequest", "reference value payload must map names to lists of values")
        expires = int(time.time()) + REFERENCE_LIFETIME
        for name, values in payload.items():
            self.storage.set_reference(str(name), values, expires)
        return Response(status_code=200)

    # -- operations --------------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        self.storage.references()
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        totals = self.counters + self.peer_counters() if self.peer_counters is not None else self.counters
        lines = []
        for name, value in sorted(totals.items()):
            lines += [f"# TYPE sealpod_kbs_{name}_total counter", f"sealpod_kbs_{name}_total {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def _already_attested(session: Session, evidence_digest: str) -> tuple[dict[str, Any], Session]:
    """The token of an attested session for the same evidence again; other evidence is refused."""
    if session.evidence_digest == evidence_digest:
        return {"token": session.token}, session
    raise KbsError(
        "AttestationError",
        "Attestation error: this session is already attested with other evidence",
        hint="start a new handshake with /kbs/v0/auth",
    )


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


async def _answered_by_fast_rcar(request: Request) -> Response:
    raise RuntimeError(f"{request.method} {request.url.path} reached Starlette: FastRcar answers it")


def build_app(config: KbsConfig) -> FastRcar:
    """The ASGI app for ``config``: the handshake's requests on the raw fast path, the rest with Starlette."""
    kbs = Kbs(config)

    def handler(method: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            kbs.counters[f"requests_{method.__name__}"] += 1
            try:
                response: Response = await method(request)
                return response
            except SealpodError as err:
                if isinstance(err, KbsError):
                    kbs.counters[f"errors_{err.variant}"] += 1
                status, body = error_body(err)
                return JSONResponse(body, status_code=status)

        return endpoint

    routes = [
        # FastRcar answers POST /auth and /attest before Starlette; these routes give other methods Starlette's 405
        Route("/kbs/v0/auth", _answered_by_fast_rcar, methods=["POST"]),
        Route("/kbs/v0/attest", _answered_by_fast_rcar, methods=["POST"]),
        Route("/kbs/v0/resource/{repository}/{type}/{tag}", handler(kbs.resource), methods=["GET", "POST", "DELETE"]),
        Route("/kbs/v0/attestation-policy", handler(kbs.attestation_policy), methods=["POST", "GET"]),
        Route("/kbs/v0/attestation-policy/{policy_id}", handler(kbs.attestation_policy), methods=["GET"]),
        Route("/kbs/v0/resource-policy", handler(kbs.resource_policy), methods=["POST", "GET"]),
        Route("/kbs/v0/reference-value", handler(kbs.reference_value), methods=["POST"]),
        Route("/kbs/v0/reference-value/{name}", handler(kbs.reference_value), methods=["GET"]),
        Route("/healthz", handler(kbs.healthz), methods=["GET"]),
        Route("/metrics", handler(kbs.metrics), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        error = KbsError("InvalidRequestPath", f"Request path {request.url.path} is invalid")
        return JSONResponse(error.body(), status_code=404)

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.kbs = kbs
    return FastRcar(kbs, app)


def app_from_env() -> FastRcar:
    """uvicorn factory: the config file named by ``$SEALPOD_KBS_CONFIG`` (defaults when unset)."""
    path = os.environ.get(CONFIG_ENV)
    return build_app(load_config(Path(path) if path else None))
