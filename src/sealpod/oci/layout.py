"""OCI image layout directories (``oci:DIR[:TAG]``, as skopeo and umoci write them), to read and to write."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from sealpod.errors import DigestMismatchError, LayoutError, NotFoundError
from sealpod.oci import mediatypes as mt
from sealpod.oci.digest import Verifier, digest_bytes, validate_digest
from sealpod.oci.models import Descriptor, Index, parse_json, parse_model
from sealpod.oci.registry import CHUNK, FetchedManifest, Progress

REF_NAME = mt.REF_NAME
KIND = mt.KIND
#: Entries that hold signatures or attestations, not images: never "the only image" of a layout.
ARTIFACT_KINDS = ("dev.cosignproject.cosign/sigs", "dev.cosignproject.cosign/atts")
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"


class OciLayout:
    """An OCI image layout directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives."""
        algorithm, hexpart = validate_digest(digest).split(":", 1)
        return self.path / "blobs" / algorithm / hexpart

    # -- reading ---------------------------------------------------------------------------------------------

    def read_index(self) -> Index:
        """The top-level ``index.json``."""
        layout_file = self.path / LAYOUT_FILE
        if not layout_file.is_file():
            raise LayoutError(
                f"{self.path} is not an OCI image layout (no {LAYOUT_FILE} file)",
                hint="make one with 'skopeo copy ... oci:DIR:TAG' or 'sealpod image copy'",
            )
        marker = parse_json(layout_file.read_bytes(), str(layout_file))
        version = marker.get("imageLayoutVersion")
        if version != LAYOUT_VERSION:
            raise LayoutError(f"{layout_file}: unsupported imageLayoutVersion {version!r}")
        index_file = self.path / "index.json"
        try:
            raw = index_file.read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.path} has no index.json") from None
        return parse_model(Index, parse_json(raw, str(index_file)), str(index_file))

    def find(self, tag: str | None) -> Descriptor:
        """The index entry named ``tag``, or the only image entry when no tag is given (signature and attestation
        entries, which ``cosign save`` and ``sealpod image sign`` add, are not images)."""
        index = self.read_index()
        if tag is None:
            images = [d for d in index.manifests if (d.annotations or {}).get(KIND) not in ARTIFACT_KINDS]
            if len(images) == 1:
                return images[0]
            names = [d.annotations.get(REF_NAME, "?") for d in images if d.annotations]
            raise LayoutError(
                f"{self.path} holds {len(images)} images; say which",
                hint=f"use oci:{self.path}:TAG with one of: {', '.join(names) or '(no names)'}",
            )
        for descriptor in index.manifests:
            if (descriptor.annotations or {}).get(REF_NAME) == tag:
                return descriptor
        raise NotFoundError(f"{self.path} has no image named {tag!r}")

    def get_manifest(self, selector: str | None) -> FetchedManifest:
        """A manifest or index by tag (``None``: the only one) or by digest, verified."""
        if selector and selector.startswith(("sha256:", "sha512:")):
            digest, media_type = selector, None
        else:
            entry = self.find(selector)
            digest, media_type = entry.digest, entry.media_type
        raw = self._read_small(digest, None, f"manifest {digest}")
        return FetchedManifest(raw, media_type, digest)

    def _read_small(self, digest: str, size: int | None, what: str) -> bytes:
        try:
            raw = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.path} is missing blob {digest} ({what})") from None
        verifier = Verifier(digest, size, what=what)
        verifier.update(raw)
        verifier.verify()
        return raw

    def get_blob(self, descriptor: Descriptor, limit: int) -> bytes:
        """A small blob whole, verified."""
        if descriptor.size > limit:
            raise LayoutError(f"blob {descriptor.digest} is {descriptor.size} bytes, over the {limit}-byte bound")
        return self._read_small(descriptor.digest, descriptor.size, f"blob {descriptor.digest}")

    def blob_stream(self, descriptor: Descriptor, *, progress: Progress | None = None) -> Iterator[bytes]:
        """The blob in chunks, its size and digest checked as it passes (see ``RegistryClient.blob_stream``)."""
        verifier = Verifier(descriptor.digest, descriptor.size, what=f"blob {descriptor.digest}")
        try:
            handle = self.blob_path(descriptor.digest).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"{self.path} is missing blob {descriptor.digest}") from None
        with handle:
            while chunk := handle.read(CHUNK):
                verifier.update(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk
        verifier.verify()

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is present."""
        return self.blob_path(digest).is_file()

    # -- writing ---------------------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the layout's skeleton if it is not there yet."""
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        layout_file = self.path / LAYOUT_FILE
        if not layout_file.exists():
            _atomic_write(layout_file, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        if not (self.path / "index.json").exists():
            _atomic_write(self.path / "index.json", _index_bytes([]))

    def put_blob(self, chunks: Iterable[bytes], expected: str | None = None, size: int | None = None) -> Descriptor:
        """Store a blob from chunks, checking it against ``expected`` when given; returns a descriptor with
        media type ``application/octet-stream`` (the caller sets the real one)."""
        self.init()
        blobs = self.path / "blobs" / "sha256"
        fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".tmp-")
        hasher, count = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    count += len(chunk)
                    out.write(chunk)
            digest = f"sha256:{hasher.hexdigest()}"
            if expected and digest != expected:
                raise DigestMismatchError(f"blob digest mismatch: expected {expected}, got {digest}")
            if size is not None and count != size:
                raise DigestMismatchError(f"blob {digest} is {count} bytes, expected {size}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.blob_path(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return Descriptor(media_type="application/octet-stream", digest=digest, size=count)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store a small blob and return its descriptor."""
        digest = digest_bytes(data)
        if not self.has_blob(digest):
            self.put_blob([data], digest, len(data))
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def tag(self, descriptor: Descriptor, name: str | None, annotations: dict[str, str] | None = None) -> None:
        """Add ``descriptor`` to ``index.json`` under ``name`` (replacing an entry of that name), with
        ``annotations`` on its entry."""
        self.init()
        index = self.read_index()
        entries = [d.to_json_dict() for d in index.manifests]
        entry = descriptor.to_json_dict()
        if annotations:
            entry["annotations"] = {**entry.get("annotations", {}), **annotations}
        if name:
            entry["annotations"] = {**entry.get("annotations", {}), REF_NAME: name}
            entries = [e for e in entries if e.get("annotations", {}).get(REF_NAME) != name]
        else:
            entries = [e for e in entries if e["digest"] != descriptor.digest]
        entries.append(entry)
        _atomic_write(self.path / "index.json", _index_bytes(entries))

    def mark(self, key: str, value: str, digest: str) -> None:
        """Annotate the entries of ``digest`` with ``key: value`` and take that annotation from every other entry
        (a marker that one manifest carries, as ``cosign save``'s ``kind`` markers)."""
        entries = [d.to_json_dict() for d in self.read_index().manifests]
        for entry in entries:
            annotations = dict(entry.get("annotations", {}))
            if entry["digest"] == digest:
                annotations[key] = value
            elif annotations.get(key) == value:
                del annotations[key]
            if annotations:
                entry["annotations"] = annotations
            else:
                entry.pop("annotations", None)
        _atomic_write(self.path / "index.json", _index_bytes(entries))


def _index_bytes(entries: list[dict[str, object]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
