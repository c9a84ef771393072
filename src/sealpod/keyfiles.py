"""Private keys sealpod makes for itself on first use and keeps in a 0600 PEM file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

OwnKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_or_create_key(path: Path, generate: Callable[[], OwnKey]) -> PrivateKeyTypes:
    """The key in ``path``, else a new one from ``generate`` written there (O_EXCL, mode 0600); callers check its
    type. Our own RSA keys are loaded without the slow consistency check (~80 ms for RSA-3072)."""
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
    key = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key
