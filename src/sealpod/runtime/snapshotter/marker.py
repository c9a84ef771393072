"""What a remote snapshot's ``fs`` holds: the marker naming the image and, when the image config names its user or
group, placeholder ``/etc/passwd`` and ``/etc/group`` entries.

The marker tells sealpod's runtime that a container's rootfs is a sealpod image. The placeholders exist because
containerd's CRI resolves a named ``User`` (``app``, ``app:staff``) through the rootfs's /etc/passwd and /etc/group
when it creates the container, and fails without them; they map the names to :data:`PLACEHOLDER_ID` (nobody), never
to the image's real ids, which only the enclave learns from the decrypted layers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sealpod.runtime.oci_names import MARKER_PATH

"""Where a remote snapshot (and so a container rootfs on it) holds the image's identity."""

PLACEHOLDER_ID = 65534
_NAME = re.compile(r"[A-Za-z0-9_.@$+-]{1,256}")


@dataclass(frozen=True)
class ImageMarker:
    """The content of :data:`MARKER_PATH`: the image reference (when CRI gave it) and the manifest digest."""

    image: str | None
    manifest: str

    def to_json(self) -> bytes:
        """The marker file's bytes."""
        return json.dumps({"image": self.image, "manifest": self.manifest}, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> ImageMarker:
        """Parse a marker file (ValueError if malformed)."""
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("marker is not a JSON object")
        image, manifest = doc.get("image"), doc.get("manifest")
        if not (image is None or isinstance(image, str)) or not isinstance(manifest, str):
            raise ValueError("marker needs a string manifest and a string or null image")
        return cls(image, manifest)


def read_marker(rootfs: Path) -> ImageMarker | None:
    """The marker in a container's rootfs, or None for an ordinary image (for sealpod's OCI runtime)."""
    try:
        with open(rootfs / MARKER_PATH, "rb") as f:
            return ImageMarker.from_json(f.read(65536))
    except FileNotFoundError:
        return None


def named_ids(user: str) -> tuple[str | None, str | None]:
    """The user and group NAMES in an image config's ``User`` (``name``, ``name:group``, ``uid:group``…) that
    containerd looks up in the rootfs; numeric parts and unusable names give None."""
    parts = user.split(":")
    if not user or len(parts) > 2:
        return None, None

    def name(part: str) -> str | None:
        return part if part and not part.isdigit() and _NAME.fullmatch(part) else None

    return name(parts[0]), name(parts[1]) if len(parts) == 2 else None


def populate(fs: Path, marker: ImageMarker, user: str = "") -> None:
    """Fill a new remote snapshot's ``fs``: the marker, and placeholders for the names in ``user``."""
    _write(fs / MARKER_PATH, marker.to_json())
    user_name, group_name = named_ids(user)
    if user_name is not None:
        entry = f"{user_name}:x:{PLACEHOLDER_ID}:{PLACEHOLDER_ID}:sealpod placeholder:/nonexistent:/sbin/nologin\n"
        _write(fs / "etc" / "passwd", entry.encode())
    if group_name is not None:
        _write(fs / "etc" / "group", f"{group_name}:x:{PLACEHOLDER_ID}:\n".encode())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.parent.chmod(0o755)
    path.write_bytes(data)
    path.chmod(0o644)
