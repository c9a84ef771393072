"""containerd's configuration for a sealpod node: the ``sealpod`` runtime handler (``sealpod-runtime`` as the runc
shim's binary), the snapshotter proxy plugin, and the CRI settings they need.

containerd 1.6 has one snapshotter for everything CRI pulls, so ``sealpod`` becomes the CRI snapshotter: it unpacks
ordinary images like overlayfs and keeps the layers of encrypted images away from the host. CRI must pass the image's
labels to the snapshotter (``disable_snapshot_annotations = false``). The settings are merged into the node's existing
``config.toml`` key by key (containerd's own ``imports`` would replace the whole CRI section).
"""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from sealpod.errors import SealpodError
from sealpod.runtime.oci_bundle import INIT_DATA_ANNOTATIONS

HANDLER = "sealpod"
SNAPSHOTTER = "sealpod"
CRI = "io.containerd.grpc.v1.cri"
DEFAULT_RUNTIME_BINARY = "/opt/sealpod/bin/sealpod-runtime"
DEFAULT_SNAPSHOTTER_SOCKET = "/run/sealpod/snapshotter.sock"


def sealpod_settings(
    runtime_binary: str = DEFAULT_RUNTIME_BINARY, snapshotter_socket: str = DEFAULT_SNAPSHOTTER_SOCKET
) -> dict[str, Any]:
    """The keys a sealpod node sets in containerd's (version 2) configuration."""
    return {
        "version": 2,
        "proxy_plugins": {SNAPSHOTTER: {"type": "snapshot", "address": snapshotter_socket}},
        "plugins": {
            CRI: {
                "containerd": {
                    "snapshotter": SNAPSHOTTER,
                    "disable_snapshot_annotations": False,
                    "runtimes": {
                        HANDLER: {
                            "runtime_type": "io.containerd.runc.v2",
                            "options": {"BinaryName": runtime_binary},
                            # a pod's CoCo init-data reaches sealpod-runtime in the containers' annotations
                            "pod_annotations": list(INIT_DATA_ANNOTATIONS),
                        }
                    },
                }
            }
        },
    }


def merge(base: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``settings`` merged in table by table (``settings`` wins on a conflicting key)."""
    merged = copy.deepcopy(base)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def configure(path: Path, settings: dict[str, Any]) -> bool:
    """Merge ``settings`` into the config file at ``path`` (kept as ``path.orig`` the first time); returns whether
    the file changed, so that containerd is restarted only when it must be."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    try:
        base = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SealpodError(f"containerd's config {path} is not valid TOML: {err}") from None
    if base.get("version", 2) != 2:
        raise SealpodError(f"containerd's config {path} is version {base.get('version')}; sealpod needs version 2")
    merged = merge(base, settings)
    if merged == base:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = path.with_name(path.name + ".orig")
    if text and not backup.exists():
        backup.write_text(text)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomli_w.dumps(merged))
    os.replace(tmp, path)
    return True
