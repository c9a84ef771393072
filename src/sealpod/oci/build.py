"""Building small OCI images from local files: the demo's sample application and test fixtures.

Layers are written as gzip tars straight into an OCI layout, hashed (digest and diff_id) as they are written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sealpod.oci import mediatypes as mt
from sealpod.oci.layout import OciLayout
from sealpod.oci.models import Descriptor


class _GzipHashingSink:
    """A write-only file that hashes what it is given, gzips it, and hands the gzip bytes to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        self._z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.size += len(data)
            self.out.write(data)

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self._emit(self._z.compress(data))
        return len(data)

    def close(self) -> None:
        self._emit(self._z.flush())


@dataclass
class LayerSpec:
    """One layer: the tree under ``source``, host ``files`` as (path, name in the layer), and prepared members."""

    source: Path | None = None
    files: list[tuple[Path, str]] = field(default_factory=list)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = field(default_factory=list)


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*sorted(dirnames), *sorted(filenames)]:
            full = Path(dirpath) / name
            tar.add(full, arcname=str(full.relative_to(root)), recursive=False)


def write_layer(layout: OciLayout, spec: LayerSpec) -> tuple[Descriptor, str]:
    """Write one gzip layer into ``layout``; returns its descriptor and diff_id."""
    layout.init()
    tmp = layout.path / "blobs" / "sha256" / f".build-{os.getpid()}-{id(spec)}"
    with tmp.open("wb") as out:
        sink = _GzipHashingSink(out)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            if spec.source is not None:
                _add_tree(tar, spec.source)
            for path, arcname in spec.files:
                tar.add(path, arcname=arcname, recursive=False)
            for info, content in spec.members:
                tar.addfile(info, None if content is None else io.BytesIO(content))
        sink.close()
    digest = f"sha256:{sink.blob.hexdigest()}"
    tmp.replace(layout.blob_path(digest))
    return (
        Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=digest, size=sink.size),
        f"sha256:{sink.diff.hexdigest()}",
    )


def build_image(
    layout_dir: str | Path,
    tag: str,
    layers: list[LayerSpec],
    *,
    config: dict[str, Any] | None = None,
    architecture: str = "amd64",
    created: str = "2026-01-01T00:00:00Z",
) -> Descriptor:
    """Build an image of ``layers`` into the layout under ``tag``; returns the manifest's descriptor."""
    layout = OciLayout(layout_dir)
    written = [write_layer(layout, spec) for spec in layers]
    image_config = {
        "created": created,
        "architecture": architecture,
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in written]},
        "history": [{"created": created, "created_by": "sealpod build"} for _ in written],
    }
    config_desc = layout.put_bytes(json.dumps(image_config, sort_keys=True).encode(), mt.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_desc.to_json_dict(),
        "layers": [d.to_json_dict() for d, _ in written],
    }
    manifest_desc = layout.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST)
    layout.tag(manifest_desc, tag)
    return manifest_desc
