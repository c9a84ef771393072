"""Copying one image (one platform's manifest, its config and layers) between stores, streaming each blob, with
an optional per-layer rewrite (how ``sealpod image encrypt`` plugs in without this package knowing ocicrypt)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol

from sealpod.oci import mediatypes as mt
from sealpod.oci.models import Descriptor, Platform
from sealpod.oci.registry import Progress
from sealpod.oci.source import ImageStore, ResolvedImage, resolve


class LayerRewriter(Protocol):
    """Rewrites some layers of an image while it is copied."""

    def rewrite(
        self, index: int, total: int, descriptor: Descriptor, chunks: Iterator[bytes]
    ) -> Iterator[bytes] | None:
        """The new content of layer ``index`` (of ``total``), or None to copy it unchanged."""
        ...

    def finish(self, index: int, original: Descriptor, uploaded: Descriptor) -> Descriptor:
        """The new layer's descriptor, once its content (``uploaded``: digest and size) is stored."""
        ...


def copy_image(
    source: ImageStore,
    destination: ImageStore,
    platform: Platform,
    *,
    rewriter: LayerRewriter | None = None,
    progress: Progress | None = None,
) -> ResolvedImage:
    """Copy the image for ``platform``; unchanged (same manifest bytes and digest) without a rewriter.

    With a rewriter, rewritten layers are streamed to the destination and a new manifest is written (as OCI,
    converting Docker media types: ocicrypt's encrypted types exist only in OCI).
    """
    image = resolve(source, platform)
    if not destination.has_blob(image.manifest.config.digest):
        destination.put_blob(image.manifest.config, source.blob_stream(image.manifest.config), progress=progress)
    layers: list[Descriptor] = []
    for index, descriptor in enumerate(image.manifest.layers):
        total = len(image.manifest.layers)
        content = rewriter.rewrite(index, total, descriptor, source.blob_stream(descriptor)) if rewriter else None
        if content is None:
            if not destination.has_blob(descriptor.digest):
                destination.put_blob(descriptor, source.blob_stream(descriptor), progress=progress)
            layers.append(descriptor)
            continue
        assert rewriter is not None
        uploaded = destination.upload_blob(content, progress=progress)
        layers.append(rewriter.finish(index, descriptor, uploaded))
    if rewriter is None:
        destination.put_manifest(image.manifest_raw, image.media_type)
        return image
    raw = manifest_bytes(image, layers)
    destination.put_manifest(raw, mt.OCI_MANIFEST)
    return resolve(destination, platform)


def _oci_descriptor(descriptor: Descriptor) -> dict[str, Any]:
    data = descriptor.to_json_dict()
    data["mediaType"] = mt.to_oci(descriptor.media_type)
    if "annotations" in data:
        data["annotations"] = dict(sorted(data["annotations"].items()))
    return data


def manifest_bytes(image: ResolvedImage, layers: list[Descriptor]) -> bytes:
    """An OCI manifest of ``image`` with ``layers``, compact and key-ordered as Go's encoding/json writes it."""
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if image.manifest.artifact_type:
        manifest["artifactType"] = image.manifest.artifact_type
    manifest["config"] = _oci_descriptor(image.manifest.config)
    manifest["layers"] = [_oci_descriptor(d) for d in layers]
    if image.manifest.subject:
        manifest["subject"] = image.manifest.subject.to_json_dict()
    if image.manifest.annotations:
        manifest["annotations"] = dict(sorted(image.manifest.annotations.items()))
    return json.dumps(manifest, separators=(",", ":")).encode()
