"""Read-only, defensive access to containerd's content store: an image's manifest and config by digest.

Only ``sha256:<64 hex>`` digests are accepted (so no path can be smuggled in), blobs are opened without following
symlinks, must be regular files within a size bound, must match their digest and be JSON objects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from sealpod._internal.files import read_bounded
from sealpod._internal.jsonio import load_object
from sealpod.errors import SealpodError

CONTENT_BLOBS = Path("io.containerd.content.v1.content") / "blobs" / "sha256"
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 8 * 1024 * 1024
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


class ContentUnavailableError(SealpodError):
    """A blob cannot be used: missing, unsafe, too big, not matching its digest, not a JSON object, malformed."""


class ContentStore:
    """The blobs under ``<containerd root>/io.containerd.content.v1.content``."""

    def __init__(self, containerd_root: Path) -> None:
        self.blobs = containerd_root / CONTENT_BLOBS

    def read_json(self, digest: object, max_size: int, what: str) -> dict[str, object]:
        """The blob ``digest`` parsed as a JSON object."""
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ContentUnavailableError(f"unsupported {what} digest {digest!r}")
        path = self.blobs / digest.removeprefix("sha256:")
        try:
            data = read_bounded(path, max_size, what, ContentUnavailableError, follow_symlinks=False)
        except FileNotFoundError:
            raise ContentUnavailableError(f"{what} {path} is not in containerd's content store") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ContentUnavailableError(f"{what} {path} does not match its digest")
        return load_object(data, f"{what} {digest}", max_size, ContentUnavailableError)

    def read_manifest(self, digest: str) -> dict[str, object]:
        """An image manifest."""
        return self.read_json(digest, MAX_MANIFEST_SIZE, "manifest")

    def read_config(self, manifest: Mapping[str, object]) -> dict[str, object]:
        """The image config a manifest names."""
        descriptor = manifest.get("config")
        if not isinstance(descriptor, dict):
            raise ContentUnavailableError("manifest without a config descriptor")
        return self.read_json(descriptor.get("digest"), MAX_CONFIG_SIZE, "config")


def layer_media_types(manifest: Mapping[str, object]) -> list[str]:
    """The media types of a manifest's layers."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise ContentUnavailableError("not an image manifest: no layer list")
    types = []
    for layer in layers:
        media_type = layer.get("mediaType") if isinstance(layer, dict) else None
        if not isinstance(media_type, str):
            raise ContentUnavailableError("a layer without a string mediaType")
        types.append(media_type)
    return types


def is_encrypted(manifest: Mapping[str, object]) -> bool:
    """Whether any layer of ``manifest`` is encrypted (``…+encrypted`` media type)."""
    return any(t.endswith("+encrypted") for t in layer_media_types(manifest))


def config_user(config: Mapping[str, object]) -> str:
    """The ``User`` of an image config ("" if none)."""
    settings = config.get("config")
    user = settings.get("User") if isinstance(settings, dict) else None
    if user is not None and not isinstance(user, str):
        raise ContentUnavailableError("config User is not a string")
    return user or ""
