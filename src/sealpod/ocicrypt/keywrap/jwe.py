"""The ``jwe`` key wrapper: RFC 7516 JSON serialisation as go-jose writes it for ocicrypt.

Wrapping: content ``A256GCM``; RSA keys get ``RSA-OAEP`` (SHA-1, ocicrypt's default) unless a JWK asks for
``RSA-OAEP-256``; EC keys get ``ECDH-ES+A256KW``. One recipient gives the flattened form (its header inside the
protected header); several give the general form with ``recipients[].header`` (and, as go-jose does, a top-level
``encrypted_key`` repeating recipient 0's, which readers ignore). Unwrapping accepts RSA-OAEP, RSA-OAEP-256 and
ECDH-ES+A128KW/A192KW/A256KW, and content encryption A128/192/256GCM and A128CBC-HS256/A192CBC-HS384/A256CBC-HS512.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from sealpod._internal.jose import b64u, concat_kdf
from sealpod._internal.jsonio import load_object
from sealpod.errors import CryptoError
from sealpod.ocicrypt.keys import PrivateKey, PublicKey

SCHEME = "jwe"
MAX_JWE_BYTES = 1024 * 1024
_RSA_ALGS = {"RSA-OAEP": hashes.SHA1, "RSA-OAEP-256": hashes.SHA256}
_ECDH_ALGS = {"ECDH-ES+A128KW": 16, "ECDH-ES+A192KW": 24, "ECDH-ES+A256KW": 32}
_GCM = {"A128GCM": 16, "A192GCM": 24, "A256GCM": 32}
_CBC_HS = {
    "A128CBC-HS256": (32, hashlib.sha256),
    "A192CBC-HS384": (48, hashlib.sha384),
    "A256CBC-HS512": (64, hashlib.sha512),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CURVES = {v: k for k, v in _CURVE_NAMES.items()}


def _unb64u(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise CryptoError(f"JWE member {what!r} is missing or not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CryptoError(f"JWE member {what!r} is not base64url") from None


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class JweRecipient:
    """A public key and the key-management algorithm to use for it (None: the default for its type)."""

    key: PublicKey
    alg: str | None = None

    def algorithm(self) -> str:
        """The ``alg`` header value."""
        if isinstance(self.key, rsa.RSAPublicKey):
            alg = self.alg or "RSA-OAEP"
            if alg not in _RSA_ALGS:
                raise CryptoError(f"JWE alg {alg!r} cannot be used with an RSA key (RSA-OAEP, RSA-OAEP-256 can)")
            return alg
        alg = self.alg or "ECDH-ES+A256KW"
        if alg not in _ECDH_ALGS:
            raise CryptoError(f"JWE alg {alg!r} cannot be used with an EC key (ECDH-ES+A*KW can)")
        return alg


def _epk_json(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {
        "kty": "EC",
        "crv": _CURVE_NAMES[key.curve.name],
        "x": b64u(numbers.x.to_bytes(size, "big")),
        "y": b64u(numbers.y.to_bytes(size, "big")),
    }


def _wrap_cek(recipient: JweRecipient, cek: bytes) -> tuple[dict[str, Any], bytes]:
    alg = recipient.algorithm()
    key = recipient.key
    if isinstance(key, rsa.RSAPublicKey):
        digest = _RSA_ALGS[alg]()
        encrypted = key.encrypt(cek, asym_padding.OAEP(asym_padding.MGF1(digest), digest, None))
        return {"alg": alg}, encrypted
    ephemeral = ec.generate_private_key(key.curve)
    kek = concat_kdf(ephemeral.exchange(ec.ECDH(), key), alg, _ECDH_ALGS[alg], b"", b"")
    return {"alg": alg, "epk": _epk_json(ephemeral.public_key())}, aes_key_wrap(kek, cek)


def wrap(plaintext: bytes, recipients: list[JweRecipient]) -> bytes:
    """Encrypt ``plaintext`` (the private options) to every recipient; the JWE JSON bytes."""
    if not recipients:
        raise CryptoError("JWE wrapping needs at least one recipient")
    cek, iv = os.urandom(32), os.urandom(12)
    wrapped = [_wrap_cek(r, cek) for r in recipients]
    if len(wrapped) == 1:
        protected = b64u(_dumps({**wrapped[0][0], "enc": "A256GCM"}))
    else:
        protected = b64u(_dumps({"enc": "A256GCM"}))
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    ciphertext, tag = sealed[:-16], sealed[-16:]
    document: dict[str, Any] = {"protected": protected}
    if len(wrapped) > 1:
        document["recipients"] = [{"header": header, "encrypted_key": b64u(ek)} for header, ek in wrapped]
    document["encrypted_key"] = b64u(wrapped[0][1])
    document.update({"iv": b64u(iv), "ciphertext": b64u(ciphertext), "tag": b64u(tag)})
    return _dumps(document)


@dataclass(frozen=True, slots=True)
class _Recipient:
    header: dict[str, Any]
    encrypted_key: bytes

    def describe(self) -> str:
        alg = self.header.get("alg", "?")
        text = str(alg)
        epk = self.header.get("epk")
        if isinstance(epk, dict) and "crv" in epk:
            text += f" on {epk['crv']}"
        if "kid" in self.header:
            text += f" (kid {self.header['kid']})"
        return text


def _parse(raw: bytes) -> tuple[dict[str, Any], str, list[_Recipient]]:
    document = load_object(raw, "JWE", MAX_JWE_BYTES, CryptoError)
    protected_b64 = document.get("protected", "")
    if not isinstance(protected_b64, str):
        raise CryptoError("JWE member 'protected' is not a string")
    try:
        protected = json.loads(_unb64u(protected_b64, "protected")) if protected_b64 else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CryptoError("JWE protected header is not JSON") from None
    shared = document.get("unprotected") or {}
    if not isinstance(protected, dict) or not isinstance(shared, dict):
        raise CryptoError("JWE headers must be JSON objects")
    entries = document.get("recipients")
    if entries is None:
        entries = [{"header": document.get("header") or {}, "encrypted_key": document.get("encrypted_key", "")}]
    if not isinstance(entries, list) or not entries:
        raise CryptoError("JWE 'recipients' must be a non-empty list")
    recipients = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("header", {}), dict):
            raise CryptoError(f"JWE recipient {index} is malformed")
        header = {**protected, **shared, **entry.get("header", {})}
        recipients.append(_Recipient(header, _unb64u(entry.get("encrypted_key", ""), "encrypted_key")))
    return document, protected_b64, recipients


def describe(raw: bytes) -> list[str]:
    """A short description of each recipient of a JWE (for messages)."""
    return [r.describe() for r in _parse(raw)[2]]


def _unwrap_cek(recipient: _Recipient, key: PrivateKey) -> bytes | None:
    alg = recipient.header.get("alg")
    if alg in _RSA_ALGS and isinstance(key, rsa.RSAPrivateKey):
        digest = _RSA_ALGS[str(alg)]()
        try:
            return key.decrypt(recipient.encrypted_key, asym_padding.OAEP(asym_padding.MGF1(digest), digest, None))
        except ValueError:
            return None
    if alg in _ECDH_ALGS and isinstance(key, ec.EllipticCurvePrivateKey):
        epk = recipient.header.get("epk")
        if not isinstance(epk, dict) or _CURVES.get(str(epk.get("crv"))) != key.curve.name:
            return None
        try:
            point = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_unb64u(epk.get("x"), "epk.x"), "big"),
                int.from_bytes(_unb64u(epk.get("y"), "epk.y"), "big"),
                key.curve,
            ).public_key()
        except ValueError:
            raise CryptoError("JWE ephemeral key is not a point on its curve") from None
        apu = _unb64u(recipient.header["apu"], "apu") if "apu" in recipient.header else b""
        apv = _unb64u(recipient.header["apv"], "apv") if "apv" in recipient.header else b""
        kek = concat_kdf(key.exchange(ec.ECDH(), point), str(alg), _ECDH_ALGS[str(alg)], apu, apv)
        try:
            return aes_key_unwrap(kek, recipient.encrypted_key)
        except InvalidUnwrap:
            return None
    return None


def _decrypt_content(enc: str, cek: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
    try:
        if enc in _GCM:
            if len(cek) != _GCM[enc]:
                raise CryptoError(f"JWE content key has the wrong size for {enc}")
            return AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
        if enc in _CBC_HS:
            size, digest = _CBC_HS[enc]
            if len(cek) != size:
                raise CryptoError(f"JWE content key has the wrong size for {enc}")
            mac_key, enc_key = cek[: size // 2], cek[size // 2 :]
            expected = hmac.new(mac_key, aad + iv + ciphertext + struct.pack(">Q", len(aad) * 8), digest).digest()
            if not hmac.compare_digest(expected[: size // 2], tag):
                raise InvalidTag()
            decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
            padded = decryptor.update(ciphertext) + decryptor.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(padded) + unpadder.finalize()
    except (InvalidTag, ValueError):
        raise CryptoError("JWE content does not authenticate: the wrapped key was altered") from None
    raise CryptoError(f"unsupported JWE content encryption {enc!r}")


def unwrap(raw: bytes, keys: list[PrivateKey]) -> bytes | None:
    """The plaintext if one of ``keys`` opens one of the JWE's recipients, else None.

    Refuses (raises) a malformed JWE, a JWE whose recipients all use unsupported algorithms, and content that does
    not authenticate.
    """
    document, protected_b64, recipients = _parse(raw)
    unknown = sorted(
        {
            str(r.header.get("alg"))
            for r in recipients
            if r.header.get("alg") not in _RSA_ALGS and r.header.get("alg") not in _ECDH_ALGS
        }
    )
    if len(unknown) == len({str(r.header.get("alg")) for r in recipients}):
        raise CryptoError(
            f"unsupported JWE key management algorithm {', '.join(unknown)}",
            hint="sealpod unwraps RSA-OAEP, RSA-OAEP-256 and ECDH-ES+A128KW/A192KW/A256KW",
        )
    for recipient in recipients:
        for key in keys:
            cek = _unwrap_cek(recipient, key)
            if cek is None:
                continue
            enc = recipient.header.get("enc")
            if not isinstance(enc, str):
                raise CryptoError("JWE has no 'enc' header")
            aad = protected_b64.encode()
            if "aad" in document:
                aad += b"." + str(document["aad"]).encode()
            return _decrypt_content(
                enc,
                cek,
                _unb64u(document.get("iv"), "iv"),
                _unb64u(document.get("ciphertext"), "ciphertext"),
                _unb64u(document.get("tag"), "tag"),
                aad,
            )
    return None
