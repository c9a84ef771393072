"""Copying one image (one platform's manifest, its config and layers) between stores, streaming each blob."""

from __future__ import annotations

from sealpod.oci.models import Platform
from sealpod.oci.registry import Progress
from sealpod.oci.source import ImageStore, ResolvedImage, resolve


def copy_image(
    source: ImageStore, destination: ImageStore, platform: Platform, *, progress: Progress | None = None
) -> ResolvedImage:
    """Copy the image for ``platform`` unchanged (same manifest bytes, so the same digest)."""
    image = resolve(source, platform)
    for descriptor in [image.manifest.config, *image.manifest.layers]:
        if not destination.has_blob(descriptor.digest):
            destination.put_blob(descriptor, source.blob_stream(descriptor), progress=progress)
    destination.put_manifest(image.manifest_raw, image.media_type)
    return image
