"""Sealing: data only this enclave identity (MRENCLAVE) on this platform can open again.

The sealing key comes from the TEE (Gramine's ``/dev/attestation/keys/_sgx_mrenclave`` on SGX, the simulated
platform's derivation in sim); a sealed blob is AES-256-GCM under a key derived from it for one purpose, with the
purpose and a label bound as associated data.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealpod.errors import SealpodError
from sealpod.tee import Attester
from sealpod.tee.sgx import GramineAttester
from sealpod.tee.sim import SimAttester

MAGIC = b"sealpod-sealed-v1\0"


def sealing_key(attester: Attester) -> bytes:
    """The TEE's MRENCLAVE-bound sealing key for the running enclave."""
    if isinstance(attester, SimAttester):
        return attester.platform.sealing_key(attester.mr_enclave, attester.mr_signer)
    if isinstance(attester, GramineAttester):
        path = attester.root / "keys" / "_sgx_mrenclave"
        try:
            return path.read_bytes()
        except OSError as err:
            raise SealpodError(f"cannot read the sealing key {path}: {err.strerror}") from None
    raise SealpodError(f"no sealing key on this TEE ({type(attester).__name__})", hint="use --rootfs memory")


def _key(root: bytes, purpose: str) -> AESGCM:
    derived = HKDF(hashes.SHA256(), 32, salt=None, info=b"sealpod seal " + purpose.encode()).derive(root)
    return AESGCM(derived)


def seal(root: bytes, purpose: str, label: str, data: bytes) -> bytes:
    """Encrypt ``data`` for this enclave identity."""
    nonce = os.urandom(12)
    return MAGIC + nonce + _key(root, purpose).encrypt(nonce, data, label.encode())


def unseal(root: bytes, purpose: str, label: str, blob: bytes) -> bytes:
    """Open a sealed blob; a different enclave, platform, purpose or label, or any changed byte, is refused."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12 + 16:
        raise SealpodError(f"sealed {purpose} for {label} is malformed")
    nonce, body = blob[len(MAGIC) : len(MAGIC) + 12], blob[len(MAGIC) + 12 :]
    try:
        return _key(root, purpose).decrypt(nonce, body, label.encode())
    except InvalidTag:
        raise SealpodError(
            f"sealed {purpose} for {label} does not open:"
            " another enclave build or platform sealed it, or it was altered"
        ) from None
