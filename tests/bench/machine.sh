#!/usr/bin/env bash
# The machine the benchmarks ran on, as a Markdown list (docs/benchmarks.md).
# Usage: machine.sh [LABINIT]
set -euo pipefail
labinit=${1:-}
pkg() { # Debian package version, or "not installed"
    dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "not installed"
}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null || true)
echo "## Machine"
echo
echo "- CPU: ${cpu:-unknown}, $(nproc) cores available ($(grep -c '^processor' /proc/cpuinfo) online)"
echo "- memory: $mem"
echo "- kernel: $(uname -sr) ($(uname -m)); OS: ${os:-unknown}"
echo "- virtualization: $(systemd-detect-virt 2>/dev/null || echo unknown)"
echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- Rust: $(rustc --version 2>/dev/null || echo unknown); cargo: $(cargo --version 2>/dev/null || echo unknown)"
if [ -n "$labinit" ] && [ -e "$labinit" ]; then
    echo "- labinit: $(stat -c %s "$labinit") bytes, $(file -b "$labinit" | cut -d, -f1-2,4)"
fi
# Read-only git queries (no index refresh): the commit, and whether the tree differs.
repo=$(cd "$(dirname "$0")/../.." && pwd)
if rev=$(GIT_OPTIONAL_LOCKS=0 git -C "$repo" rev-parse --short HEAD 2>/dev/null); then
    GIT_OPTIONAL_LOCKS=0 git -C "$repo" diff --quiet HEAD -- 2>/dev/null || rev="$rev + uncommitted changes"
    echo "- labkit commit: $rev"
fi
echo "- Debian packages: tini $(pkg tini), catatonit $(pkg catatonit), dumb-init $(pkg dumb-init), gosu $(pkg gosu), hyperfine $(pkg hyperfine), util-linux (setpriv, unshare) $(pkg util-linux), python3-psutil $(pkg python3-psutil)"
echo
