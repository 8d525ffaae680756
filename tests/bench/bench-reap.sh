#!/usr/bin/env bash
# Reaping (issue "Prove it" §1): the init is PID 1 of its own PID namespace
# (`unshare --pid --fork --mount-proc=ROOT/proc chroot ROOT INIT -- JOB`, in a
# throwaway copy of the Debian root) and runs tests/bench/reap.pl, which
# creates 10 000 orphans in bursts of 500 (double fork; each orphan blocks on
# a pipe), releases each burst at once so 500 orphaned zombies appear
# together, and polls /proc until nothing but PID 1 and the job is left.
# Reported per init: orphans created and seen under PID 1, reaped, left (must
# be 0), drain time per burst (release until no zombie is left: median, max,
# the last burst), the most zombies seen at once, and PID 1's CPU time for
# the whole run (/proc/1/schedstat). labinit against tini-static, and
# dumb-init and catatonit when installed, all as PID 1.
# Usage: bench-reap.sh LABINIT DEBIAN_ROOT [BURSTS] [SIZE]
set -euo pipefail
labinit=$(realpath "${1:?labinit}"); debroot=${2:?debian root}; bursts=${3:-20}; size=${4:-500}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/labkit-bench-reap.XXXXXX)
trap 'rm -rf "$work"' EXIT
R=$work/root
cp -a "$debroot/." "$R"
install -D -m 0755 "$labinit" "$R/opt/lab/labinit"
install -D -m 0755 "$here/reap.pl" "$R/opt/bench/reap.pl"
inits=(labinit)
for t in /usr/bin/tini-static /usr/bin/dumb-init /usr/bin/catatonit; do
    if [ -x "$t" ]; then install -m 0755 "$t" "$R/opt/$(basename "$t")"; inits+=("$(basename "$t")"); fi
done
[ "${#inits[@]}" -gt 1 ] || { echo "bench-reap: needs tini (apt-get install tini)" >&2; exit 1; }

field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }
total=$((bursts * size))
echo "## Reaping: $total orphaned zombies in bursts of $size, init as PID 1 of its own PID namespace"
echo "| init | orphans created | seen under PID 1 | reaped | left | drain per burst, median (ms) | drain, max (ms) | drain, last burst (ms) | most zombies at once | PID 1 CPU (ms) | wall (s) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
fail=0
for i in "${inits[@]}"; do
    case $i in
        labinit) cmd=(/opt/lab/labinit run --) ;;
        *) cmd=("/opt/$i" --) ;;
    esac
    # --kill-child and the hard timeout (28 s an init) bound the run: the
    # namespace dies with unshare.
    out=$(env LABKIT_QUIET=1 LABKIT_STEPS_DIR=/none timeout --foreground -s KILL 28 \
        unshare --pid --fork --kill-child --mount-proc="$R/proc" chroot "$R" \
        "${cmd[@]}" /usr/bin/perl /opt/bench/reap.pl "$bursts" "$size" 2>"$work/$i.err" | grep '^RESULT' || true)
    if [ -z "$out" ]; then
        echo "| $i | failed or timed out (28 s): $(tr '\n' ' ' < "$work/$i.err" | cut -c1-200) | | | | | | | | | |"
        [ "$i" != labinit ] || fail=1
        continue
    fi
    left=$(field left "$out"); reaped=$(field reaped "$out")
    [ "$i" != labinit ] || { [ "$left" = 0 ] && [ "$reaped" = "$total" ]; } || fail=1
    echo "| $i | $(field created "$out") | $(field orphaned "$out") | $reaped | $left | $(ms "$(field drain_p50_us "$out")") | $(ms "$(field drain_max_us "$out")") | $(ms "$(field last_drain_us "$out")") | $(field max_zombies "$out") | $(field pid1_cpu_ms "$out") | $(awk -v m="$(field total_ms "$out")" 'BEGIN { printf "%.1f", m / 1000 }') |"
done
echo
[ "$fail" = 0 ] || { echo "bench-reap: labinit left zombies or failed (target: all reaped, none left)" >&2; exit 1; }
