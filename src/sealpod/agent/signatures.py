"""Where an image's signatures are, for the signature policy: shared by the enclave's pull and ``sealpod pull``
(kept apart from :mod:`sealpod.agent.pull` so that a plain pull imports neither the KBS client nor ocicrypt)."""

from __future__ import annotations

from sealpod.oci.source import ImageLocation, ImageStore, LayoutStore
from sealpod.signature.registriesd import RegistriesD
from sealpod.signature.verifier import ImageSignatures


def image_signatures(
    location: ImageLocation, manifest_digest: str, store: ImageStore, registries: RegistriesD
) -> ImageSignatures:
    """Where the signatures of the image at ``location`` are: its layout's own for ``oci:``, else its registry's
    attachments and lookaside."""
    if isinstance(store, LayoutStore):
        return ImageSignatures(None, manifest_digest, None, registries, layout=store)
    return ImageSignatures(location.reference, manifest_digest, store, registries)
