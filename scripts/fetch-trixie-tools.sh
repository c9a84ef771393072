#!/usr/bin/env bash
# Fetch Debian 13 (trixie) skopeo 1.18 and cosign 2.5 into .cache/trixie without installing them: the peers the
# keyprovider and sigstore interop tests need (Debian 12's skopeo 1.9.3 has neither). The mirror is the one this
# machine's apt is configured with; nothing is written outside .cache/trixie.
#   scripts/fetch-trixie-tools.sh            -> prints the directory; run .cache/trixie/bin/skopeo
set -euo pipefail
cd "$(dirname "$0")/.."
dest="$PWD/.cache/trixie"
if [ -x "$dest/bin/skopeo" ] && [ -x "$dest/bin/cosign" ]; then echo "$dest"; exit 0; fi

mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror=$(awk '/^URIs:/ {print $2; exit}' "$f")
    [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "fetch-trixie-tools: no Debian mirror found in the apt configuration" >&2; exit 1; }
mirror="${mirror%/}"; mirror="${mirror%-security}"

work="$dest/apt"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$dest/debs" "$dest/root" "$dest/bin"
echo "deb [trusted=yes] $mirror trixie main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=-" -o "Dir::State::Lists=$work/lists"
          -o "Dir::Cache=$work/cache" -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1")
apt-get "${apt_opts[@]}" update -qq >&2
cd "$dest/debs"
chown -R _apt "$dest/debs" 2>/dev/null || true
apt-get "${apt_opts[@]}" download skopeo cosign libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0 \
    libdevmapper1.02.1 libbtrfs0t64 libselinux1 libpcre2-8-0 libudev1 libsubid5 libcap2 libseccomp2 libaudit1 \
    libbsd0 libmd0 libcap-ng0 >&2 || true
for deb in *.deb; do dpkg-deb -x "$deb" "$dest/root"; done
libs="$dest/root/lib/x86_64-linux-gnu:$dest/root/usr/lib/x86_64-linux-gnu"
loader=""
for candidate in "$dest/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$dest/root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"; do
    if [ -e "$candidate" ]; then loader="$candidate"; break; fi
done
[ -n "$loader" ] || { echo "fetch-trixie-tools: no dynamic loader in the trixie libc6" >&2; exit 1; }
cat > "$dest/bin/skopeo" <<WRAP
#!/bin/sh
exec "$loader" --library-path "$libs" "$dest/root/usr/bin/skopeo" "\$@"
WRAP
chmod +x "$dest/bin/skopeo"
ln -sf "$dest/root/usr/bin/cosign" "$dest/bin/cosign"
"$dest/bin/skopeo" --version >&2
"$dest/bin/cosign" version >/dev/null 2>&1 || { echo "fetch-trixie-tools: cosign does not run" >&2; exit 1; }
echo "$dest"
