#!/usr/bin/env bash
# Signal delivery latency (issue "Prove it" §1; target p99 ≤ 1 ms): time from
# SIGTERM sent to PID 1 from the parent namespace until the job's TERM handler
# runs. Each trial starts a fresh container, since the init shuts down after
# TERM: `unshare --pid --fork --kill-child --mount-proc=ROOT/proc chroot ROOT
# INIT -- perl sigjob.pl` in a throwaway copy of the Debian root. The job
# (tests/bench/sigjob.pl) reads CLOCK_MONOTONIC on handler entry; the driver
# (tests/bench/sigdrive.py) reads it just before kill(). p50 and p99 over
# TRIALS trials per init (bounded by BUDGET seconds each; the table says how
# many ran): labinit against tini-static, dumb-init and catatonit as PID 1,
# and the job alone as PID 1 (no forwarding: the floor).
# Usage: bench-signal.sh LABINIT DEBIAN_ROOT [TRIALS] [BUDGET_S]
set -euo pipefail
labinit=$(realpath "${1:?labinit}"); debroot=${2:?debian root}; trials=${3:-1000}; budget=${4:-20}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/labkit-bench-signal.XXXXXX)
trap 'rm -rf "$work"' EXIT
R=$work/root
cp -a "$debroot/." "$R"
install -D -m 0755 "$labinit" "$R/opt/lab/labinit"
install -D -m 0755 "$here/sigjob.pl" "$R/opt/bench/sigjob.pl"
inits=(labinit)
for t in /usr/bin/tini-static /usr/bin/dumb-init /usr/bin/catatonit; do
    if [ -x "$t" ]; then install -m 0755 "$t" "$R/opt/$(basename "$t")"; inits+=("$(basename "$t")"); fi
done
inits+=(none)
export LABKIT_QUIET=1 LABKIT_STEPS_DIR=/none
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }

echo "## Signal delivery: SIGTERM to PID 1 until the job's handler runs (up to $trials trials, a fresh container each)"
echo "| init | trials | failed | p50 (ms) | p99 (ms) | max (ms) | p99 ≤ 1 ms |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
fail=0 notes=""
for i in "${inits[@]}"; do
    case $i in
        labinit) cmd=(/opt/lab/labinit run --) ;;
        none) cmd=() ;;
        *) cmd=("/opt/$i" --) ;;
    esac
    out=$(timeout --foreground -s KILL $((budget + 30)) python3 "$here/sigdrive.py" "$i" "$trials" "$budget" -- \
        unshare --pid --fork --kill-child --mount-proc="$R/proc" chroot "$R" \
        "${cmd[@]}" /usr/bin/perl /opt/bench/sigjob.pl | grep '^RESULT' || true)
    n=$(field trials "$out")
    why=$(field why "$out")
    [ -z "$why" ] || [ "$why" = - ] || notes+="- $i: failed trials by reason: $why"$'\n'
    if [ -z "$n" ] || [ "$n" = 0 ]; then
        echo "| $i | 0 | $(field failed "$out") | | | | no |"; fail=1; continue
    fi
    p99=$(field p99_us "$out")
    ok=$([ "$p99" -le 1000 ] && echo yes || echo no)
    [ "$i" != labinit ] || [ "$ok" = yes ] || fail=1
    label=$i; [ "$i" = none ] && label="none (the job is PID 1)"
    echo "| $label | $n | $(field failed "$out") | $(ms "$(field p50_us "$out")") | $(ms "$p99") | $(ms "$(field max_us "$out")") | $ok |"
done
echo
[ -z "$notes" ] || printf '%s\n' "$notes"
[ "$fail" = 0 ] || echo "bench-signal: labinit missed the target (p99 ≤ 1 ms) or a run failed" >&2
