#!/usr/bin/env bash
# noble-root.sh TARBALL: an Ubuntu 24.04 (noble) root file system like the
# official ubuntu:24.04 image, as a tarball to `podman import` / `docker
# import` (no registry needed). Made once with debootstrap; an existing
# TARBALL is kept (delete it, or bump the caller's version, to remake it).
#
# What the official image has and the builds rely on: deb822 sources with all
# components, a minimized dpkg (no documentation or translations), no
# recommended packages, and the `ubuntu` user at uid 1000 (labinit's rename
# rule is tested against it). The host's extra CA certificates
# (/usr/local/share/ca-certificates) are copied in, so that HTTPS from RUN
# steps works behind an intercepting proxy once lab-base installs
# ca-certificates; pip is pointed at the system bundle.
#
# Environment: UBUNTU_MIRROR (default http://archive.ubuntu.com/ubuntu) for
# debootstrap; the sources inside stay the official ones.
set -euo pipefail

out=${1:?usage: noble-root.sh TARBALL}
[ -f "$out" ] && exit 0
[ "$(id -u)" = 0 ] || { echo "noble-root.sh: run as root (debootstrap)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "noble-root.sh: debootstrap is not installed (tests/tools/deps.sh)" >&2; exit 2; }

archive=http://archive.ubuntu.com/ubuntu
security=http://security.ubuntu.com/ubuntu
mirror=${UBUNTU_MIRROR:-$archive}

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "$(dirname "$out")/noble-root.XXXXXX")
unmount_under() {
    # debootstrap mounts /proc and /sys in its target; a failed run can leave them.
    awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}
cleanup() {
    unmount_under "$tmp"
    rm -rf "$tmp"
}
trap cleanup EXIT
root=$tmp/root

# Debian has no Ubuntu keyring: the download is not verified here, but the
# root carries Ubuntu's keyring and apt verifies everything inside builds.
debootstrap --no-check-gpg --variant=minbase noble "$root" "$mirror" /usr/share/debootstrap/scripts/gutsy
unmount_under "$root"

rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/ubuntu.sources" <<EOF
Types: deb
URIs: $archive/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: $security/
Suites: noble-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
EOF
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat >"$root/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
# Like the official minimized image: no documentation or translations.
path-exclude=/usr/share/man/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/99labkit-no-recommends"
chroot "$root" /usr/sbin/groupadd -g 1000 ubuntu
chroot "$root" /usr/sbin/useradd -u 1000 -g 1000 -m -s /bin/bash -c Ubuntu ubuntu

mkdir -p "$root/usr/local/share/ca-certificates"
for f in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$f" ] && cp "$f" "$root/usr/local/share/ca-certificates/"
done
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"

rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.bash_history
: >"$root/etc/hostname"
tar --numeric-owner --xattrs -C "$root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
