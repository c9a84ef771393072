"""Sealed secrets (confidential-data-hub's format): ``sealed.`` + a compact JWS whose payload names where the secret
is. Unsealed through the KBS: the JWS is verified with the public key its ``kid`` names (a KBS resource), then a
``vault`` secret with provider ``kbs`` is fetched from the resource it names."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.jose import JoseError, decode_jws, key_from_jwk, sign_es256, verify_jws
from sealpod.errors import SealpodError
from sealpod.kbs.client.rcar import KbsClient

PREFIX = "sealed."


class SealedSecretError(SealpodError):
    """A sealed secret is malformed, not validly signed, or of an unsupported kind."""


def _public_key(data: bytes) -> Any:
    text = data.strip()
    try:
        if text.startswith(b"{"):
            import json

            return key_from_jwk(json.loads(text))
        return serialization.load_pem_public_key(text)
    except (ValueError, JoseError) as err:
        raise SealedSecretError(f"the sealed secret's verification key is unusable: {err}") from None


def unseal(sealed: str, client: KbsClient) -> bytes:
    """The secret behind ``sealed.<JWS>``."""
    if not sealed.startswith(PREFIX):
        raise SealedSecretError("a sealed secret starts with 'sealed.'")
    token = sealed[len(PREFIX) :]
    try:
        header, payload, _, _ = decode_jws(token)
    except JoseError as err:
        raise SealedSecretError(f"the sealed secret is not a compact JWS: {err}") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid.startswith("kbs://"):
        raise SealedSecretError("the sealed secret's header has no kbs:// 'kid' naming its verification key")
    key = _public_key(client.get_resource(kid))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SealedSecretError("the sealed secret's verification key is not an EC key (ES256)")
    try:
        payload = verify_jws(token, key, ("ES256",))
    except JoseError as err:
        raise SealedSecretError(f"the sealed secret's signature does not verify: {err}") from None
    if payload.get("version") != "0.1.0":
        raise SealedSecretError(f"unsupported sealed secret version {payload.get('version')!r}")
    if payload.get("type") == "vault" and payload.get("provider") == "kbs":
        name = payload.get("name")
        if not isinstance(name, str):
            raise SealedSecretError("a vault secret names its resource in 'name'")
        return client.get_resource(name)
    raise SealedSecretError(
        f"sealed secrets of type {payload.get('type')!r} from provider {payload.get('provider')!r} are not supported",
        hint="sealpod unseals 'vault' secrets held by the KBS",
    )


def seal(resource: str, signing_key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    """The tenant's side: a ``sealed.<JWS>`` naming the KBS resource ``resource`` (a ``vault`` secret), signed ES256
    by ``signing_key`` whose public key the KBS holds at ``kid`` (both ``kbs:///repository/type/tag``)."""
    for what, uri in (("resource", resource), ("kid", kid)):
        if not uri.startswith("kbs:///"):
            raise SealedSecretError(f"the sealed secret's {what} must be a kbs:/// resource URI, not {uri!r}")
    payload = {
        "version": "0.1.0",
        "type": "vault",
        "name": resource,
        "provider": "kbs",
        "provider_settings": {},
        "annotations": {},
    }
    return PREFIX + sign_es256(signing_key, {"alg": "ES256", "kid": kid}, payload)
