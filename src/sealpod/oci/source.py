"""Where images live: ``docker://REF`` (or a bare REF) in a registry, or ``oci:DIR[:TAG]`` on disk.

Both kinds of location open to an :class:`ImageStore`, which reads manifests and blobs (each verified) and
writes them; :func:`resolve` turns a location into one platform's manifest and config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from sealpod.errors import ManifestError, UsageError
from sealpod.oci.auth import Credentials
from sealpod.oci.layout import OciLayout
from sealpod.oci.models import (
    MAX_CONFIG_BYTES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_config,
    parse_manifest_or_index,
)
from sealpod.oci.platform import select_manifest
from sealpod.oci.reference import ImageReference, parse_reference
from sealpod.oci.registry import FetchedManifest, Progress, RegistryClient, counted

MAX_INDEX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to talk to registries (the CLI's ``--tls-verify`` and ``--ca-file``)."""

    tls_verify: bool = True
    ca_file: str | None = None
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class ImageLocation:
    """A parsed transport reference: a registry image or an OCI layout directory."""

    transport: str
    reference: ImageReference | None = None
    path: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        if self.transport == "oci":
            return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")
        return f"docker://{self.reference}"


def parse_location(text: str) -> ImageLocation:
    """Parse ``docker://REF``, ``oci:DIR[:TAG]`` or a bare registry reference."""
    if text.startswith("oci:"):
        rest = text[len("oci:") :]
        path, _, tag = rest.partition(":")
        if not path:
            raise UsageError(f"invalid location {text!r}: no directory", hint="write it as oci:DIR[:TAG]")
        return ImageLocation("oci", path=path, tag=tag or None)
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    elif "://" in text or text.split(":", 1)[0] in ("docker-archive", "oci-archive", "dir", "containers-storage"):
        raise UsageError(
            f"unsupported transport in {text!r}",
            hint="sealpod reads docker://REF (or a bare REF) and oci:DIR[:TAG]",
        )
    return ImageLocation("docker", reference=parse_reference(text))


class ImageStore(Protocol):
    """Reads and writes one image repository's manifests and blobs."""

    def describe(self) -> str:
        """How to name this store in messages."""
        ...

    def get_manifest(self, selector: str | None) -> FetchedManifest:
        """The manifest or index for a tag or digest (None: the location's own)."""
        ...

    def get_blob(self, descriptor: Descriptor, limit: int) -> bytes:
        """A small blob whole, verified."""
        ...

    def blob_stream(self, descriptor: Descriptor, *, progress: Progress | None = None) -> Iterator[bytes]:
        """A blob in chunks, verified as it streams."""
        ...

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is present."""
        ...

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes], *, progress: Progress | None = None) -> None:
        """Store a blob whose digest and size are known."""
        ...

    def upload_blob(self, chunks: Iterable[bytes], *, progress: Progress | None = None) -> Descriptor:
        """Store a blob whose digest is computed as it streams; its descriptor (octet-stream media type)."""
        ...

    def put_manifest(self, raw: bytes, media_type: str) -> str:
        """Store a manifest under the location's tag; return its digest."""
        ...

    def put_manifest_as(self, raw: bytes, media_type: str, reference: str) -> str:
        """Store a manifest under another tag of the same repository; return its digest."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class RegistryStore:
    """An :class:`ImageStore` over a registry repository."""

    def __init__(self, reference: ImageReference, options: RegistryOptions) -> None:
        self.reference = reference
        self.client = RegistryClient(
            reference.registry_host,
            tls_verify=options.tls_verify,
            ca_file=options.ca_file,
            credentials=options.credentials,
        )

    def describe(self) -> str:
        return f"docker://{self.reference}"

    def get_manifest(self, selector: str | None) -> FetchedManifest:
        return self.client.get_manifest(self.reference.path, selector or self.reference.selector)

    def get_blob(self, descriptor: Descriptor, limit: int) -> bytes:
        return self.client.get_blob(self.reference.path, descriptor, limit)

    def blob_stream(self, descriptor: Descriptor, *, progress: Progress | None = None) -> Iterator[bytes]:
        return self.client.blob_stream(self.reference.path, descriptor, progress=progress)

    def has_blob(self, digest: str) -> bool:
        return self.client.blob_exists(self.reference.path, digest)

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes], *, progress: Progress | None = None) -> None:
        self.client.push_blob(self.reference.path, descriptor, chunks, progress=progress)

    def upload_blob(self, chunks: Iterable[bytes], *, progress: Progress | None = None) -> Descriptor:
        return self.client.upload_blob(self.reference.path, chunks, progress=progress)

    def put_manifest(self, raw: bytes, media_type: str) -> str:
        return self.client.push_manifest(self.reference.path, self.reference.selector, raw, media_type)

    def put_manifest_as(self, raw: bytes, media_type: str, reference: str) -> str:
        return self.client.push_manifest(self.reference.path, reference, raw, media_type)

    def close(self) -> None:
        self.client.close()


class LayoutStore:
    """An :class:`ImageStore` over an OCI layout directory and one of its names."""

    def __init__(self, path: str, tag: str | None) -> None:
        self.layout = OciLayout(path)
        self.tag = tag

    def describe(self) -> str:
        return f"oci:{self.layout.path}" + (f":{self.tag}" if self.tag else "")

    def read_index(self) -> Index:
        """The layout's ``index.json``."""
        return self.layout.read_index()

    def mark(self, key: str, value: str, digest: str) -> None:
        """Annotate the index entries of ``digest`` with ``key: value`` (and no other entry)."""
        self.layout.mark(key, value, digest)

    def get_manifest(self, selector: str | None) -> FetchedManifest:
        return self.layout.get_manifest(selector or self.tag)

    def get_blob(self, descriptor: Descriptor, limit: int) -> bytes:
        return self.layout.get_blob(descriptor, limit)

    def blob_stream(self, descriptor: Descriptor, *, progress: Progress | None = None) -> Iterator[bytes]:
        return self.layout.blob_stream(descriptor, progress=progress)

    def has_blob(self, digest: str) -> bool:
        return self.layout.has_blob(digest)

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes], *, progress: Progress | None = None) -> None:
        if not self.layout.has_blob(descriptor.digest):
            self.layout.put_blob(counted(chunks, progress), descriptor.digest, descriptor.size)

    def upload_blob(self, chunks: Iterable[bytes], *, progress: Progress | None = None) -> Descriptor:
        return self.layout.put_blob(counted(chunks, progress))

    def put_manifest(self, raw: bytes, media_type: str) -> str:
        return self.put_manifest_as(raw, media_type, self.tag)

    def put_manifest_as(self, raw: bytes, media_type: str, reference: str | None) -> str:
        descriptor = self.layout.put_bytes(raw, media_type)
        self.layout.tag(descriptor, reference)
        return descriptor.digest

    def close(self) -> None:
        pass


def open_store(location: ImageLocation, options: RegistryOptions | None = None) -> ImageStore:
    """The store for a location."""
    if location.transport == "oci":
        assert location.path is not None
        return LayoutStore(location.path, location.tag)
    assert location.reference is not None
    return RegistryStore(location.reference, options or RegistryOptions())


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """One platform's image: its manifest (and the index it came from) and config, all verified."""

    manifest: Manifest
    manifest_raw: bytes
    manifest_digest: str
    media_type: str
    config: ImageConfig
    config_raw: bytes
    index: Index | None = None
    index_digest: str | None = None


def resolve(store: ImageStore, platform: Platform, on_top: Callable[[str], None] | None = None) -> ResolvedImage:
    """Fetch the location's manifest, descending through indexes by ``platform``, and its config; ``on_top`` is
    called with the top manifest's (or index's) digest as soon as it is known (its signatures name it)."""
    fetched = store.get_manifest(None)
    if on_top is not None:
        on_top(fetched.digest)
    top: Index | None = None
    top_digest: str | None = None
    for _ in range(MAX_INDEX_DEPTH):
        document = parse_manifest_or_index(fetched.raw, fetched.media_type, f"manifest {fetched.digest}")
        if isinstance(document, Manifest):
            break
        if top is None:
            top, top_digest = document, fetched.digest
        chosen = select_manifest(document, platform)
        fetched = store.get_manifest(chosen.digest)
    else:
        raise ManifestError(f"{store.describe()}: indexes nested more than {MAX_INDEX_DEPTH} deep")
    config_raw = store.get_blob(document.config, MAX_CONFIG_BYTES)
    config = parse_config(config_raw)
    if len(document.layers) != len(config.rootfs.diff_ids):
        raise ManifestError(
            f"{store.describe()}: the manifest lists {len(document.layers)} layers but the config "
            f"{len(config.rootfs.diff_ids)} diff_ids"
        )
    media_type = document.media_type or fetched.media_type or "application/vnd.oci.image.manifest.v1+json"
    return ResolvedImage(document, fetched.raw, fetched.digest, media_type, config, config_raw, top, top_digest)
