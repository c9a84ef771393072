"""The remote-snapshot decision: layers of encrypted images are never fetched, decrypted or unpacked on the host.

During a pull, containerd's unpacker prepares each layer with ``containerd.io/snapshot.ref`` (the layer's chain id)
and, from CRI (``disable_snapshot_annotations = false``), the ``containerd.io/snapshot/cri.*`` labels. When the
manifest named by ``cri.manifest-digest`` has any layer whose media type ends in ``+encrypted``, the snapshotter
creates a committed snapshot at once (see :mod:`.marker` for its content) and answers ALREADY_EXISTS; containerd's
metadata layer then finds it by listing committed snapshots with the same ``snapshot.ref`` and parent, records it
under the chain id and skips fetching and applying the layer. A container's rootfs prepared on such a chain shows
the marker, which tells sealpod's runtime to start the image in an enclave.

A manifest that is missing, too big, not JSON, of another digest algorithm or not matching its digest makes the
layer "not remote", with a warning: containerd then handles it as usual, which for an encrypted layer fails in
its diff applier (the host has no keys), so nothing is ever decrypted on the host.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sealpod.runtime.snapshotter.content import ContentStore, ContentUnavailableError, config_user, is_encrypted
from sealpod.runtime.snapshotter.errors import AlreadyExistsError, NotFoundError
from sealpod.runtime.snapshotter.marker import ImageMarker, populate
from sealpod.runtime.snapshotter.overlay import OverlaySnapshotter
from sealpod.runtime.snapshotter.store import Info

log = logging.getLogger(__name__)

LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
LABEL_IMAGE_REF = "containerd.io/snapshot/cri.image-ref"
LABEL_MANIFEST_DIGEST = "containerd.io/snapshot/cri.manifest-digest"
LABEL_LAYER_DIGEST = "containerd.io/snapshot/cri.layer-digest"
LABEL_IMAGE_LAYERS = "containerd.io/snapshot/cri.image-layers"
LABEL_REMOTE = "containerd.io/snapshot/sealpod.remote"
"""Set to "true" on the remote snapshots this module makes."""

REMOTE_NAME_PREFIX = "sealpod:remote/"
"""Backend names of remote snapshots; ':' cannot occur in the containerd namespace that starts its own keys."""


@dataclass(frozen=True)
class ImageFacts:
    """What the decision needs from an image: whether a layer is encrypted, and its config's ``User``."""

    encrypted: bool
    user: str = ""


def remote_name(key: str) -> str:
    """The backend name of the remote snapshot made for the extraction key ``key`` (unique, as keys are)."""
    return REMOTE_NAME_PREFIX + key


def is_remote(info: Info) -> bool:
    """Whether ``info`` is a remote snapshot made here."""
    return info.labels.get(LABEL_REMOTE) == "true"


def walk_order(infos: list[Info]) -> list[Info]:
    """Remote snapshots first, newest first, then the others in their order.

    containerd's metadata layer takes the FIRST committed snapshot with the right ``snapshot.ref`` and parent
    after an ALREADY_EXISTS; another namespace may hold an ordinary snapshot of the same chain (the diff ids of an
    encrypted layer are those of its plaintext), so the remote snapshot just made must come first.
    """
    remote = sorted((i for i in infos if is_remote(i)), key=lambda i: i.created, reverse=True)
    return remote + [i for i in infos if not is_remote(i)]


class RemoteDecider:
    """Decides per Prepare whether to make a remote snapshot, and makes it."""

    CACHE_SIZE = 256

    def __init__(self, snapshotter: OverlaySnapshotter, content: ContentStore) -> None:
        self.snapshotter = snapshotter
        self.content = content
        self._facts: dict[str, ImageFacts] = {}  # by manifest digest: content-addressed, so immutable

    def image_facts(self, manifest_digest: str) -> ImageFacts:
        """Whether the image is encrypted and, if so, its config's user (ContentUnavailableError: no manifest)."""
        facts = self._facts.get(manifest_digest)
        if facts is None:
            manifest = self.content.read_manifest(manifest_digest)
            facts = ImageFacts(is_encrypted(manifest))
            if facts.encrypted:
                try:
                    facts = ImageFacts(True, config_user(self.content.read_config(manifest)))
                except ContentUnavailableError as err:  # still remote; CRI may fail on a named user
                    log.warning("manifest %s: config unusable, no user placeholders: %s", manifest_digest, err)
            if len(self._facts) >= self.CACHE_SIZE:
                self._facts.clear()
            self._facts[manifest_digest] = facts
        return facts

    def remote_facts(self, labels: Mapping[str, str]) -> ImageFacts | None:
        """The image's facts when this Prepare is for a layer of an encrypted image, else None."""
        target, digest = labels.get(LABEL_SNAPSHOT_REF), labels.get(LABEL_MANIFEST_DIGEST)
        if not target or not digest:
            return None
        try:
            facts = self.image_facts(digest)
        except ContentUnavailableError as err:
            log.warning("snapshot %s: manifest %s unusable, unpacking normally: %s", target, digest, err)
            return None
        return facts if facts.encrypted else None

    def prepare(self, key: str, parent: str, labels: Mapping[str, str]) -> None:
        """Return when the layer is not remote; otherwise make the remote snapshot and raise ALREADY_EXISTS."""
        facts = self.remote_facts(labels)
        if facts is None:
            return
        target = labels[LABEL_SNAPSHOT_REF]
        try:
            self.snapshotter.stat(key)
        except NotFoundError:
            pass
        else:
            raise AlreadyExistsError(f"snapshot {key} already exists")
        marker = ImageMarker(labels.get(LABEL_IMAGE_REF), labels[LABEL_MANIFEST_DIGEST])
        name = remote_name(key)
        self.snapshotter.create_committed(
            name, parent, {**labels, LABEL_REMOTE: "true"}, lambda fs: populate(fs, marker, facts.user)
        )
        log.info("remote snapshot %s for %s (image %s)", name, target, marker.image)
        raise AlreadyExistsError(f"target snapshot {target!r}: remote snapshot {name!r} made")
