"""sealpod's containerd snapshotter (a proxy plugin): overlayfs for ordinary images, remote snapshots for encrypted
ones, so that the host never fetches, decrypts or unpacks an encrypted layer.

containerd (``config.toml`` version 2)::

    [proxy_plugins.sealpod]
      type = "snapshot"
      address = "/run/sealpod/snapshotter.sock"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "sealpod"
      disable_snapshot_annotations = false

and ``sealpod snapshotter serve --socket /run/sealpod/snapshotter.sock --root /var/lib/sealpod/snapshotter
--containerd-root /var/lib/containerd``. A container rootfs on an encrypted image holds :data:`MARKER_PATH`; read
it with :func:`read_marker`. Modules: ``store`` (SQLite metadata), ``overlay`` (directories and mounts), ``filters``
(List filters), ``content`` (manifests and configs), ``marker`` (what a remote snapshot holds), ``remote`` (the
decision), ``service`` (gRPC), ``server`` (socket and signals).
"""

from sealpod.runtime.oci_names import MARKER_PATH
from sealpod.runtime.snapshotter.marker import ImageMarker, read_marker

__all__ = ["MARKER_PATH", "ImageMarker", "read_marker"]
