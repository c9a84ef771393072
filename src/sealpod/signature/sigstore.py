"""Sigstore (cosign) signatures with keys: key files, signing, verifying, and the ``sha256-<hex>.sig`` attachment.

Private keys are cosign's encrypted PEM: scrypt (N=32768, r=8, p=1) derives a key that opens a NaCl secretbox
holding the PKCS#8 DER key. sealpod writes ``ENCRYPTED COSIGN PRIVATE KEY`` (which every containers/image and cosign
version reads) and reads that and ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign 2.x, skopeo 1.18).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from sealpod._internal.jsonio import load_object
from sealpod.errors import KeyFileError, ManifestError, NotFoundError, SignatureError
from sealpod.oci import mediatypes as mt
from sealpod.oci.models import Descriptor, Manifest, parse_manifest_or_index

PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PEM_TYPES = ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
MAX_SIGNATURES = 64
MAX_PAYLOAD = 4 * 1024 * 1024

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def attachment_tag(manifest_digest: str) -> str:
    """The tag under which a manifest's signatures live: ``sha256-<hex>.sig``."""
    algorithm, _, hexpart = manifest_digest.partition(":")
    return f"{algorithm}-{hexpart}.sig"


# -- keys ------------------------------------------------------------------------------------------------------


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise KeyFileError(f"cosign key: scrypt parameters N={n} r={r} p={p} are out of bounds")
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=32)


def generate_key_pair(passphrase: bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair: (encrypted private PEM, public PEM), as ``cosign generate-key-pair`` makes."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    import nacl.secret  # only key files need it

    salt, nonce = os.urandom(32), os.urandom(24)
    box = nacl.secret.SecretBox(_scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    body = base64.encodebytes(json.dumps(document, separators=(",", ":")).encode()).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    private_pem = "\n".join([f"-----BEGIN {PEM_TYPES[0]}-----", *lines, f"-----END {PEM_TYPES[0]}-----", ""])
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem.encode(), public_pem


def load_private_key(pem: bytes, passphrase: bytes) -> PrivateKey:
    """Open a cosign/sigstore encrypted private key."""
    import nacl.exceptions
    import nacl.secret

    text = pem.decode(errors="replace").strip()
    kind = next((k for k in PEM_TYPES if text.startswith(f"-----BEGIN {k}-----")), None)
    if kind is None:
        raise KeyFileError(
            "not a cosign private key (expected 'ENCRYPTED COSIGN PRIVATE KEY' or 'ENCRYPTED SIGSTORE PRIVATE KEY' PEM)"
        )
    body = "".join(line for line in text.splitlines()[1:] if not line.startswith("-----"))
    try:
        document = load_object(base64.b64decode(body), "cosign key", 64 * 1024, KeyFileError)
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
            raise KeyFileError(f"cosign key: unsupported kdf/cipher {kdf.get('name')}/{cipher.get('name')}")
        params = kdf["params"]
        secret = _scrypt(
            passphrase, base64.b64decode(kdf["salt"]), int(params["N"]), int(params["r"]), int(params["p"])
        )
        der = nacl.secret.SecretBox(secret).decrypt(
            base64.b64decode(document["ciphertext"]), base64.b64decode(cipher["nonce"])
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as err:
        raise KeyFileError(f"cosign key is malformed: {err}") from None
    except nacl.exceptions.CryptoError:
        raise KeyFileError("cosign key: wrong passphrase") from None
    key = serialization.load_der_private_key(der, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"cosign key holds an unsupported {type(key).__name__}")
    return key


def load_public_key(pem: bytes) -> PublicKey:
    """A verification key (PEM or DER SubjectPublicKeyInfo)."""
    try:
        key = (
            serialization.load_pem_public_key(pem)
            if pem.strip().startswith(b"-----")
            else serialization.load_der_public_key(pem)
        )
    except ValueError as err:
        raise KeyFileError(f"not a public key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyFileError(f"unsupported {type(key).__name__} verification key")
    return key


def _ecdsa(curve: ec.EllipticCurve) -> ec.ECDSA:
    """ECDSA with the hash cosign pairs with the curve (SHA-256 for P-256, SHA-384 for P-384, SHA-512 above)."""
    size = curve.key_size
    return ec.ECDSA(hashes.SHA384() if size == 384 else hashes.SHA512() if size > 384 else hashes.SHA256())


def sign(key: PrivateKey, payload: bytes) -> bytes:
    """The raw signature over ``payload`` (DER ECDSA with SHA-256 for P-256, as cosign)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, _ecdsa(key.curve))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(payload)


def verify(key: PublicKey, payload: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over ``payload``."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, _ecdsa(key.curve))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


# -- attachments -----------------------------------------------------------------------------------------------


class AttachmentStore(Protocol):
    """A repository's manifests and blobs (an ``oci.source.ImageStore`` satisfies this)."""

    def get_manifest(self, selector: str | None) -> Any: ...

    def get_blob(self, descriptor: Descriptor, limit: int) -> bytes: ...

    def has_blob(self, digest: str) -> bool: ...

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes]) -> None: ...

    def put_manifest_as(self, raw: bytes, media_type: str, reference: str) -> str: ...


@dataclass(frozen=True, slots=True)
class AttachedSignature:
    """One signature layer: the payload bytes and the raw signature."""

    payload: bytes
    signature: bytes


def read_attachment(
    store: AttachmentStore, manifest_digest: str, selector: str | None = None
) -> tuple[Manifest | None, list[AttachedSignature]]:
    """The signatures attached to ``manifest_digest`` (none when the ``.sig`` tag does not exist); ``selector`` reads
    the attachment manifest from another tag or digest instead."""
    try:
        fetched = store.get_manifest(selector or attachment_tag(manifest_digest))
    except NotFoundError:
        return None, []
    try:
        manifest = parse_manifest_or_index(fetched.raw, fetched.media_type, "signature attachment")
    except ManifestError as err:
        raise SignatureError(f"the signature attachment of {manifest_digest} is malformed: {err}") from None
    if not isinstance(manifest, Manifest):
        raise SignatureError(f"the signature attachment of {manifest_digest} is an index, not a manifest")
    out = []
    for layer in manifest.layers[:MAX_SIGNATURES]:
        if layer.media_type != PAYLOAD_MEDIA_TYPE:
            continue
        encoded = (layer.annotations or {}).get(SIGNATURE_ANNOTATION)
        if not encoded:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        out.append(AttachedSignature(store.get_blob(layer, MAX_PAYLOAD), signature))
    return manifest, out


def write_attachment(store: AttachmentStore, manifest_digest: str, payload: bytes, signature: bytes) -> str:
    """Append a signature to ``manifest_digest``'s attachment (creating it), as containers/image writes it."""
    existing, _ = read_attachment(store, manifest_digest)
    layers = [layer.to_json_dict() for layer in existing.layers] if existing else []
    payload_digest = f"sha256:{hashlib.sha256(payload).hexdigest()}"
    if not store.has_blob(payload_digest):
        store.put_blob(
            Descriptor(media_type=PAYLOAD_MEDIA_TYPE, digest=payload_digest, size=len(payload)), iter([payload])
        )
    layers.append(
        {
            "mediaType": PAYLOAD_MEDIA_TYPE,
            "digest": payload_digest,
            "size": len(payload),
            "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
        }
    )
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        },
        separators=(",", ":"),
    ).encode()
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    if not store.has_blob(config_digest):
        store.put_blob(Descriptor(media_type=mt.OCI_CONFIG, digest=config_digest, size=len(config)), iter([config]))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    return store.put_manifest_as(manifest, mt.OCI_MANIFEST, attachment_tag(manifest_digest))
