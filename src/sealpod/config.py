"""Well-known paths: where sealpod keeps state (``$SEALPOD_STATE_DIR``, else ``/var/lib/sealpod`` as root and
``$XDG_STATE_HOME/sealpod`` otherwise)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's own flag would import typing; mypy honours any flag of this name
if TYPE_CHECKING:
    from pathlib import Path


def state_dir() -> Path:
    """The state directory (not created here)."""
    from pathlib import Path  # here, not above: ``sealpod run``'s client imports this module, not pathlib

    return Path(state_dir_name())


def state_dir_name() -> str:
    """:func:`state_dir` as a string, for the few callers that must not import pathlib (``sealpod run``'s client)."""
    explicit = os.environ.get("SEALPOD_STATE_DIR")
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/var/lib/sealpod"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "sealpod")


def containers_dir_name() -> str:
    """Where the records of the containers the host started live (``<state dir>/containers``)."""
    return os.path.join(state_dir_name(), "containers")


def kek_store_path() -> Path:
    """The tenant's local store of image KEKs (``offline_fs_kbc`` JSON format), ``$SEALPOD_KEK_STORE`` first."""
    from pathlib import Path

    explicit = os.environ.get("SEALPOD_KEK_STORE")
    return Path(explicit) if explicit else state_dir() / "image-keks.json"
