"""``signedIdentity``: how the identity a signature claims must relate to the image being checked.

Semantics of containers-policy.json(5): ``matchExact``, ``matchRepoDigestOrExact`` (the default), ``matchRepository``,
``exactReference``, ``exactRepository`` and ``remapIdentity``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealpod.errors import InvalidReferenceError
from sealpod.oci.reference import ImageReference, parse_reference

KINDS = (
    "matchExact",
    "matchRepoDigestOrExact",
    "matchRepository",
    "exactReference",
    "exactRepository",
    "remapIdentity",
)


@dataclass(frozen=True, slots=True)
class SignedIdentity:
    """One ``signedIdentity`` object of a policy."""

    kind: str = "matchRepoDigestOrExact"
    docker_reference: ImageReference | None = None
    docker_repository: str | None = None
    prefix: str | None = None
    signed_prefix: str | None = None


def parse_signature_identity(text: str) -> ImageReference | None:
    """A signature's claimed identity as a normalised reference (no default tag), or None if it is not one."""
    try:
        return parse_reference(text, default_tag=False)
    except InvalidReferenceError:
        return None


def _exact(image: ImageReference, signed: ImageReference) -> bool:
    if (image.tag is None) == (image.digest is None) or (signed.tag is None) == (signed.digest is None):
        return False  # both must name exactly one tag or one digest
    return image.repository == signed.repository and image.tag == signed.tag and image.digest == signed.digest


def _repo_digest_or_exact(image: ImageReference, signed: ImageReference) -> bool:
    if image.digest is not None and image.tag is None:
        return image.repository == signed.repository
    return _exact(image, signed)


def _remap(image: ImageReference, prefix: str, signed_prefix: str) -> ImageReference | None:
    text = str(image)
    if not (text.startswith(prefix + "/") or text.startswith(prefix + ":") or text.startswith(prefix + "@")):
        return image
    try:
        return parse_reference(signed_prefix + text[len(prefix) :], default_tag=False)
    except InvalidReferenceError:
        return None


def matches(identity: SignedIdentity, image: ImageReference | None, signed_text: str) -> bool:
    """Whether a signature claiming ``signed_text`` may stand for ``image`` under ``identity``; an image without a
    docker reference (``oci:``) matches only ``exactReference`` and ``exactRepository``."""
    signed = parse_signature_identity(signed_text)
    if signed is None:
        return False
    kind = identity.kind
    if kind == "exactReference":
        assert identity.docker_reference is not None
        return _exact(identity.docker_reference, signed)
    if kind == "exactRepository":
        return signed.repository == identity.docker_repository
    if image is None:
        return False
    if kind == "matchExact":
        return _exact(image, signed)
    if kind == "matchRepoDigestOrExact":
        return _repo_digest_or_exact(image, signed)
    if kind == "matchRepository":
        return image.repository == signed.repository
    if kind == "remapIdentity":
        assert identity.prefix is not None
        assert identity.signed_prefix is not None
        remapped = _remap(image, identity.prefix, identity.signed_prefix)
        return remapped is not None and _repo_digest_or_exact(remapped, signed)
    return False  # an unknown kind never matches
