#!/usr/bin/env bash
# Regenerate docs/benchmarks.md: tests/bench/benchmarks.head.md (what each
# benchmark measures, targets, anchors), the machine (machine.sh), then the
# output of `make bench`, verbatim. Run it on a quiet machine: it refuses when
# the 1-minute load average exceeds half the cores (FORCE=1 overrides).
# docs/benchmarks.md is replaced only when `make bench` succeeds.
# Usage: tests/bench/report.sh      (from anywhere; MAKE_ARGS passed to make)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
load=$(cut -d' ' -f1 /proc/loadavg)
if [ "${FORCE:-0}" != 1 ] && awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    echo "report: load average $load on $(nproc) cores; the figures would be noise. Wait, or FORCE=1." >&2
    exit 1
fi
tmp=$(mktemp -d /tmp/labkit-bench-report.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The machine before the run (the load average then), the labinit make builds.
make -s labinit >/dev/null
tests/bench/machine.sh dist/labinit > "$tmp/machine.md"
# shellcheck disable=SC2086 # MAKE_ARGS is a list of words
if ! make -s bench ${MAKE_ARGS:-} > "$tmp/results.md" 2> "$tmp/stderr.log"; then
    cat "$tmp/results.md" "$tmp/stderr.log" >&2
    echo "report: make bench failed; docs/benchmarks.md left as it was" >&2
    exit 1
fi
{
    cat tests/bench/benchmarks.head.md
    cat "$tmp/machine.md"
    echo "## Results"
    echo
    echo "Output of \`make bench\`, verbatim (\`tests/bench/report.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
    echo
    cat "$tmp/results.md"
} > "$tmp/benchmarks.md"
mkdir -p docs
mv "$tmp/benchmarks.md" docs/benchmarks.md
echo "report: wrote docs/benchmarks.md"
