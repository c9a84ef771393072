"""Pulling an image into a root filesystem: one streaming pass per layer, committed only when all is verified.

Per layer, three stages overlap: a worker thread downloads the blob (its digest and size checked as it streams)
and decrypts it if asked, a second one inflates it and hashes the result (the diff_id), and the caller's thread
extracts the tar into a private staging directory next to the target. Only when every blob digest, size and
diff_id (and, for encrypted layers, MAC and plaintext digest) have matched is the staging directory renamed
into place; on any error it is removed, so the target is either the whole image or untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sealpod.errors import DigestMismatchError, UnpackError, UnsafeLayerError
from sealpod.oci.chunks import ChunkReader
from sealpod.oci.decompress import decompressed
from sealpod.oci.models import Descriptor, Platform
from sealpod.oci.pipeline import Consumer, in_thread
from sealpod.oci.source import ImageStore, ResolvedImage, resolve
from sealpod.oci.unpack import LayerStats, RootfsWriter, UnpackOptions

#: Chunks each stage may run ahead of the next: 2 keeps every stage busy (as fast as 4, measured on a 194 MB pull)
#: with 2.5 MiB less of a pull's peak memory.
QUEUE_DEPTH = 2

#: A layer at most this big (compressed) is started while the one before it is extracted: small layers are bound by
#: their requests' latency, which this hides; a bigger one would only add its queues (~4 MiB) to the peak memory.
LOOKAHEAD_MAX_BYTES = 8 * 1024 * 1024

#: A layer's compressed bytes may be transformed before inflating (ocicrypt decryption plugs in here).
BlobTransform = Callable[[Descriptor, Iterator[bytes]], Iterator[bytes]]


class PullEvents:
    """Callbacks for progress; the default does nothing."""

    def resolved(self, image: ResolvedImage) -> None:
        """The manifest and config are known."""

    def layer_started(self, index: int, descriptor: Descriptor) -> None:
        """Layer ``index`` begins."""

    def layer_progress(self, index: int, nbytes: int) -> None:
        """``nbytes`` more compressed bytes of layer ``index`` have arrived."""

    def layer_done(self, index: int, stats: LayerStats) -> None:
        """Layer ``index`` is applied (still in staging)."""


@dataclass(slots=True)
class PullResult:
    """What a pull produced."""

    image: ResolvedImage
    rootfs: Path
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        """Entries that were deliberately not created (device nodes without permission)."""
        return [item for stats in self.layers for item in stats.skipped]


def _layer_content(
    store: ImageStore,
    descriptor: Descriptor,
    diff_id: str,
    on_bytes: Callable[[int], None],
    transform: BlobTransform | None,
    verify_only: threading.Event,
) -> Iterator[bytes]:
    """Inflated layer content, diff_id checked at the end. When ``verify_only`` is set (the consumer refused the
    content), the rest of the blob is read without inflating, only so that its digest check can run."""

    def fetch() -> Iterator[bytes]:
        blob = store.blob_stream(descriptor, progress=on_bytes)
        return transform(descriptor, blob) if transform is not None else blob

    blob = in_thread(fetch, depth=QUEUE_DEPTH, name="sealpod-fetch")  # download, digest, decrypt overlap inflating
    algorithm = diff_id.split(":", 1)[0]
    hasher = hashlib.new(algorithm)
    try:
        try:
            for chunk in decompressed(blob):
                if verify_only.is_set():
                    break
                hasher.update(chunk)
                yield chunk
        except UnsafeLayerError:
            verify_only.set()  # a corrupt stream is most often a tampered blob: let the digest check say so
            _drain(blob)
            raise
        if verify_only.is_set():
            _drain(blob)
            return
    finally:
        blob.close()
    got = f"{algorithm}:{hasher.hexdigest()}"
    if got != diff_id:
        raise DigestMismatchError(
            f"layer {descriptor.digest} unpacks to {got}, but the image config says its diff_id is {diff_id}",
            hint="the layer or the config was altered; nothing from this image has been committed",
        )


def _drain(chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


def check_target(target: Path) -> None:
    """Refuse a target that exists and is not an empty directory (callers may check before any network work)."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UnpackError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise UnpackError(
            f"{target} exists and is not empty",
            hint="pull into a new or empty directory (sealpod never merges an image into existing files)",
        )


def unpack_image(
    store: ImageStore,
    image: ResolvedImage,
    target: Path,
    *,
    options: UnpackOptions | None = None,
    events: PullEvents | None = None,
    transform: BlobTransform | None = None,
) -> PullResult:
    """Unpack a resolved image's layers into ``target`` (new or empty), atomically."""
    events = events or PullEvents()
    target = target.absolute()
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    result = PullResult(image, target)
    layers = list(zip(image.manifest.layers, image.config.rootfs.diff_ids, strict=True))

    def start(index: int) -> tuple[Consumer[bytes], threading.Event]:
        descriptor, diff_id = layers[index]
        events.layer_started(index, descriptor)
        verify_only = threading.Event()
        progress = lambda n: events.layer_progress(index, n)  # noqa: E731
        make = lambda: _layer_content(store, descriptor, diff_id, progress, transform, verify_only)  # noqa: E731
        return in_thread(make, depth=QUEUE_DEPTH, name="sealpod-inflate"), verify_only

    following: tuple[Consumer[bytes], threading.Event] | None = None
    try:
        os.chmod(staging, 0o755)  # noqa: S103 - a rootfs's / is world-readable
        writer = RootfsWriter(str(staging), options)
        for index in range(len(layers)):
            content, verify_only = following or start(index)
            # a small next layer's download and inflation start now, beside this one's extraction (one layer
            # ahead, bounded by its queues), so that its request's latency does not wait for this layer's end
            upcoming = index + 1 < len(layers) and layers[index + 1][0].size <= LOOKAHEAD_MAX_BYTES
            following = start(index + 1) if upcoming else None
            try:
                reader = ChunkReader(content)
                try:
                    stats = writer.apply(reader)
                except UnsafeLayerError:
                    verify_only.set()  # if the blob itself was altered, report that rather than its symptom
                    reader.drain()
                    raise
                reader.drain()
            finally:
                content.close()
            result.layers.append(stats)
            events.layer_done(index, stats)
        writer.finish()
        if target.is_dir():
            target.rmdir()
        os.rename(staging, target)
    except BaseException:
        if following is not None:
            following[0].close()  # the layer started ahead
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def pull(
    store: ImageStore,
    target: Path,
    platform: Platform,
    *,
    options: UnpackOptions | None = None,
    events: PullEvents | None = None,
    transform: BlobTransform | None = None,
) -> PullResult:
    """Resolve the store's image for ``platform`` and unpack it into ``target``."""
    image = resolve(store, platform)
    (events or PullEvents()).resolved(image)
    return unpack_image(store, image, target, options=options, events=events, transform=transform)
