"""Private keys sealpod makes for itself on first use and keeps in a 0600 PEM file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

OwnKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_or_create_key(path: Path, generate: Callable[[], OwnKey]) -> PrivateKeyTypes:
    """The key in ``path``, else a new one from ``generate`` written there (mode 0600); callers check its type.
    Two processes making it at once agree on one key: it is written whole under a temporary name and linked into
    place, and the loser loads the winner's. Our own RSA keys are loaded without the slow consistency check (~80 ms
    for RSA-3072)."""
    if path.exists():
        return _load(path)
    key = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _load(path)
    finally:
        tmp.unlink()
    return key


def _load(path: Path) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
