"""The signed payload shared by cosign and GPG simple signing, written and parsed as containers/image does.

``{"critical":{"identity":{"docker-reference":REF},"image":{"docker-manifest-digest":DIGEST},"type":TYPE},
"optional":{...}}`` with TYPE ``cosign container image signature`` or ``atomic container signature``. Parsing is
strict: exactly these members, so that nothing a verifier ignores can ride along in a signed document.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sealpod import __version__
from sealpod._internal.jsonio import load_object
from sealpod.errors import ManifestError, SignatureError
from sealpod.oci.digest import validate_digest

COSIGN_TYPE = "cosign container image signature"
ATOMIC_TYPE = "atomic container signature"
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SignedClaims:
    """What a verified payload asserts: this manifest digest is the image named docker_reference."""

    docker_reference: str
    manifest_digest: str
    optional: dict[str, Any] | None = None


def make_payload(kind: str, docker_reference: str, manifest_digest: str, *, timestamp: int | None = None) -> bytes:
    """The payload bytes to sign."""
    optional = {"creator": f"sealpod {__version__}", "timestamp": int(time.time()) if timestamp is None else timestamp}
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": kind,
        },
        "optional": optional,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _exact_keys(value: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SignatureError(f"signature payload: {where} is not a JSON object")
    if set(value) != keys:
        extra, missing = sorted(set(value) - keys), sorted(keys - set(value))
        detail = "; ".join(
            x for x in (f"unexpected {extra}" if extra else "", f"missing {missing}" if missing else "") if x
        )
        raise SignatureError(f"signature payload: {where} has the wrong members ({detail})")
    return value


def parse_payload(raw: bytes, kind: str) -> SignedClaims:
    """Parse a payload whose signature has already been verified; refuse anything but the exact format."""
    document = _exact_keys(
        load_object(raw, "signature payload", MAX_PAYLOAD_BYTES, SignatureError),
        {"critical", "optional"},
        "the document",
    )
    critical = _exact_keys(document["critical"], {"type", "image", "identity"}, "'critical'")
    if critical["type"] != kind:
        raise SignatureError(f"signature payload: type {critical['type']!r} is not {kind!r}")
    image = _exact_keys(critical["image"], {"docker-manifest-digest"}, "'critical.image'")
    identity = _exact_keys(critical["identity"], {"docker-reference"}, "'critical.identity'")
    digest, reference = image["docker-manifest-digest"], identity["docker-reference"]
    if not isinstance(digest, str) or not isinstance(reference, str):
        raise SignatureError("signature payload: the digest and the reference must be strings")
    try:
        validate_digest(digest)
    except ManifestError as err:
        raise SignatureError(f"signature payload: {err}") from None
    optional = document["optional"]
    if optional is not None and not isinstance(optional, dict):
        raise SignatureError("signature payload: 'optional' must be an object or null")
    return SignedClaims(reference, digest, optional)
