#!/usr/bin/env bash
# sealpod's two set-up commands (see README.md):
#   ./setup.sh run    install everything, then run the main job (sealpod demo)
#   ./setup.sh test   install everything plus the test tools, then lint, type-check and run the whole suite
# Idempotent: it installs only what is missing. Needs root (or sudo) for apt on a fresh Debian 12.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(python3 python3-venv python3-pip ca-certificates docker-registry skopeo umoci runc gnupg gpgv zstd apache2-utils
              postgresql busybox-static libseccomp2 gocryptfs fuse3 e2fsprogs containerd containernetworking-plugins
              time)

# the interpreter of the python3 package above, whatever else is first on PATH: a pyenv build (no PGO/LTO) measured
# 10-20% more CPU per KBS handshake on this code (bench/kbs_load.py)
PYTHON=/usr/bin/python3

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

install_venv() {
    local extras="$1" stamp=".venv/.sealpod-installed$1"
    if [ -f .venv/pyvenv.cfg ] && ! grep -qx "home = $(dirname "$PYTHON")" .venv/pyvenv.cfg; then
        echo "setup: .venv was made by another Python than $PYTHON: making it again" >&2
        rm -rf .venv
    fi
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "setup: installing sealpod$extras into .venv" >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
        touch "$stamp"
    fi
}

case "${1:-}" in
    run)
        install_apt
        install_venv ""
        exec .venv/bin/sealpod demo
        ;;
    test)
        install_apt
        install_venv "[test]"
        scripts/fetch-trixie-tools.sh >/dev/null   # Debian 13 skopeo 1.18 / cosign 2.5 for interop, not installed
        .venv/bin/ruff check src tests bench
        .venv/bin/mypy
        exec .venv/bin/pytest -q tests
        ;;
    *)
        echo "usage: $0 run|test" >&2
        exit 2
        ;;
esac
