"""Key files for the key wrappers: PEM (PKCS#8, PKCS#1, SEC1, encrypted), DER and JWK, public and private.

``path:pass=SECRET`` (as ``--decryption-key key.pem:pass=...``) gives the passphrase of an encrypted PEM.
ocicrypt refuses SEC1 ``EC PRIVATE KEY`` PEM; sealpod accepts it and says so in the debug log.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealpod.errors import KeyFileError

log = logging.getLogger(__name__)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
MAX_KEY_FILE = 1024 * 1024
_CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A key file reference from the command line: its path and optional passphrase."""

    path: Path
    password: bytes | None = None

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        """``FILE`` or ``FILE:pass=SECRET``."""
        path, sep, rest = text.partition(":pass=")
        return cls(Path(path), rest.encode() if sep else None)


def _b64url_int(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise KeyFileError(f"JWK member {what!r} is missing or not a string")
    try:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")
    except (binascii.Error, ValueError):
        raise KeyFileError(f"JWK member {what!r} is not base64url") from None


def _jwk(data: dict[str, Any], private: bool) -> PrivateKey | PublicKey:
    kty = data.get("kty")
    if kty == "RSA":
        public_numbers = rsa.RSAPublicNumbers(_b64url_int(data.get("e"), "e"), _b64url_int(data.get("n"), "n"))
        if not private:
            return public_numbers.public_key()
        d = _b64url_int(data.get("d"), "d")
        p, q = _b64url_int(data.get("p"), "p"), _b64url_int(data.get("q"), "q")
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public_numbers
        )
        return numbers.private_key()
    if kty == "EC":
        curve = _CURVES.get(str(data.get("crv")))
        if curve is None:
            raise KeyFileError(f"JWK curve {data.get('crv')!r} is not supported (P-256, P-384, P-521 are)")
        point = ec.EllipticCurvePublicNumbers(_b64url_int(data.get("x"), "x"), _b64url_int(data.get("y"), "y"), curve())
        if not private:
            return point.public_key()
        return ec.EllipticCurvePrivateNumbers(_b64url_int(data.get("d"), "d"), point).private_key()
    raise KeyFileError(f"JWK key type {kty!r} is not supported (RSA and EC are)")


def _check_type(key: object, path: str) -> None:
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    ):
        raise KeyFileError(f"{path}: {type(key).__name__} keys cannot wrap layer keys (RSA and EC can)")


def load_private_key(data: bytes, password: bytes | None = None, *, source: str = "key") -> PrivateKey:
    """A private key from PEM (PKCS#8, PKCS#1, SEC1, encrypted), DER or JWK bytes."""
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{source} is larger than {MAX_KEY_FILE} bytes: not a key file")
    stripped = data.strip()
    key: object
    if stripped.startswith(b"{"):
        try:
            jwk = json.loads(stripped)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KeyFileError(f"{source} looks like JSON but is not valid: {err}") from None
        if not isinstance(jwk, dict) or "d" not in jwk:
            raise KeyFileError(f"{source} is a JWK without a private part ('d')")
        key = _jwk(jwk, private=True)
        _check_type(key, source)
        return key  # type: ignore[return-value]
    try:
        if stripped.startswith(b"-----BEGIN"):
            if b"EC PRIVATE KEY" in stripped:
                log.debug("%s is a SEC1 'EC PRIVATE KEY' PEM, which ocicrypt refuses; sealpod accepts it", source)
            key = serialization.load_pem_private_key(stripped, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except TypeError as err:
        if password is None:
            raise KeyFileError(f"{source} is encrypted", hint="give its passphrase as FILE:pass=SECRET") from None
        raise KeyFileError(f"{source}: {err}") from None
    except ValueError as err:
        if password is not None and ("password" in str(err).lower() or "decrypt" in str(err).lower()):
            raise KeyFileError(f"{source}: wrong passphrase") from None
        raise KeyFileError(f"{source} is not a private key in PEM, DER or JWK form: {err}") from None
    _check_type(key, source)
    return key  # type: ignore[return-value]


def load_public_key(data: bytes, *, source: str = "key") -> PublicKey:
    """A public key from PEM (SubjectPublicKeyInfo or PKCS#1), DER or JWK bytes."""
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(f"{source} is larger than {MAX_KEY_FILE} bytes: not a key file")
    stripped = data.strip()
    key: object
    try:
        if stripped.startswith(b"{"):
            jwk = json.loads(stripped)
            if not isinstance(jwk, dict):
                raise KeyFileError(f"{source} is not a JWK object")
            key = _jwk(jwk, private=False)
        elif stripped.startswith(b"-----BEGIN"):
            if b"PRIVATE KEY" in stripped:
                raise KeyFileError(f"{source} holds a private key; encrypt with the public key")
            key = serialization.load_pem_public_key(stripped)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise KeyFileError(f"{source} is not a public key in PEM, DER or JWK form: {err}") from None
    _check_type(key, source)
    return key  # type: ignore[return-value]


def read_key_file(path: Path) -> bytes:
    """The bytes of a key file, with a clear error if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"cannot read key file {path}: {err.strerror}") from None
