"""JOSE building blocks shared by the KBS (resource JWE, EAR tokens, admin tokens) and the enclave's client:
base64url, JWKs, the ECDH-ES Concat KDF, compact JWS with ES256 and EdDSA."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from sealpod._internal.jsonio import JsonRefusal, strict_loads

CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class JoseError(ValueError):
    """A JOSE object is malformed or does not verify."""


def b64u(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: Any, what: str = "value") -> bytes:
    """Decode base64url (padding optional)."""
    if not isinstance(text, str):
        raise JoseError(f"{what} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JoseError(f"{what} is not base64url") from None


def compact_json(data: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (no spaces), keys in the given order or sorted (orjson; the json module for what orjson
    refuses, such as integers beyond 64 bits)."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode()


def _size(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def public_jwk(
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey, alg: str | None = None
) -> dict[str, str]:
    """A public key as a JWK (coordinates base64url without padding)."""
    jwk: dict[str, str]
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = _size(key.curve)
        jwk = {
            "kty": "EC",
            "crv": CURVE_NAMES[key.curve.name],
            "x": b64u(numbers.x.to_bytes(size, "big")),
            "y": b64u(numbers.y.to_bytes(size, "big")),
        }
    elif isinstance(key, rsa.RSAPublicKey):
        numbers_r = key.public_numbers()
        jwk = {
            "kty": "RSA",
            "n": b64u(numbers_r.n.to_bytes((numbers_r.n.bit_length() + 7) // 8, "big")),
            "e": b64u(numbers_r.e.to_bytes((numbers_r.e.bit_length() + 7) // 8, "big")),
        }
    else:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(key.public_bytes(Encoding.Raw, PublicFormat.Raw))}
    if alg:
        jwk["alg"] = alg
    return jwk


def key_from_jwk(jwk: Any) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    """The public key a JWK describes; refuses unknown types and points off the curve."""
    if not isinstance(jwk, dict):
        raise JoseError("a JWK must be a JSON object")
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            curve = CURVES.get(str(jwk.get("crv")))
            if curve is None:
                raise JoseError(f"unsupported JWK curve {jwk.get('crv')!r} (P-256, P-384, P-521)")
            x, y = unb64u(jwk.get("x"), "jwk.x"), unb64u(jwk.get("y"), "jwk.y")
            if len(x) != _size(curve) or len(y) != _size(curve):
                raise JoseError("JWK coordinates have the wrong length")
            return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve).public_key()
        if kty == "RSA":
            n, e = (
                int.from_bytes(unb64u(jwk.get("n"), "jwk.n"), "big"),
                int.from_bytes(unb64u(jwk.get("e"), "jwk.e"), "big"),
            )
            if n.bit_length() < 2048:
                raise JoseError(f"RSA JWK of {n.bit_length()} bits is too small (2048 at least)")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(unb64u(jwk.get("x"), "jwk.x"))
    except ValueError as err:
        if isinstance(err, JoseError):
            raise
        raise JoseError(f"invalid JWK: {err}") from None
    raise JoseError(f"unsupported JWK key type {kty!r}")


def concat_kdf(shared: bytes, alg: str, length: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """RFC 7518 4.6.2 Concat KDF with SHA-256."""
    other = b"".join(struct.pack(">I", len(x)) + x for x in (alg.encode(), apu, apv)) + struct.pack(">I", length * 8)
    return ConcatKDFHash(hashes.SHA256(), length, other).derive(shared)


def _jws_input(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    return f"{b64u(compact_json(header))}.{b64u(compact_json(payload))}".encode()


def sign_es256(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A compact JWS with ES256 (raw r||s signature)."""
    signing_input = _jws_input(header, payload)
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def sign_eddsa(key: ed25519.Ed25519PrivateKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A compact JWS with EdDSA (Ed25519)."""
    signing_input = _jws_input(header, payload)
    return f"{signing_input.decode()}.{b64u(key.sign(signing_input))}"


def decode_jws(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, payload, signing input and signature of a compact JWS (not verified)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseError("a compact JWS has three dot-separated parts")
    try:
        header, payload = strict_loads(unb64u(parts[0], "JWS header")), strict_loads(unb64u(parts[1], "JWS payload"))
    except JsonRefusal as err:
        raise JoseError(f"JWS header or payload is not strict JSON: {err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JoseError("JWS header or payload is not JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JoseError("JWS header and payload must be JSON objects")
    return header, payload, f"{parts[0]}.{parts[1]}".encode(), unb64u(parts[2], "JWS signature")


def verify_jws(token: str, key: Any, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """The payload of a compact JWS whose ``alg`` is allowed and whose signature ``key`` verifies."""
    header, payload, signing_input, signature = decode_jws(token)
    alg = header.get("alg")
    if alg not in algorithms:
        raise JoseError(f"JWS alg {alg!r} is not allowed here ({', '.join(algorithms)})")
    try:
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                raise JoseError("ES256 signature is not 64 bytes")
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            raise JoseError(f"the key does not fit JWS alg {alg!r}")
    except InvalidSignature:
        raise JoseError("the JWS signature does not verify") from None
    return payload
