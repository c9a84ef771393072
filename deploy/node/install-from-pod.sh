#!/bin/sh
# Runs in the installer DaemonSet's privileged pod (hostPID): copies sealpod's sources to the host's /opt/sealpod and
# runs install-node.sh in the host's own namespaces (nsenter into pid 1), then sleeps.
set -eu
mkdir -p /host/opt/sealpod/src /host/opt/sealpod/etc
cp -a /sealpod/. /host/opt/sealpod/src/
cp /etc/sealpod-node/runtime.toml /host/opt/sealpod/etc/runtime.toml
nsenter --target 1 --mount --uts --ipc --net -- /bin/sh /opt/sealpod/src/deploy/node/install-node.sh
echo "sealpod-node-installer: this node is set up; label it: kubectl label node $(hostname) sealpod.io/node=true"
exec sleep infinity
