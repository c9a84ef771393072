"""Building layer tars and images for tests, with the standard library's tarfile."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from sealpod.oci import mediatypes as mt
from sealpod.oci.layout import OciLayout


@dataclass
class E:
    """One tar entry to write: ``kind`` is file, dir, symlink, hardlink, fifo, char or block."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    pax: dict[str, str] | None = None


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
}


def make_tar(entries: list[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar archive of ``entries`` as bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode if entry.mode is not None else (0o755 if entry.kind == "dir" else 0o644)
            info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
            info.linkname = entry.link
            if entry.kind in ("char", "block"):
                info.devmajor, info.devminor = 1, 3
            if entry.pax:
                info.pax_headers = dict(entry.pax)
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def compress(tar: bytes, kind: str = "gzip") -> tuple[bytes, str]:
    """The layer blob and its media type."""
    if kind == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0), mt.OCI_LAYER_GZIP
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(tar), mt.OCI_LAYER_ZSTD
    return tar, mt.OCI_LAYER_TAR


def image_from_tars(
    layout_dir: Path, tag: str, tars: list[bytes], *, compression: str = "gzip", config: dict[str, object] | None = None
) -> str:
    """An image of the given layer tars in an OCI layout; returns the manifest digest."""
    layout = OciLayout(layout_dir)
    layout.init()
    layers = []
    for tar in tars:
        blob, media_type = compress(tar, compression)
        layers.append(layout.put_bytes(blob, media_type).to_json_dict())
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config or {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(t).hexdigest()}" for t in tars]},
    }
    config_desc = layout.put_bytes(json.dumps(image_config).encode(), mt.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_desc.to_json_dict(),
        "layers": layers,
    }
    manifest_desc = layout.put_bytes(json.dumps(manifest).encode(), mt.OCI_MANIFEST)
    layout.tag(manifest_desc, tag)
    return manifest_desc.digest


def file_contains(path: Path, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether the file at ``path`` holds ``needle``, reading only its data extents (a sparse 64 GiB rootfs image
    costs what it stores), in chunks that overlap by the needle's length."""
    with path.open("rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                return False
            end = os.lseek(fd, start, os.SEEK_HOLE)
            position = start
            while position < end:
                handle.seek(position)
                data = handle.read(min(chunk + len(needle), end - position))
                if needle in data:
                    return True
                position += chunk
            offset = end
    return False
