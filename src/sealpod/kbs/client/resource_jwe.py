"""The KBS's encrypted resource response: a flattened JWE to the TEE's key (ECDH-ES+A256KW on P-256/P-384/P-521,
or RSA-OAEP-256), A256GCM, protected header ``alg`` first, then ``enc``, then the rest in sorted order."""

from __future__ import annotations

import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from sealpod._internal.jose import JoseError, b64u, compact_json, concat_kdf, key_from_jwk, public_jwk, unb64u
from sealpod._internal.jsonio import strict_loads

ECDH_ALG = "ECDH-ES+A256KW"
RSA_ALG = "RSA-OAEP-256"
_OAEP = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


def protected_header(alg: str, **rest: Any) -> bytes:
    """``{"alg":..,"enc":"A256GCM",<rest sorted>}`` compact."""
    header: dict[str, Any] = {"alg": alg, "enc": "A256GCM"}
    for key in sorted(rest):
        value = rest[key]
        header[key] = dict(sorted(value.items())) if isinstance(value, dict) else value
    return compact_json(header)


def encrypt(plaintext: bytes, tee_pubkey: dict[str, Any]) -> dict[str, str]:
    """Encrypt ``plaintext`` to the TEE's JWK."""
    return encrypt_to_key(plaintext, key_from_jwk(tee_pubkey))


def encrypt_to_key(plaintext: bytes, key: Any) -> dict[str, str]:
    """Encrypt ``plaintext`` to the TEE's public key (EC or RSA)."""
    cek = os.urandom(32)
    if isinstance(key, ec.EllipticCurvePublicKey):
        ephemeral = ec.generate_private_key(key.curve)
        kek = concat_kdf(ephemeral.exchange(ec.ECDH(), key), ECDH_ALG, 32)
        header = protected_header(ECDH_ALG, epk=public_jwk(ephemeral.public_key()))
        encrypted_key = aes_key_wrap(kek, cek)
    elif isinstance(key, rsa.RSAPublicKey):
        header = protected_header(RSA_ALG)
        encrypted_key = key.encrypt(cek, _OAEP)
    else:
        raise JoseError("the tee-pubkey must be an EC (P-256/384/521) or RSA key")
    protected = b64u(header)
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return {
        "protected": protected,
        "encrypted_key": b64u(encrypted_key),
        "iv": b64u(iv),
        "ciphertext": b64u(sealed[:-16]),
        "tag": b64u(sealed[-16:]),
    }


def decrypt(jwe: dict[str, Any], private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """Open a resource response with the TEE's private key (the client side)."""
    try:
        header = strict_loads(unb64u(jwe.get("protected"), "protected"))
    except (UnicodeDecodeError, ValueError):
        raise JoseError("the JWE protected header is not JSON") from None
    if not isinstance(header, dict) or header.get("enc") != "A256GCM":
        raise JoseError(
            f"unsupported JWE content encryption {header.get('enc') if isinstance(header, dict) else None!r}"
        )
    encrypted_key = unb64u(jwe.get("encrypted_key"), "encrypted_key")
    try:
        if header.get("alg") == ECDH_ALG and isinstance(private_key, ec.EllipticCurvePrivateKey):
            epk = key_from_jwk(header.get("epk"))
            if not isinstance(epk, ec.EllipticCurvePublicKey) or epk.curve.name != private_key.curve.name:
                raise JoseError("the JWE's ephemeral key is not on the TEE key's curve")
            cek = aes_key_unwrap(concat_kdf(private_key.exchange(ec.ECDH(), epk), ECDH_ALG, 32), encrypted_key)
        elif header.get("alg") == RSA_ALG and isinstance(private_key, rsa.RSAPrivateKey):
            cek = private_key.decrypt(encrypted_key, _OAEP)
        else:
            raise JoseError(f"JWE alg {header.get('alg')!r} does not fit the TEE key")
        return AESGCM(cek).decrypt(
            unb64u(jwe.get("iv"), "iv"),
            unb64u(jwe.get("ciphertext"), "ciphertext") + unb64u(jwe.get("tag"), "tag"),
            str(jwe.get("protected")).encode(),
        )
    except (InvalidTag, InvalidUnwrap, ValueError) as err:
        if isinstance(err, JoseError):
            raise
        raise JoseError("the resource JWE does not decrypt (tampered, or not for this key)") from None
