"""GPG "simple signing" with the system's gpg and gpgv (no OpenPGP parsing of our own).

Signing runs ``gpg --sign`` with a key from a GnuPG home; verifying runs ``gpgv`` against exactly the keyrings the
policy names and trusts only its ``VALIDSIG`` status line.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sealpod.errors import SignatureError

TIMEOUT = 60
MAX_SIGNATURE_BYTES = 4 * 1024 * 1024


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SignatureError(f"{name} is not installed", hint="apt-get install gnupg gpgv")
    return path


def sign(payload: bytes, fingerprint: str, *, home: Path | None = None, passphrase_file: Path | None = None) -> bytes:
    """An ordinary ``gpg --sign`` message of ``payload`` by ``fingerprint``."""
    cmd = [_tool("gpg"), "--batch", "--no-tty", "--quiet", "--local-user", fingerprint, "--sign", "--output", "-"]
    if home is not None:
        cmd[1:1] = ["--homedir", str(home)]
    if passphrase_file is not None:
        cmd[1:1] = ["--pinentry-mode", "loopback", "--passphrase-file", str(passphrase_file)]
    proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=TIMEOUT, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise SignatureError(f"gpg could not sign with {fingerprint}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


@dataclass(frozen=True, slots=True)
class GpgVerified:
    """A verified message: the signed bytes and the signing key's fingerprint."""

    payload: bytes
    fingerprint: str


def _binary_keyring(data: bytes, directory: Path, index: int) -> Path:
    target = directory / f"keyring-{index}.gpg"
    if data.lstrip().startswith(b"-----BEGIN PGP"):
        proc = subprocess.run(
            [_tool("gpg"), "--batch", "--dearmor"], input=data, capture_output=True, timeout=TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise SignatureError(f"a policy keyring is not a valid armored OpenPGP key: {proc.stderr.decode().strip()}")
        data = proc.stdout
    target.write_bytes(data)
    return target


def verify(signature: bytes, keyrings: list[bytes]) -> GpgVerified | None:
    """The signed payload if one of the keyrings' keys made ``signature``, else None."""
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"a GPG signature is over {MAX_SIGNATURE_BYTES} bytes")
    with tempfile.TemporaryDirectory(prefix="sealpod-gpgv-") as tmp:
        directory = Path(tmp)
        rings = [_binary_keyring(data, directory, i) for i, data in enumerate(keyrings)]
        message, output = directory / "signature", directory / "payload"
        message.write_bytes(signature)
        cmd = [_tool("gpgv"), "--homedir", str(directory), "--status-fd", "1", "--output", str(output)]
        for ring in rings:
            cmd += ["--keyring", str(ring)]
        proc = subprocess.run([*cmd, str(message)], capture_output=True, timeout=TIMEOUT, check=False)
        fingerprint = None
        for line in proc.stdout.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "[GNUPG:]" and parts[1] == "VALIDSIG":
                fingerprint = parts[2]
        if proc.returncode != 0 or fingerprint is None or not output.exists():
            return None
        return GpgVerified(output.read_bytes(), fingerprint)
