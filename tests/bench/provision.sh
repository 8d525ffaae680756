#!/usr/bin/env bash
# Provisioning cost (user + group + home + sudo): `labinit setup` against the
# legacy user step (groupadd, useradd, chpasswd, usermod, sudoers), both in the
# same throwaway copy of a Debian 12 root whose /etc is an overlay (a fresh
# writable layer for every run, as in a container). Reports
# medians over many runs, each minus a bare `chroot ROOT /bin/true`, and the
# ratio. Usage: provision.sh LABINIT DEBIAN_ROOT [RUNS]
set -euo pipefail
labinit=${1:?labinit binary}; debroot=${2:?debian root}; runs=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/rounds.sh
. "$here/rounds.sh"
work=$(mktemp -d /tmp/labkit-bench-provision.XXXXXX)
trap 'umount "$work/root/etc" 2>/dev/null || true; rm -rf "$work"' EXIT
R=$work/root
cp -a "$debroot/." "$R"
install -D -m 0755 "$labinit" "$R/opt/lab/labinit"
install -D -m 0755 "$here/../legacy/setup_steps/10_cluster_user.sh" "$R/opt/legacy/10_cluster_user.sh"
cp -a "$R/etc" "$work/etc.pristine"
# /etc is an overlay as in a container: the image's /etc below, a fresh
# writable layer on the disk above, new for every run.
cat > "$work/restore" <<RESTORE
#!/bin/sh
umount "$R/etc" 2>/dev/null; rm -rf "$R/home/alice" "$work/upper" "$work/ovlwork"
mkdir -p "$R/etc" "$work/upper" "$work/ovlwork"
mount -t overlay overlay -o "lowerdir=$work/etc.pristine,upperdir=$work/upper,workdir=$work/ovlwork" "$R/etc"
RESTORE
chmod +x "$work/restore"
export CLUSTER_USER=alice CLUSTER_USER_ID=123456 CLUSTER_GROUP_NAME=CVLAB-unit CLUSTER_GROUP_ID=11166
export LABKIT_QUIET=1 LABKIT_STEPS_DIR=/nonexistent
files=$(interleave "$work/provision" 6 "$runs" "$work/restore" \
    bare "chroot $R /bin/true" \
    labinit "chroot $R /opt/lab/labinit setup" \
    legacy "chroot $R /bin/bash /opt/legacy/10_cluster_user.sh")
# Sanity: the last labinit/legacy runs really created the user.
"$work/restore"; chroot "$R" /opt/lab/labinit setup
chroot "$R" id alice | grep -q 'uid=123456(alice) gid=11166(CVLAB-unit)' || { echo "bench: labinit did not create alice" >&2; exit 1; }
python3 "$here/summarize.py" "$files" "Provisioning (user + group + home + sudo), $runs runs in 6 interleaved rounds" bare labinit legacy
