"""The generic enclave's identity on the simulated platform.

MRENCLAVE = SHA-256 over the canonical manifest: the enclave program's files (the sealpod package and the Python
interpreter that runs it), each by path and SHA-256, plus its fixed configuration. MRSIGNER = SHA-256 of the
enclave signing key's RSA modulus (little-endian, as SGX hashes it). The same code always measures the same; any
changed file changes MRENCLAVE, and a KBS that registered the old value stops releasing keys to it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

import sealpod
from sealpod._internal.keyfiles import load_or_create_key
from sealpod.config import state_dir
from sealpod.errors import SealpodError

ISV_PROD_ID = 1
ISV_SVN = 1
ENCLAVE_CONFIG: dict[str, object] = {
    "entry": "sealpod.enclave",
    "isv_prod_id": ISV_PROD_ID,
    "isv_svn": ISV_SVN,
    "debug": False,
    "version": 1,
}


@dataclass(frozen=True)
class EnclaveIdentity:
    """What a genuine generic enclave measures as."""

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    files: int

    def reference_values(self) -> dict[str, list[object]]:
        """The KBS reference values that admit exactly this enclave (``AdminClient.set_reference``)."""
        return {
            "mr_enclave": [self.mr_enclave.hex()],
            "mr_signer": [self.mr_signer.hex()],
            "isv_prod_id": [self.isv_prod_id],
            "isv_svn": [self.isv_svn],
        }


def manifest(package_dir: Path | None = None, interpreter: Path | None = None) -> list[tuple[str, str]]:
    """The measured files: (path, SHA-256), in a stable order."""
    package_dir = package_dir or Path(sealpod.__file__).parent
    interpreter = interpreter or Path(os.path.realpath(sys.executable))
    entries = [(f"interpreter/{interpreter.name}", _file_digest(str(interpreter)))]
    files: list[str] = []
    for directory, subdirectories, names in os.walk(package_dir):
        subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]  # not walked at all
        relative = os.path.relpath(directory, package_dir)
        for name in names:
            path = os.path.join(directory, name)
            if not name.endswith((".pyc", ".pyo")) and os.path.isfile(path):
                files.append(name if relative == "." else f"{relative}/{name}")
    for relative in sorted(files, key=lambda name: Path(name).parts):  # the order of sorted(rglob)
        entries.append((f"sealpod/{relative}", _file_digest(os.path.join(package_dir, relative))))
    return entries


def _file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def signing_key(path: Path | None = None) -> rsa.RSAPrivateKey:
    """The enclave signing key (RSA-3072, exponent 3 as SGX requires), made on first use."""
    path = path or state_dir() / "enclave-signing-key.pem"
    key = load_or_create_key(path, lambda: rsa.generate_private_key(public_exponent=3, key_size=3072))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SealpodError(f"{path} is not an RSA private key")
    return key


def measure(key_path: Path | None = None, package_dir: Path | None = None) -> EnclaveIdentity:
    """MRENCLAVE and MRSIGNER of the generic enclave as installed here."""
    entries = manifest(package_dir)
    canonical = json.dumps({"config": ENCLAVE_CONFIG, "files": entries}, sort_keys=True, separators=(",", ":"))
    modulus = signing_key(key_path).public_key().public_numbers().n.to_bytes(384, "little")
    return EnclaveIdentity(
        hashlib.sha256(canonical.encode()).digest(),
        hashlib.sha256(modulus).digest(),
        ISV_PROD_ID,
        ISV_SVN,
        len(entries),
    )


@functools.cache
def running_identity() -> EnclaveIdentity:
    """The identity of the enclave program this process loaded, measured once (a pre-launched enclave measures
    before it is asked to run, i.e. the code it is running, not what a later upgrade put on disk)."""
    return measure()
