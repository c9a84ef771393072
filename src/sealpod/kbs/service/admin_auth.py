"""Admin authentication as trustee does it: ``Authorization: Bearer <JWT>`` signed EdDSA by a configured key, with
a ``role`` claim mapped to the endpoints it may call; or an explicit insecure mode that warns on every call."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sealpod._internal.jose import JoseError, sign_eddsa, verify_jws
from sealpod.kbs.client.protocol import KbsError
from sealpod.kbs.config import AdminConfig

log = logging.getLogger(__name__)
AUDIENCE = "KBS"


class AdminAuth:
    """Decides whether an admin request may proceed."""

    def __init__(self, config: AdminConfig) -> None:
        self.insecure = config.insecure
        self.keys: list[ed25519.Ed25519PublicKey] = []
        for path in config.public_keys:
            key = serialization.load_pem_public_key(Path(path).read_bytes())
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise KbsError("AdminAuthInitialization", f"admin key {path} is not an Ed25519 public key")
            self.keys.append(key)
        self.roles = {role: [re.compile(p) for p in patterns] for role, patterns in config.roles.items()}

    def check(self, authorization: str | None, endpoint: str) -> str:
        """The admin's subject; raise ``AdminAuthAccess`` otherwise. ``endpoint`` is ``METHOD /path``."""
        if self.insecure:
            log.warning("INSECURE admin mode: %s allowed without authentication", endpoint)
            return "insecure"
        if not authorization or not authorization.startswith("Bearer "):
            raise KbsError(
                "AdminAuthAccess",
                f"admin access denied for endpoint {endpoint}: no bearer token",
                hint="mint one with 'sealpod kbs token --key admin.key'",
            )
        token = authorization[len("Bearer ") :]
        claims = None
        for key in self.keys:
            try:
                claims = verify_jws(token, key, ("EdDSA",))
                break
            except JoseError:
                continue
        if claims is None:
            raise KbsError(
                "AdminAuthAccess",
                f"admin access denied for endpoint {endpoint}: the token is not signed by a configured admin key",
            )
        now = int(time.time())
        audience = claims.get("aud")
        if AUDIENCE not in (audience if isinstance(audience, list) else [audience]):
            raise KbsError("AdminAuthAccess", f"admin access denied for endpoint {endpoint}: aud is not {AUDIENCE}")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            raise KbsError("AdminAuthAccess", f"admin access denied for endpoint {endpoint}: the token expired")
        role = claims.get("role")
        patterns = self.roles.get(str(role), [])
        if not any(p.search(endpoint) for p in patterns):
            raise KbsError(
                "AdminAuthAccess", f"admin access denied for endpoint {endpoint}: role {role!r} may not call it"
            )
        return str(claims.get("sub", "admin"))


def mint_token(
    key: ed25519.Ed25519PrivateKey, *, role: str = "admin", subject: str = "admin", lifetime: int = 3600
) -> str:
    """An admin token trustee-style."""
    now = int(time.time())
    return sign_eddsa(
        key,
        {"alg": "EdDSA", "typ": "JWT"},
        {"iss": "sealpod", "sub": subject, "aud": [AUDIENCE], "role": role, "iat": now, "exp": now + lifetime},
    )
