#!/usr/bin/env bash
# Start overhead, memory and size (issue "labinit 2/3" §5, issue "Prove it" §1):
# - a container start with user creation and two setup steps until the job's
#   first instruction (/bin/true), labinit vs the legacy scripts, each run in
#   the same throwaway Debian root with its own PID namespace; bare init
#   overhead without a user against tini-static, catatonit and dumb-init
#   (privilege drop alone: bench-drop.sh);
# - resident memory of each supervisor while its job sleeps;
# - binary sizes.
# Usage: bench-start.sh LABINIT DEBIAN_ROOT [RUNS]
set -euo pipefail
labinit=${1:?labinit}; debroot=${2:?debian root}; runs=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/rounds.sh
. "$here/rounds.sh"
work=$(mktemp -d /tmp/labkit-bench-start.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; umount "$work/root/etc" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
R=$work/root
cp -a "$debroot/." "$R"
install -D -m 0755 "$labinit" "$R/opt/lab/labinit"
# Two trivial setup steps for both, plus the legacy user step for the legacy.
for d in "$R/opt/lab/setup_steps" "$R/opt/lab-legacy/setup_steps"; do
    mkdir -p "$d"
    printf '#!/bin/sh\nexit 0\n' > "$d/20_first.sh"
    printf '#!/bin/sh\nexit 0\n' > "$d/30_second.sh"
    chmod 0755 "$d"/*.sh
done
for f in setup.sh setup_and_run_command.sh setup_steps/10_cluster_user.sh; do
    sed 's|/opt/lab/|/opt/lab-legacy/|g' "$here/../legacy/$f" > "$R/opt/lab-legacy/$f"
    chmod 0755 "$R/opt/lab-legacy/$f"
done
inits=()
for t in /usr/bin/tini-static /usr/bin/catatonit /usr/bin/dumb-init; do
    if [ -x "$t" ]; then install -m 0755 "$t" "$R/opt/$(basename "$t")"; inits+=("$(basename "$t")"); fi
done
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
export LABKIT_QUIET=1
ns="unshare --pid --fork chroot $R"

# 1. Full start: user + two steps + job, labinit vs legacy.
files=$(CLUSTER_USER=alice CLUSTER_USER_ID=123456 CLUSTER_GROUP_NAME=CVLAB-unit CLUSTER_GROUP_ID=11166 \
    interleave "$work/start" 6 "$runs" "$work/restore" \
    bare "$ns /bin/true" \
    labinit "$ns /opt/lab/labinit run -- /bin/true" \
    legacy "$ns /bin/bash /opt/lab-legacy/setup_and_run_command.sh true")
python3 "$here/summarize.py" "$files" "Container start: user + 2 setup steps + job, own PID namespace, $runs runs in 6 interleaved rounds" bare labinit legacy

# 1b. Where a full start goes: labinit with nothing to do, with the steps
# only, with the user only, with both; and the two steps run by a shell
# alone (their own cost: two forks and three dynamic /bin/sh execs, one more
# than the steps need). Every command runs through one `env` (the variables
# differ), the bare one too, so the exec of `env` cancels out.
u="CLUSTER_USER=alice CLUSTER_USER_ID=123456 CLUSTER_GROUP_NAME=CVLAB-unit CLUSTER_GROUP_ID=11166"
steps="/opt/lab/setup_steps/20_first.sh; /opt/lab/setup_steps/30_second.sh; exec /bin/true"
files=$(interleave "$work/parts" 6 "$runs" "$work/restore" \
    bare "env LABKIT_STEPS_DIR=/none $ns /bin/true" \
    nothing "env LABKIT_STEPS_DIR=/none $ns /opt/lab/labinit run -- /bin/true" \
    steps "env LABKIT_STEPS_DIR=/opt/lab/setup_steps $ns /opt/lab/labinit run -- /bin/true" \
    user "env $u LABKIT_STEPS_DIR=/none $ns /opt/lab/labinit run -- /bin/true" \
    user+steps "env $u LABKIT_STEPS_DIR=/opt/lab/setup_steps $ns /opt/lab/labinit run -- /bin/true" \
    "sh-2-steps" "env LABKIT_STEPS_DIR=/none $ns /bin/sh -c '$steps'")
python3 "$here/summarize.py" "$files" "Where a full start goes (labinit's parts; the two steps run by sh alone), $runs runs in 6 interleaved rounds" bare user+steps nothing steps user sh-2-steps

# 2. Bare init overhead (no user, no steps): labinit vs the minimal inits.
# LABKIT_STEPS_DIR is set for every command (only labinit reads it), so no
# command pays for an extra `env` exec.
args=(bare "$ns /bin/true" labinit "$ns /opt/lab/labinit run -- /bin/true")
for i in "${inits[@]}"; do args+=("$i" "$ns /opt/$i -- /bin/true"); done
files=$(LABKIT_STEPS_DIR=/none interleave "$work/bare" 6 "$runs" "" "${args[@]}")
python3 "$here/summarize.py" "$files" "Bare init overhead (no user), own PID namespace, $runs runs in 6 interleaved rounds" bare labinit "${inits[@]}"

# 3. Resident memory of the supervisor while its job sleeps.
rss_of() { # command... -> VmRSS in KiB of the namespace's PID 1
    unshare --pid --fork --mount-proc "$@" >/dev/null 2>&1 &
    local u=$! child="" n=0
    pids+=("$u")
    while [ -z "$child" ] && [ $n -lt 200 ]; do child=$(pgrep -P "$u" | head -1 || true); n=$((n+1)); sleep 0.01; done
    # Steady state: labinit drops its start-up pages 1 s into supervision.
    sleep 1.5
    awk '/^VmRSS/ {print $2}' "/proc/$child/status"
    kill -9 "$u" "$child" 2>/dev/null || true
    wait "$u" 2>/dev/null || true
}
echo "## Resident memory of the supervisor while the job sleeps"
echo "| init | VmRSS (KiB) | binary size (bytes) |"
echo "| --- | --- | --- |"
echo "| labinit | $(LABKIT_STEPS_DIR=/none rss_of "$labinit" run -- sleep 30) | $(stat -c %s "$labinit") |"
for i in "${inits[@]}"; do
    echo "| $i | $(rss_of "/usr/bin/$i" -- sleep 30) | $(stat -c %s "/usr/bin/$i") |"
done
echo
