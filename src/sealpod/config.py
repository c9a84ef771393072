"""Well-known paths: where sealpod keeps state (``$SEALPOD_STATE_DIR``, else ``/var/lib/sealpod`` as root and
``$XDG_STATE_HOME/sealpod`` otherwise)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The state directory (not created here)."""
    explicit = os.environ.get("SEALPOD_STATE_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/lib/sealpod")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sealpod"


def kek_store_path() -> Path:
    """The tenant's local store of image KEKs (``offline_fs_kbc`` JSON format), ``$SEALPOD_KEK_STORE`` first."""
    explicit = os.environ.get("SEALPOD_KEK_STORE")
    return Path(explicit) if explicit else state_dir() / "image-keks.json"
