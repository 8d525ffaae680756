#!/usr/bin/env bash
# Build (once) a minimal Debian 12 root for tests and benchmarks: debootstrap
# minbase plus sudo, passwd and login, the tools the legacy scripts and the
# "real tools" tests need. Uses the mirror this machine's apt is configured
# with. Usage: debian-root.sh DEST
set -euo pipefail
dest=${1:?usage: debian-root.sh DEST}
[ -f "$dest/.complete" ] && exit 0
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "debian-root.sh: no Debian mirror found in apt's sources" >&2; exit 1; }
tmp="$dest.tmp.$$"
rm -rf "$tmp"
mkdir -p "$(dirname "$dest")"
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase --include=sudo,passwd,login bookworm "$tmp" "$mirror" >/dev/null
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
