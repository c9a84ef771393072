"""The layer cipher's private and public options and the annotations that carry them, byte for byte as ocicrypt.

Private options (wrapped by the key wrappers):
``{"symkey":"<b64>","digest":"sha256:...","cipheroptions":{"nonce":"<b64>"}}``;
public options (annotation ``org.opencontainers.image.enc.pubopts``):
``{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"<b64>","cipheroptions":{}}``. Go marshals ``[]byte`` as padded
standard base64, compact, in struct field order, which is what these functions write.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from sealpod._internal.jsonio import load_object
from sealpod.errors import CryptoError, ManifestError
from sealpod.oci.digest import validate_digest

CIPHER = "AES_256_CTR_HMAC_SHA256"
KEY_SIZE = 32
NONCE_SIZE = 16
ANNOTATION_KEYS_PREFIX = "org.opencontainers.image.enc.keys."
ANNOTATION_PUBOPTS = "org.opencontainers.image.enc.pubopts"
MAX_OPTIONS_BYTES = 64 * 1024


def b64encode(data: bytes) -> str:
    """Padded standard base64, as Go's encoding/json writes ``[]byte``."""
    return base64.b64encode(data).decode()


def b64decode(text: str, what: str) -> bytes:
    """Decode standard base64 (padded or not), naming ``what`` on failure."""
    if not isinstance(text, str):
        raise CryptoError(f"{what} must be a base64 string, not {type(text).__name__}")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"{what} is not valid base64") from None


def _load(raw: bytes, what: str) -> dict[str, Any]:
    return load_object(raw, what, MAX_OPTIONS_BYTES, CryptoError)


def _cipheroptions(data: dict[str, Any], what: str) -> dict[str, Any]:
    options = data.get("cipheroptions") or {}
    if not isinstance(options, dict):
        raise CryptoError(f"{what}: 'cipheroptions' must be an object")
    return options


@dataclass(frozen=True, slots=True)
class PrivateOptions:
    """The secret part: the layer key, the nonce and the digest of the plaintext (compressed) blob."""

    symkey: bytes
    digest: str
    nonce: bytes

    def to_json(self) -> bytes:
        """The exact bytes ocicrypt marshals."""
        return json.dumps(
            {
                "symkey": b64encode(self.symkey),
                "digest": self.digest,
                "cipheroptions": {"nonce": b64encode(self.nonce)},
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> PrivateOptions:
        """Parse and check sizes; a refusal names the field."""
        what = "private layer options"
        data = _load(raw, what)
        symkey = b64decode(data.get("symkey", ""), f"{what}: 'symkey'")
        if len(symkey) != KEY_SIZE:
            raise CryptoError(f"{what}: 'symkey' is {len(symkey)} bytes, the cipher needs {KEY_SIZE}")
        nonce = b64decode(_cipheroptions(data, what).get("nonce", ""), f"{what}: 'cipheroptions.nonce'")
        if len(nonce) != NONCE_SIZE:
            raise CryptoError(f"{what}: 'cipheroptions.nonce' is {len(nonce)} bytes, the cipher needs {NONCE_SIZE}")
        digest = data.get("digest")
        try:
            validate_digest(digest if isinstance(digest, str) else "")
        except ManifestError:
            raise CryptoError(f"{what}: 'digest' {digest!r} is not a digest") from None
        assert isinstance(digest, str)
        return cls(symkey, digest, nonce)


@dataclass(frozen=True, slots=True)
class PublicOptions:
    """The public part: the cipher's name and the HMAC of the ciphertext."""

    hmac: bytes
    cipher: str = CIPHER

    def to_json(self) -> bytes:
        """The exact bytes ocicrypt marshals."""
        return json.dumps(
            {"cipher": self.cipher, "hmac": b64encode(self.hmac), "cipheroptions": {}}, separators=(",", ":")
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> PublicOptions:
        """Parse; only AES_256_CTR_HMAC_SHA256 is known (as in ocicrypt)."""
        what = "public layer options"
        data = _load(raw, what)
        cipher = data.get("cipher")
        if cipher != CIPHER:
            raise CryptoError(f"{what}: unsupported cipher {cipher!r} (only {CIPHER} is defined)")
        hmac = b64decode(data.get("hmac", ""), f"{what}: 'hmac'")
        if len(hmac) != 32:
            raise CryptoError(f"{what}: 'hmac' is {len(hmac)} bytes, HMAC-SHA256 gives 32")
        return cls(hmac, cipher)


def scheme_annotations(annotations: dict[str, str] | None) -> dict[str, list[bytes]]:
    """The wrapped keys of a layer by scheme (``jwe``, ``provider.NAME``, ...), each value base64-decoded."""
    found: dict[str, list[bytes]] = {}
    for key, value in (annotations or {}).items():
        if key.startswith(ANNOTATION_KEYS_PREFIX):
            scheme = key[len(ANNOTATION_KEYS_PREFIX) :]
            found[scheme] = [b64decode(part, f"annotation {key}") for part in value.split(",") if part]
    return found
