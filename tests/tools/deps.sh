#!/usr/bin/env bash
# Install what the test suite needs on a Debian 12 machine (idempotent, quick
# when everything is there): Debian packages, the musl Rust target, and uv
# (the Python resolver behind `labkit lock`) at the version the committed
# locks were made with.
# Called by `make test` and by .ci/run.
set -euo pipefail
need=(busybox-static sudo file debootstrap python3 python3-psutil python3-venv podman runc iptables docker.io
      openssh-client openssh-server ca-certificates hyperfine shellcheck g++
      tini catatonit dumb-init gosu strace)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 \
        || echo "deps: musl target unavailable; make falls back to a glibc static build" >&2
fi
# kubernetes-validate (PyPI, pinned): the official Kubernetes JSON schemas for
# validating what `labkit job render` prints, offline (tests/job_validate.rs).
# Installed in a venv under LABKIT_TOOLS_DIR (the Makefile passes $(CACHE)/tools)
# and linked as $LABKIT_TOOLS_DIR/bin/kubernetes-validate.
kv_version=1.37.0
tools=${LABKIT_TOOLS_DIR:-/var/cache/labkit/tools}
kv_venv=$tools/kubernetes-validate-$kv_version
if [ ! -x "$kv_venv/bin/kubernetes-validate" ]; then
    echo "deps: installing kubernetes-validate $kv_version in $kv_venv" >&2
    rm -rf "$kv_venv"
    /usr/bin/python3 -m venv "$kv_venv"
    "$kv_venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
mkdir -p "$tools/bin"
ln -sfn "$kv_venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
# A real Jupyter for tests/jupyter.rs (pinned; PyPI), where the Makefile says.
if [ -n "${JUPYTER_VENV:-}" ]; then
    "$(dirname "$0")/jupyter-venv.sh" "$JUPYTER_VENV"
fi
# uv from PyPI in its own virtual environment (Debian's python3 refuses a
# system-wide pip install), linked into /usr/local/bin.
UV_VERSION=0.13.9
UV_VENV=/opt/labkit-tools/uv
if [ "$(uv --version 2>/dev/null | awk '{print $2}')" != "$UV_VERSION" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: uv $UV_VERSION is missing (run as root, or: pip install uv==$UV_VERSION)" >&2
        exit 1
    fi
    echo "deps: installing uv $UV_VERSION from PyPI into $UV_VENV" >&2
    rm -rf "$UV_VENV"
    python3 -m venv "$UV_VENV"
    "$UV_VENV/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
    ln -sf "$UV_VENV/bin/uv" /usr/local/bin/uv
    hash -r
    [ "$(uv --version | awk '{print $2}')" = "$UV_VERSION" ] || { echo "deps: uv $UV_VERSION did not install" >&2; exit 1; }
fi
