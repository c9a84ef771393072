"""PEM certificate chains from untrusted bytes (a quote's PCK chain, collateral's issuer chains)."""

from __future__ import annotations

from cryptography import x509

from sealpod.errors import AttestationError


def load_certificates(pem: bytes, what: str, error: type[AttestationError]) -> tuple[x509.Certificate, ...]:
    """Parse a PEM chain from untrusted bytes and touch every field the verifier reads, so that malformed content
    fails here as ``error`` (cryptography parses names, keys and extensions lazily, raising assorted types)."""
    try:
        certs = tuple(x509.load_pem_x509_certificates(pem.rstrip(b"\0")))
        for cert in certs:
            _ = list(cert.subject), list(cert.issuer)  # parsed into attributes (no string form: ~40 us a name)
            cert.public_key()
            _ = cert.extensions, cert.signature_hash_algorithm, cert.not_valid_before_utc, cert.not_valid_after_utc
    except Exception as err:
        raise error(f"{what} is malformed: {err}") from None
    return certs
