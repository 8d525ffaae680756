#!/usr/bin/env bash
# `make bench`: every benchmark, side by side, printed as Markdown tables.
# Usage: run.sh LABINIT DEBIAN_ROOT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
labinit=$(realpath "${1:?labinit}"); debroot=${2:?debian root}
command -v hyperfine >/dev/null || { echo "bench: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
echo "# labkit benchmarks ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
echo
"$here/provision.sh" "$labinit" "$debroot"
for extra in "$here"/bench-*.sh; do
    [ -x "$extra" ] && "$extra" "$labinit" "$debroot"
done
echo "labinit binary: $(stat -c %s "$labinit") bytes"
