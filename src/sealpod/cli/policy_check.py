"""Signature policy enforcement shared by ``sealpod pull`` and ``sealpod image verify``, without typer: it glues the
signature package to an image location and store (which the signature package never opens itself)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sealpod.oci.source import ImageLocation, ImageStore, ResolvedImage
    from sealpod.signature.policy import SignatureCheck, SignatureVerifier


def enforce(
    location: ImageLocation,
    store: ImageStore,
    image: ResolvedImage,
    policy_path: Path | None,
    registries_d: Path | None,
) -> str:
    """Evaluate the policy for the image's top-level manifest; raise ``SignatureError`` when refused."""
    from sealpod.signature.policy import ImageUnderCheck, load_policy

    policy = load_policy(policy_path)
    digest = image.index_digest or image.manifest_digest
    subject = ImageUnderCheck(location.transport, location.reference, digest, path=location.path, tag=location.tag)

    def signatures() -> SignatureVerifier:
        from sealpod.agent.signatures import image_signatures
        from sealpod.signature.registriesd import RegistriesD

        return image_signatures(location, digest, store, RegistriesD.load(registries_d))

    return policy.evaluate(subject, _OnDemand(signatures))


class _OnDemand:
    """The image's signatures, looked for only when a requirement asks (as containers/image does): a policy that
    accepts anything reads no registries.d and imports no signature code."""

    def __init__(self, make: Callable[[], SignatureVerifier]) -> None:
        self._make = make
        self._made: SignatureVerifier | None = None

    def _verifier(self) -> SignatureVerifier:
        if self._made is None:
            self._made = self._make()
        return self._made

    def sigstore_claims(self, keys: list[bytes]) -> list[SignatureCheck]:
        return self._verifier().sigstore_claims(keys)

    def gpg_claims(self, keyrings: list[bytes]) -> list[SignatureCheck]:
        return self._verifier().gpg_claims(keyrings)
