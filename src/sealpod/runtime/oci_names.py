"""The names ``sealpod-runtime``'s parts share: where the node config, a container's record and a sealpod image's
marker are, the CRI annotation of a pod's sandbox, and the bound on a bundle's config. No imports: the runtime's
front (:mod:`sealpod.runtime.oci_front`) reads them on every call containerd makes."""

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
