#!/bin/sh
# Sets up this host (Debian 12) as a sealpod node: packages, /opt/sealpod/venv, /etc/sealpod/runtime.toml, the
# snapshotter service, and containerd's sealpod runtime handler and proxy plugin. Idempotent: containerd is restarted
# only when its config changed. Run as root on the host (install-from-pod.sh does it from the DaemonSet).
set -eu
SRC=/opt/sealpod/src
export DEBIAN_FRONTEND=noninteractive
missing=""
for pkg in python3 python3-venv runc gocryptfs fuse3 e2fsprogs libseccomp2 containerd; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing
fi
[ -x /opt/sealpod/venv/bin/python ] || python3 -m venv /opt/sealpod/venv
/opt/sealpod/venv/bin/pip install -q "$SRC"
mkdir -p /opt/sealpod/bin /etc/sealpod /var/lib/sealpod
ln -sf /opt/sealpod/venv/bin/sealpod-runtime /opt/sealpod/bin/sealpod-runtime
[ -f /opt/sealpod/etc/runtime.toml ] && install -m 0644 /opt/sealpod/etc/runtime.toml /etc/sealpod/runtime.toml
install -m 0644 "$SRC/deploy/node/sealpod-snapshotter.service" /etc/systemd/system/sealpod-snapshotter.service
systemctl daemon-reload
systemctl enable --now sealpod-snapshotter.service
status=0
/opt/sealpod/venv/bin/sealpod node containerd-config --config /etc/containerd/config.toml || status=$?
case $status in
    0) systemctl restart containerd ;;
    3) ;;  # already set up
    *) exit "$status" ;;
esac
