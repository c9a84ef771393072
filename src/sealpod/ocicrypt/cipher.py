"""AES_256_CTR_HMAC_SHA256, the ocicrypt layer cipher, as streaming encryptor and decryptor.

AES-256-CTR with the 16-byte nonce as the initial counter block; HMAC-SHA256 with the same key over the whole
ciphertext (encrypt-then-MAC). The MAC is known only at the end of the stream, so plaintext a decryptor has given
out is untrusted until :meth:`LayerDecryptor.verify` passes: callers stage it and commit only afterwards.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import os
from collections.abc import Iterator

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealpod.errors import CryptoError, DigestMismatchError
from sealpod.ocicrypt.options import KEY_SIZE, NONCE_SIZE, PrivateOptions, PublicOptions


class LayerEncryptor:
    """Encrypts one layer blob; after the last chunk, :meth:`options` gives the private and public options.

    ``plain_digest`` is the digest of the plaintext blob when the caller verifies it anyway (a blob read from a
    store is checked against its descriptor as it streams); without it the plaintext is hashed here.
    """

    def __init__(
        self, symkey: bytes | None = None, nonce: bytes | None = None, plain_digest: str | None = None
    ) -> None:
        self.symkey = symkey or os.urandom(KEY_SIZE)
        self.nonce = nonce or os.urandom(NONCE_SIZE)
        self._ctr = Cipher(algorithms.AES(self.symkey), modes.CTR(self.nonce)).encryptor()
        self._mac = _hmac.new(self.symkey, digestmod=hashlib.sha256)
        self._plain_digest = plain_digest
        self._plain = None if plain_digest else hashlib.sha256()

    def update(self, chunk: bytes) -> bytes:
        """Encrypt the next chunk."""
        if self._plain is not None:
            self._plain.update(chunk)
        out = self._ctr.update(chunk)
        self._mac.update(out)
        return out

    def stream(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Encrypt a stream of chunks."""
        for chunk in chunks:
            yield self.update(chunk)

    def options(self) -> tuple[PrivateOptions, PublicOptions]:
        """The options, once the whole blob has passed."""
        self._ctr.finalize()
        digest = self._plain_digest or f"sha256:{self._plain.hexdigest()}"  # type: ignore[union-attr]
        private = PrivateOptions(self.symkey, digest, self.nonce)
        return private, PublicOptions(self._mac.digest())


class LayerDecryptor:
    """Decrypts one layer blob and, at the end, checks the HMAC and the plaintext's digest."""

    def __init__(self, private: PrivateOptions, public: PublicOptions, *, what: str = "layer") -> None:
        self.private, self.public, self.what = private, public, what
        self._ctr = Cipher(algorithms.AES(private.symkey), modes.CTR(private.nonce)).decryptor()
        self._mac = _hmac.new(private.symkey, digestmod=hashlib.sha256)
        algorithm = private.digest.split(":", 1)[0]
        self._plain = hashlib.new(algorithm)

    def update(self, chunk: bytes) -> bytes:
        """Decrypt the next chunk (untrusted until :meth:`verify`)."""
        self._mac.update(chunk)
        out = self._ctr.update(chunk)
        self._plain.update(out)
        return out

    def verify(self) -> None:
        """Raise unless the HMAC and the private options' digest both match."""
        self._ctr.finalize()
        if not _hmac.compare_digest(self._mac.digest(), self.public.hmac):
            raise CryptoError(
                f"{self.what}: the ciphertext's HMAC does not match its public options",
                hint="the encrypted layer or its annotations were altered; nothing from it has been kept",
            )
        got = f"{self._plain.name}:{self._plain.hexdigest()}"
        if got != self.private.digest:
            raise DigestMismatchError(
                f"{self.what}: the decrypted blob is {got}, but its private options say {self.private.digest}",
                hint="the layer was encrypted for other content; nothing from it has been kept",
            )

    def stream(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Decrypt a stream; raises at the end when the MAC or digest is wrong."""
        for chunk in chunks:
            yield self.update(chunk)
        self.verify()
