"""The names ``sealpod-runtime``'s parts share: where the node config, a container's record and a sealpod image's
marker are, the CRI annotation of a pod's sandbox, the bound on a bundle's config, and the runc used when the config
names none. Built-in modules only: the runtime's front (:mod:`sealpod.runtime.oci_front`) reads them on every call
containerd makes."""

import os

#: The node's runtime config unless ``$SEALPOD_RUNTIME_CONFIG`` names another (:mod:`sealpod.runtime.node_config`).
DEFAULT_CONFIG = "/etc/sealpod/runtime.toml"
#: An enclave container's record, in its directory under the state root (:mod:`sealpod.runtime.oci_state`).
RECORD = "sealpod.json"
#: What the snapshotter puts in the rootfs of a container on a sealpod image (:mod:`sealpod.runtime.snapshotter`).
MARKER_PATH = ".sealpod/image.json"
#: The CRI annotation that says which container of a pod this is (``sandbox``: the pause container).
CONTAINER_TYPE = "io.kubernetes.cri.container-type"
#: The largest bundle config.json read.
MAX_CONFIG = 4 * 1024 * 1024


def default_runc() -> str:
    """The runc on PATH (``shutil.which`` without the shutil module, which imports re), else /usr/sbin/runc."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", "runc")
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return "/usr/sbin/runc"
