"""Sigstore (cosign) signatures of an image in an OCI layout directory, kept in the layout itself.

containers/image stores no signatures for the ``oci:`` transport, so there is no lookaside or registries.d entry to
follow; the one convention for signatures in a layout is cosign's (``cosign save`` writes it, ``cosign load`` and
``cosign verify --local-image`` read it). sealpod writes a layout signature so that both lookups find it:

- the signature manifest is the registry attachment's (:mod:`sealpod.signature.sigstore`: one simple-signing payload
  layer per signature, the signature in its ``dev.cosignproject.cosign/signature`` annotation), listed in
  ``index.json`` under the tag a registry would give it, ``sha256-<hex>.sig``, which binds it to one manifest digest;
- its entry also carries cosign's ``kind: dev.cosignproject.cosign/sigs`` and the signed image's entry
  ``kind: dev.cosignproject.cosign/image`` (``.../imageIndex`` for an index). cosign reads only the first entry of
  each kind, so these markers move to the image signed last: cosign checks that one, sealpod every tagged one.

Reading takes the ``sha256-<hex>.sig`` tag; without one it takes cosign's ``sigs`` entry, only when the layout's
cosign ``image``/``imageIndex`` entry is the manifest being checked (a layout ``cosign save`` wrote). Either way each
payload must name the manifest digest, which the policy checks, so a signature paired with the wrong image fails.
"""

from __future__ import annotations

from typing import Protocol

from sealpod.oci import mediatypes as mt
from sealpod.oci.mediatypes import KIND, REF_NAME
from sealpod.oci.models import Index
from sealpod.signature import sigstore

COSIGN_IMAGE = "dev.cosignproject.cosign/image"
COSIGN_INDEX = "dev.cosignproject.cosign/imageIndex"
COSIGN_SIGS = "dev.cosignproject.cosign/sigs"


class LayoutStore(sigstore.AttachmentStore, Protocol):
    """An image store over an OCI layout, with its index (``oci.source.LayoutStore`` satisfies this)."""

    def read_index(self) -> Index: ...

    def mark(self, key: str, value: str, digest: str) -> None: ...


def _cosign_signatures(store: LayoutStore, manifest_digest: str) -> str | None:
    """The digest of cosign's ``sigs`` entry when the layout's cosign ``image``/``imageIndex`` entry is
    ``manifest_digest``."""
    kinds: dict[str, list[str]] = {}
    for entry in store.read_index().manifests:
        kind = (entry.annotations or {}).get(KIND)
        if kind:
            kinds.setdefault(kind, []).append(entry.digest)
    signed = kinds.get(COSIGN_IMAGE, [])[:1] + kinds.get(COSIGN_INDEX, [])[:1]
    sigs = kinds.get(COSIGN_SIGS, [])
    return sigs[0] if manifest_digest in signed and sigs else None


def write_signature(store: LayoutStore, manifest_digest: str, payload: bytes, signature: bytes) -> str:
    """Add a signature of ``manifest_digest`` (an image of the layout); returns the signature manifest's tag."""
    tag = sigstore.attachment_tag(manifest_digest)
    if sigstore.read_attachment(store, manifest_digest)[0] is None:
        adopted = _cosign_signatures(store, manifest_digest)
        if adopted:  # cosign's signatures of this image: give them the tag, so that this one is added to them
            store.mark(REF_NAME, tag, adopted)
    entries = [d for d in store.read_index().manifests if d.digest == manifest_digest]
    signature_digest = sigstore.write_attachment(store, manifest_digest, payload, signature)
    store.mark(KIND, COSIGN_SIGS, signature_digest)
    if entries:
        kind = COSIGN_INDEX if entries[0].media_type in mt.INDEX_TYPES else COSIGN_IMAGE
        store.mark(KIND, kind, manifest_digest)
    return tag


def read_signatures(store: LayoutStore, manifest_digest: str) -> list[sigstore.AttachedSignature]:
    """The signatures the layout holds for ``manifest_digest`` (its ``.sig`` tag, else cosign's ``sigs`` entry)."""
    manifest, signatures = sigstore.read_attachment(store, manifest_digest)
    if manifest is not None:
        return signatures
    cosign = _cosign_signatures(store, manifest_digest)
    return sigstore.read_attachment(store, manifest_digest, cosign)[1] if cosign else []
