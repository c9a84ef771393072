"""One exception family for everything a user can meet.

Every error says what happened (``str(err)``) and, where there is one, what to do about it (``err.hint``).
The CLI prints both on one line each and exits non-zero; a traceback appears only with ``--debug``.
"""

from __future__ import annotations


class SealpodError(Exception):
    """Base of every error sealpod raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def diagnostics(self) -> str:
        """The message and hint, as shown to a person."""
        text = str(self)
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class UsageError(SealpodError):
    """The user asked for something malformed (a bad reference, a bad option)."""

    exit_code = 2


class InvalidReferenceError(UsageError):
    """An image reference could not be parsed."""


class ManifestError(SealpodError):
    """A manifest, index or image config is malformed or unsupported."""


class DigestMismatchError(SealpodError):
    """Content did not match the digest or size that names it."""


class RegistryError(SealpodError):
    """The registry answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class AuthError(RegistryError):
    """The registry refused our credentials, or asked for credentials we do not have."""


class NotFoundError(RegistryError):
    """A manifest, tag or blob does not exist."""


class LayoutError(SealpodError):
    """An OCI image layout directory is malformed or does not hold what was asked."""


class UnsafeLayerError(SealpodError):
    """A layer tar holds an entry that would escape the rootfs, exceed a bound, or is malformed."""


class UnpackError(SealpodError):
    """Unpacking a layer failed for a reason other than an unsafe entry (I/O, permissions)."""


class CryptoError(SealpodError):
    """Encryption or decryption failed: a wrong key, a bad MAC, a malformed wrapped key or options."""


class KeyFileError(UsageError):
    """A key file could not be read or is not a usable key."""


class PolicyError(UsageError):
    """A signature policy or registries.d configuration is malformed."""


class SignatureError(SealpodError):
    """An image's signatures do not satisfy the policy, or a signature is malformed or does not verify."""


class AttestationError(SealpodError):
    """Evidence was malformed, or did not verify."""


class QuoteFormatError(AttestationError):
    """A quote (or its certification data) is malformed; the message names the field and offset."""


class CollateralError(AttestationError):
    """Verification collateral (TCB info, QE identity, CRLs, chains) is malformed, unsigned or out of date."""
