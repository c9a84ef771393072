"""The RCAR client that runs in the enclave: attest to a KBS with a TEE's evidence and fetch resources.

Evidence comes from a ``tee`` Attester; the TEE key pair is P-256 by default; the attestation token is cached until
shortly before it expires; a 401 triggers a new handshake; transient failures are retried with backoff.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealpod._internal.http_client import HttpClient, Response, TransportError
from sealpod._internal.jose import JoseError, decode_jws, public_jwk
from sealpod._internal.jsonio import strict_loads
from sealpod._internal.tls import verify_setting
from sealpod.errors import SealpodError
from sealpod.kbs.client import resource_jwe
from sealpod.kbs.client.protocol import PROTOCOL_VERSION, SESSION_COOKIE, check_resource_path, report_data
from sealpod.tee import Attester

#: 401 refusals that a new handshake does not change: the resource policy said no, or the resource does not exist
#: (trustee answers both with 401; only the token's and session's own errors are worth attesting again for)
FINAL_VARIANTS = frozenset({"PolicyDeny", "PluginInternalError"})


class KbsClientError(SealpodError):
    """The KBS refused, or could not be reached."""

    def __init__(
        self, message: str, *, status: int | None = None, variant: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status, self.variant = status, variant


@dataclass(frozen=True, slots=True)
class ResourceUri:
    """``kbs://[host:port]/repo/type/tag``."""

    host: str | None
    path: str

    @classmethod
    def parse(cls, text: str) -> ResourceUri:
        if not text.startswith("kbs://"):
            raise KbsClientError(f"{text!r} is not a kbs:// URI", hint="write kbs:///<repository>/<type>/<tag>")
        host, _, rest = text[len("kbs://") :].partition("/")
        parts = rest.split("/")
        if len(parts) != 3:
            raise KbsClientError(f"{text!r} must name exactly repository/type/tag")
        return cls(host or None, check_resource_path(*parts))


def refusal(status: int, content: bytes, what: str) -> KbsClientError:
    """The client's error for a refusal (trustee's ``{"type": .../<variant>, "detail": ...}`` body, or its text)."""
    text = content.decode("utf-8", "replace")
    try:
        body = strict_loads(content)
        variant = str(body.get("type", "")).rsplit("/", 1)[-1]
        detail = str(body.get("detail", text))
    except (ValueError, AttributeError):
        variant, detail = None, text[:300]
    return KbsClientError(f"KBS refused {what} ({status} {variant}): {detail}", status=status, variant=variant)


class KbsClient:
    """One TEE's client of one KBS."""

    def __init__(
        self,
        url: str,
        attester: Attester,
        *,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        verify_tls: bool = True,
        ca_file: str | None = None,
        ca_pem: str | None = None,
        init_data: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.attester = attester
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.retries = retries
        #: The pod's init-data TOML, sent with the evidence (its digest is the evidence's CONFIGID).
        self.init_data = init_data
        verify = verify_setting(verify_tls or bool(ca_file), ca_file, ca_pem)
        #: Keep-alive connections: the handshake's two POSTs and the resource GETs (the CDH API's hot path).
        self._http = HttpClient(timeout=timeout, verify=verify, follow_redirects=False)
        #: The KBS's session cookies (this client talks to one origin; trustee sets one, kbs-session-id).
        self._cookies: dict[str, str] = {}
        #: One request to the KBS at a time: the API server in the enclave calls from several threads.
        self._lock = threading.RLock()
        self._token: str | None = None
        self._token_exp = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tee_pubkey(self) -> dict[str, Any]:
        """The TEE key as the JWK sent in runtime-data."""
        alg = "ECDH-ES+A256KW" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "RSA-OAEP-256"
        return public_jwk(self.key.public_key(), alg)

    def _session_headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self._cookies.items())} if self._cookies else {}

    def _keep_cookies(self, response: Response) -> None:
        for header in response.headers.get_all("Set-Cookie") or ():
            name, sep, value = header.split(";", 1)[0].partition("=")
            if sep and name.strip():
                self._cookies[name.strip()] = value.strip().strip('"')

    def _post(self, path: str, body: dict[str, Any], what: str) -> Response:
        try:
            response = self._http.post(f"{self.url}{path}", json=body, headers=self._session_headers())
        except TransportError as err:
            raise KbsClientError(
                f"cannot reach the KBS at {self.url}: {err}", hint="check the KBS address and that it is running"
            ) from None
        self._keep_cookies(response)
        if response.status_code != 200:
            raise refusal(response.status_code, response.content, what)
        return response

    def attest(self) -> str:
        """A full handshake (auth, challenge, attest); returns and caches the token."""
        with self._lock:
            return self._attest()

    def _attest(self) -> str:
        self._cookies.clear()
        challenge = self._post(
            "/kbs/v0/auth", {"version": PROTOCOL_VERSION, "tee": self.attester.tee, "extra-params": ""}, "auth"
        ).json()
        nonce = challenge.get("nonce") if isinstance(challenge, dict) else None
        if not isinstance(nonce, str):
            raise KbsClientError("the KBS's challenge has no nonce")
        jwk = self.tee_pubkey()
        evidence = self.attester.evidence(report_data(nonce, jwk, ""))
        primary: Any = (
            {"quote": base64.b64encode(evidence).decode()} if self.attester.tee == "sgx" else json.loads(evidence)
        )
        body: dict[str, Any] = {
            "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": primary, "additional_evidence": ""},
        }
        if self.init_data is not None:
            body["init-data"] = {"format": "toml", "body": self.init_data}
        token = self._post("/kbs/v0/attest", body, "attestation").json().get("token")
        if not isinstance(token, str):
            raise KbsClientError("the KBS answered attest without a token")
        try:
            claims = decode_jws(token)[1]
        except JoseError as err:
            raise KbsClientError(f"the KBS's token is malformed: {err}") from None
        self._token, self._token_exp = token, int(claims.get("exp", 0))
        return token

    def get_resource(self, resource: str) -> bytes:
        """A resource's plaintext, by ``kbs:///repo/type/tag`` or ``repo/type/tag`` (thread-safe)."""
        with self._lock:
            return self._get_resource(resource)

    def _get_resource(self, resource: str) -> bytes:
        path = (
            ResourceUri.parse(resource).path
            if resource.startswith("kbs://")
            else check_resource_path(*resource.split("/", 2))
        )
        last: KbsClientError | None = None
        for attempt in range(self.retries):
            if self._token is None or self._token_exp - 10 < time.time():
                self._attest()
            try:
                response = self._http.get(
                    f"{self.url}/kbs/v0/resource/{path}", headers={"Authorization": f"Bearer {self._token}"}
                )
                status, body = response.status_code, response.content
            except TransportError as err:
                last = KbsClientError(f"cannot reach the KBS at {self.url}: {err}")
                time.sleep(min(0.2 * 2**attempt, 2.0) * (0.5 + random.random()))  # noqa: S311 - jitter
                continue
            if status == 200:
                try:
                    return resource_jwe.decrypt(strict_loads(body), self.key)
                except (JoseError, ValueError) as err:
                    raise KbsClientError(
                        f"the resource {path} does not decrypt: {err}",
                        hint="the response was altered, or was not made for this TEE key",
                    ) from None
            last = refusal(status, body, f"resource {path}")
            if status != 401 or last.variant in FINAL_VARIANTS:
                raise last
            self._token = None  # expired or unknown token or session: a new handshake
        assert last is not None
        raise last

    def session_cookie(self) -> str | None:
        """The current session cookie (for tests and diagnostics)."""
        return self._cookies.get(SESSION_COOKIE)
