#!/usr/bin/env bash
# Privilege drop alone (issue "Prove it" §1): exec until the job's first
# instruction (/bin/true) as alice, the account already provisioned, so only
# the switch of user is measured: `labinit run` (CLUSTER_* set, the account
# found in place, no steps) against `gosu alice true` (Debian gosu, static Go)
# and `setpriv --reuid --regid --clear-groups true` (util-linux). All run in
# the same throwaway copy of the Debian root, each in its own PID and mount
# namespace with its /proc (gosu needs /proc/self/exe):
# `unshare --pid --fork --mount-proc=ROOT/proc chroot ROOT ...`; medians minus
# a bare `unshare ... chroot ROOT /bin/true` in the same way, and ratios.
# Usage: bench-drop.sh LABINIT DEBIAN_ROOT [RUNS]
set -euo pipefail
labinit=$(realpath "${1:?labinit}"); debroot=${2:?debian root}; runs=${3:-100}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/rounds.sh
. "$here/rounds.sh"
gosu=$(command -v gosu || true)
[ -n "$gosu" ] || { echo "bench-drop: needs gosu (apt-get install gosu)" >&2; exit 1; }
work=$(mktemp -d /tmp/labkit-bench-drop.XXXXXX)
trap 'rm -rf "$work"' EXIT
R=$work/root
cp -a "$debroot/." "$R"
install -D -m 0755 "$labinit" "$R/opt/lab/labinit"
install -D -m 0755 "$gosu" "$R/opt/gosu"
export LABKIT_QUIET=1 LABKIT_STEPS_DIR=/none
export CLUSTER_USER=alice CLUSTER_USER_ID=123456 CLUSTER_GROUP_NAME=CVLAB-unit CLUSTER_GROUP_ID=11166

# Provision once, outside the timing; every timed run then finds the account.
chroot "$R" /opt/lab/labinit setup
chroot "$R" id alice | grep -q 'uid=123456(alice) gid=11166(CVLAB-unit)' \
    || { echo "bench-drop: setup did not create alice" >&2; exit 1; }
# Each contender really runs the job as alice (uid, gid, no supplementary root group).
check() {
    local name=$1; shift
    local got
    # shellcheck disable=SC2016 # expanded by the shell inside, as alice
    got=$(unshare --pid --fork --mount-proc="$R/proc" chroot "$R" "$@" /bin/sh -c 'echo "$(id -u):$(id -g):$(id -G)"')
    case $got in
        123456:11166:*) ;;
        *) echo "bench-drop: $name ran the job as '$got', not alice" >&2; exit 1 ;;
    esac
    case " ${got##*:} " in *" 0 "*) echo "bench-drop: $name kept group 0: $got" >&2; exit 1 ;; esac
}
check labinit /opt/lab/labinit run --
check gosu /opt/gosu alice
check setpriv /usr/bin/setpriv --reuid=123456 --regid=11166 --clear-groups
cp -a "$R/etc" "$work/etc.before"

ns="unshare --pid --fork --mount-proc=$R/proc chroot $R"
files=$(interleave "$work/drop" 6 "$runs" "" \
    bare "$ns /bin/true" \
    labinit "$ns /opt/lab/labinit run -- /bin/true" \
    gosu "$ns /opt/gosu alice /bin/true" \
    setpriv "$ns /usr/bin/setpriv --reuid=123456 --regid=11166 --clear-groups /bin/true")
# The timed labinit runs only dropped: the account files are untouched.
diff -r --no-dereference "$work/etc.before" "$R/etc" >/dev/null \
    || { echo "bench-drop: labinit run changed /etc of an already provisioned root" >&2; exit 1; }
python3 "$here/summarize.py" "$files" "Privilege drop alone (account in place), own PID + mount namespace, $runs runs in 6 interleaved rounds" bare labinit gosu setpriv
