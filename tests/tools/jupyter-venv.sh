#!/usr/bin/env bash
# Make the Python virtual environment with a real Jupyter (jupyter_server,
# ipykernel) that tests/jupyter.rs runs, at VENV (idempotent: quick when the
# pinned set is already there). Called by deps.sh and `make unit`.
#
#   tests/tools/jupyter-venv.sh VENV
set -euo pipefail
venv=${1:?usage: jupyter-venv.sh VENV}
reqs="$(cd "$(dirname "$0")" && pwd)/jupyter-requirements.txt"
stamp="$venv/.labkit-requirements"
mkdir -p "$(dirname "$venv")"
# tests/jupyter.rs also runs the server as the cluster user (uid 123456): the
# venv's directory must be traversable by others (podman makes its own storage
# directories 0700, and may have made the cache directory so).
d=$(dirname "$venv")
if [ "$(( $(stat -c '%a' "$d") % 10 & 1 ))" = 0 ]; then
    echo "jupyter-venv: $d is not traversable by other users (mode $(stat -c '%a' "$d")); adding o+x" >&2
    chmod o+x "$d"
fi
if [ -x "$venv/bin/jupyter-server" ] && cmp -s "$reqs" "$stamp"; then
    exit 0
fi
echo "jupyter-venv: installing jupyter_server and ipykernel into $venv" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
# Debian's python3 (python3-venv), not one a developer's PATH may put first.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$reqs"
"$venv/bin/python" -c "import jupyter_server, ipykernel, jupyter_client"
cp "$reqs" "$stamp"
