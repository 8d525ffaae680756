#!/usr/bin/env bash
# Cost of one idle check over 1000 processes: `labinit idle-check` (the
# watchdog labinit wait runs every LABKIT_IDLE_INTERVAL) against the legacy
# sleeper's check (Python + psutil, tests/legacy/sleeper.py), both inside the
# same PID namespace holding 1000 sleeping processes; CPU time per check and
# peak resident memory. Then the resident memory of `labinit wait` as PID 1
# with the watchdog off and on (checking every 0.1 s over the same 1000
# processes), and tini-static as PID 1 over the same processes for reference:
# the watchdog must not grow it (target: on ≤ 1.2× off). With each, the
# memory charged to a fresh memory cgroup (v1 or v2) holding the namespace.
# Usage: bench-idle.sh LABINIT [DEBIAN_ROOT] [CHECKS]
set -euo pipefail
labinit=$(realpath "${1:?labinit}"); checks=${3:-50}; n=1000
here=$(cd "$(dirname "$0")" && pwd)
# Debian's python3 (python3-psutil) even when another python3 comes first in PATH.
py=""
for p in /usr/bin/python3 "$(command -v python3 || true)"; do
    [ -n "$p" ] && "$p" -c 'import psutil' 2>/dev/null && { py=$p; break; }
done
[ -n "$py" ] || { echo "bench-idle: needs python3-psutil (apt-get install python3-psutil)" >&2; exit 1; }

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# Both checkers in one namespace with the same 1000 sleepers.
out=$(unshare --pid --fork --kill-child --mount-proc bash -c '
    for i in $(seq "$3"); do sleep 3600 & done
    sleep 0.5
    LABKIT_IDLE_BUSY=python "$1" idle-check --checks "$4"
    "$5" "$2" --bench "$4"
' bench "$labinit" "$here/../legacy/sleeper.py" "$n" "$checks" "$py")
ours=$(sed -n 1p <<<"$out"); legacy=$(sed -n 2p <<<"$out")
for line in "$ours" "$legacy"; do
    [ "$(field processes "$line")" -ge "$n" ] || { echo "bench-idle: a checker saw fewer than $n processes: $line" >&2; exit 1; }
done
o_us=$(field cpu_per_check_us "$ours"); l_us=$(field cpu_per_check_us "$legacy")
o_rss=$(field max_rss_kib "$ours"); l_rss=$(field max_rss_kib "$legacy")

# labinit wait as PID 1 over the same number of processes: VmRSS after a
# few seconds with the watchdog off, then on; and the memory charged to a
# fresh memory cgroup holding the whole namespace (what the container pays:
# anonymous memory, page tables and kernel memory such as /proc's entries;
# the code's pages are the binary's page cache, charged where it was first
# read). The 1000 sleepers are in both; the difference is the watchdog's.
# memcg_dir: a new memory cgroup below this process's (v1 or v2), or nothing.
memcg_dir() {
    local rel dir
    if rel=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup) && [ -n "$rel" ] && [ -d /sys/fs/cgroup/memory ]; then
        dir=/sys/fs/cgroup/memory$rel/labkit-bench-$$-$RANDOM
    elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        dir=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/labkit-bench-$$-$RANDOM
    else
        return 0
    fi
    mkdir "$dir" 2>/dev/null && echo "$dir"
}
memcg_kib() { # DIR -> usage in KiB (v1 usage_in_bytes, v2 memory.current)
    local f=$1/memory.usage_in_bytes
    [ -e "$f" ] || f=$1/memory.current
    echo $(( $(cat "$f") / 1024 ))
}
# wait_rss TIMEOUT [INIT ARGS...]: "VmRSS | RssAnon | charged" in KiB of
# INIT (default: labinit wait) as PID 1 over the 1000 sleepers, with
# LABKIT_IDLE_TIMEOUT=TIMEOUT.
wait_rss() {
    local timeout=$1 cg charged="—"
    shift
    [ $# -gt 0 ] || set -- "$labinit" wait
    cg=$(memcg_dir || true)
    sh -c '[ -z "$1" ] || echo $$ > "$1/cgroup.procs"; shift; exec "$@"' cg "$cg" \
        env -i PATH=/usr/bin:/bin LABKIT_STEPS_DIR=/nonexistent LABKIT_SERVICES_DIR=/nonexistent LABKIT_QUIET=1 \
        LABKIT_IDLE_TIMEOUT="$timeout" LABKIT_IDLE_INTERVAL=0.1s \
        unshare --pid --fork --kill-child --mount-proc bash -c '
            n=$1; shift
            for i in $(seq "$n"); do sleep 3600 & done
            exec "$@"' bench "$n" "$@" 2>/dev/null &
    local u=$!
    local init=""
    for _ in $(seq 100); do
        init=$(pgrep -P "$u" | head -1 || true)
        [ -n "$init" ] && [ "$(readlink "/proc/$init/exe" 2>/dev/null)" = "$(realpath "$1")" ] && break
        sleep 0.05
    done
    sleep 3
    [ -z "$cg" ] || charged=$(memcg_kib "$cg")
    awk -v c="$charged" '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} END {print r " | " a " | " c}' "/proc/$init/status"
    kill -KILL "$init" 2>/dev/null || true
    wait "$u" 2>/dev/null || true
    if [ -n "$cg" ]; then
        for _ in $(seq 100); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
    fi
}
rss_off=$(wait_rss 0)
rss_on=$(wait_rss 1h)
rss_tini=""
[ -x /usr/bin/tini-static ] && rss_tini=$(wait_rss 0 /usr/bin/tini-static -- sleep 3600)

echo "## Idle check over $n processes ($checks checks, CPU time per check)"
echo "| checker | CPU per check (ms) | peak resident memory (KiB) |"
echo "| --- | --- | --- |"
awk -v u="$o_us" -v r="$o_rss" 'BEGIN { printf "| labinit idle watchdog (/proc) | %.2f | %d |\n", u / 1000, r }'
awk -v u="$l_us" -v r="$l_rss" 'BEGIN { printf "| legacy sleeper (Python + psutil) | %.2f | %d |\n", u / 1000, r }'
awk -v o="$o_us" -v l="$l_us" 'BEGIN { if (o > 0) printf "| ratio | %.1fx less CPU | |\n", l / o }'
echo
echo "## labinit wait as PID 1 over $n processes: resident memory"
echo "| PID 1 | VmRSS (KiB) | of which anonymous (KiB) | charged to the container's memory cgroup, sleepers included (KiB) |"
echo "| --- | --- | --- | --- |"
echo "| labinit wait, watchdog off (LABKIT_IDLE_TIMEOUT=0) | $rss_off |"
echo "| labinit wait, watchdog on, a check every 0.1 s | $rss_on |"
[ -z "$rss_tini" ] || echo "| tini-static (no watchdog), same processes | $rss_tini |"
c_off=$(awk -F' [|] ' '{print $3}' <<<"$rss_off"); c_on=$(awk -F' [|] ' '{print $3}' <<<"$rss_on")
if [ "$c_off" != "—" ] && [ "$c_on" != "—" ]; then
    echo "| the watchdog's own cost (charged, on − off) | | | $((c_on - c_off)) |"
fi
echo
