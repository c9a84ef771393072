"""Content digests (``sha256:<hex>``): parsing, computing and checking while streaming."""

from __future__ import annotations

import hashlib
import re

from sealpod.errors import DigestMismatchError, ManifestError

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-f0-9]+)$")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed digest of a supported algorithm, else raise naming the fault."""
    match = _DIGEST_RE.match(digest)
    if not match:
        raise ManifestError(f"malformed digest {digest!r}: expected <algorithm>:<lowercase hex>")
    algorithm, hexpart = match.groups()
    if algorithm not in _ALGORITHMS:
        raise ManifestError(f"unsupported digest algorithm {algorithm!r} in {digest!r} (sha256 and sha512 are)")
    if len(hexpart) != _ALGORITHMS[algorithm]:
        raise ManifestError(
            f"malformed digest {digest!r}: {algorithm} needs {_ALGORITHMS[algorithm]} hex digits, not {len(hexpart)}"
        )
    return digest


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class Verifier:
    """Hashes a stream as it passes and checks it against an expected digest and size at the end."""

    def __init__(self, expected: str, size: int | None = None, *, what: str = "blob") -> None:
        validate_digest(expected)
        self.expected = expected
        self.size = size
        self.what = what
        self.count = 0
        self._hash = hashlib.new(expected.split(":", 1)[0])

    def update(self, chunk: bytes | memoryview) -> None:
        """Feed the next chunk; refuses at once when the size is exceeded."""
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise DigestMismatchError(
                f"{self.what} {self.expected} is longer than the {self.size} bytes its descriptor declares",
                hint="the registry or layout served different content than the manifest names; do not trust it",
            )
        self._hash.update(chunk)

    def computed(self) -> str:
        """The digest of what has passed so far."""
        return f"{self._hash.name}:{self._hash.hexdigest()}"

    def verify(self) -> None:
        """Raise :class:`DigestMismatchError` unless size and digest match."""
        if self.size is not None and self.count != self.size:
            raise DigestMismatchError(
                f"{self.what} {self.expected} is {self.count} bytes, its descriptor declares {self.size}"
            )
        got = self.computed()
        if got != self.expected:
            raise DigestMismatchError(
                f"{self.what} digest mismatch: expected {self.expected}, got {got}",
                hint="the content was altered in transit or at rest; it has not been used",
            )
