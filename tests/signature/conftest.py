"""Shared fixtures of the signature tests: two cosign key pairs."""

from __future__ import annotations

from typing import Any

import pytest

from sealpod.signature import sigstore

PASS = b"pw"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Private keys ``good`` and ``other`` (passphrase ``pw``), and the paths of their public keys."""
    base = tmp_path_factory.mktemp("keys")
    out: dict[str, Any] = {}
    for name in ("good", "other"):
        private, public = sigstore.generate_key_pair(PASS)
        (base / f"{name}.pub").write_bytes(public)
        out[name] = sigstore.load_private_key(private, PASS)
        out[f"{name}.pub"] = base / f"{name}.pub"
    return out
