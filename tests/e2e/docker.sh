#!/usr/bin/env bash
# End to end with the docker engine (`make e2e` runs it after run.sh):
# `labkit build --engine docker` for real, against a docker daemon this script
# starts and stops itself, with nothing of the host's docker used or changed.
#
#   1. dockerd with its own data root, exec root, pid file and unix socket in
#      a scratch directory (overlay2 storage where the kernel allows it, else
#      vfs; no iptables, no bridge: containers run with --network none, builds
#      with --network host).
#   2. A base without a registry: Ubuntu 24.04 (noble) by debootstrap, with
#      the host's extra CA certificates and a pip.conf that uses the system
#      bundle (HTTPS from build steps is intercepted here; `docker build` has
#      no build volumes), cached as a tarball under $CACHE/docker-e2e and
#      imported into the scratch daemon.
#   3. lab-base (cpu) and a small child image (added to a copy of the
#      manifest) built by one `labkit build`, then checks, each printing PASS
#      or FAIL; the last line is `docker-e2e: N passed, M failed`.
#
# Environment: E2E_CACHE (default $CACHE, else /var/cache/labkit), E2E_LABKIT,
# E2E_LABINIT, E2E_UBUNTU_MIRROR (as in run.sh), E2E_DOCKER_STORAGE=vfs|overlay2
# (default: overlay2, else vfs), E2E_KEEP=1 keeps the scratch directory (daemon
# stopped) for inspection.
# `A && pass X || failc X …`: pass always succeeds, so failc runs only when A fails.
# shellcheck disable=SC2015
set -euo pipefail

BASE_VERSION=1
BASE_REF="localhost/labkit-e2e/ubuntu:noble-docker$BASE_VERSION"
UBUNTU_ARCHIVE=http://archive.ubuntu.com/ubuntu
UBUNTU_SECURITY=http://security.ubuntu.com/ubuntu

cd "$(dirname "$0")/../.."
repo=$PWD
cache=${E2E_CACHE:-${CACHE:-/var/cache/labkit}}
t_start=$SECONDS

say() { printf 'docker-e2e: %s\n' "$*"; }
die() {
    printf 'docker-e2e: error: %s\n' "$*" >&2
    exit 2
}

[ "$(id -u)" = 0 ] || die "run as root (dockerd needs it)"
for tool in dockerd docker debootstrap python3 tar; do
    command -v "$tool" >/dev/null || die "$tool is not installed (tests/tools/deps.sh installs it)"
done

work=$(mktemp -d /tmp/labkit-docker-e2e.XXXXXX)
logs=$repo/build/e2e/docker
mkdir -p "$logs"
rm -f "$logs"/*.log
dockerd_pid=""
bootstrap_tmp=""

unmount_under() {
    local m
    awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}
stop_daemon() {
    [ -n "$dockerd_pid" ] || return 0
    if kill -0 "$dockerd_pid" 2>/dev/null; then
        docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$dockerd_pid" 2>/dev/null || true
    fi
    wait "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=""
    # containerd and its shims, started by this daemon, name its exec root on
    # their command line: end those (by PID) should any outlive the daemon.
    our_pids | xargs -r kill -9 2>/dev/null || true
    unmount_under "$work"
}
# PIDs of processes whose command line names the scratch directory.
our_pids() {
    local p c
    for p in /proc/[0-9]*; do
        c=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        if [[ $c == *"$work/"* ]]; then
            echo "${p#/proc/}"
        fi
    done
    return 0
}
cleanup() {
    stop_daemon
    if [ -n "$bootstrap_tmp" ] && [ -d "$bootstrap_tmp" ]; then
        unmount_under "$bootstrap_tmp"
        rm -rf "$bootstrap_tmp"
    fi
    cp "$work/dockerd.log" "$logs/dockerd.log" 2>/dev/null || true
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ----------------------------------------------------------------------
labinit=${E2E_LABINIT:-$repo/dist/labinit}
if [ -z "${E2E_LABINIT:-}" ] && [ ! -x "$labinit" ]; then
    make -s labinit >"$logs/make-labinit.log" 2>&1 || die "make labinit failed (log $logs/make-labinit.log)"
fi
[ -x "$labinit" ] || die "no labinit at $labinit"
labkit=${E2E_LABKIT:-}
if [ -z "$labkit" ]; then
    cargo build --release --locked --quiet --bin labkit >"$logs/cargo-labkit.log" 2>&1 ||
        die "cargo build of labkit failed (log $logs/cargo-labkit.log)"
    labkit=${CARGO_TARGET_DIR:-$repo/target}/release/labkit
fi

# --- the daemon -------------------------------------------------------------------
export DOCKER_HOST=unix://$work/docker.sock
# No buildx builder of the host's configuration may leak in.
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG"
unset BUILDX_BUILDER DOCKER_CONTEXT
# start_daemon DRIVER: dockerd with that storage driver; fails if it does not
# answer within 30 s or runs on another driver.
start_daemon() {
    rm -rf "$work/data" "$work/exec"
    dockerd --storage-driver="$1" --iptables=false --ip-masq=false --bridge=none \
        --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
        --host "$DOCKER_HOST" >>"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 150); do
        [ "$(docker info -f '{{.Driver}}' 2>/dev/null)" = "$1" ] && return 0
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.2
    done
    stop_daemon
    return 1
}
# overlay2 where the kernel allows it (fast); vfs, which works everywhere,
# copies every layer in full (a lab-base build takes several times longer).
driver=${E2E_DOCKER_STORAGE:-}
if [ -n "$driver" ]; then
    start_daemon "$driver" || die "dockerd with --storage-driver=$driver did not start (log $logs/dockerd.log)"
elif start_daemon overlay2; then
    driver=overlay2
else
    driver=vfs
    start_daemon vfs || die "dockerd did not start (log $logs/dockerd.log)"
fi
say "dockerd $(docker version -f '{{.Server.Version}}') with $driver on $DOCKER_HOST (pid $dockerd_pid)"

# --- base image -------------------------------------------------------------------
base_tar=$cache/docker-e2e/noble-docker$BASE_VERSION.tar
make_base_tar() {
    local mirror=${E2E_UBUNTU_MIRROR:-$UBUNTU_ARCHIVE} root f
    mkdir -p "$cache/docker-e2e"
    bootstrap_tmp=$(mktemp -d "$cache/docker-e2e/noble-root.XXXXXX")
    root=$bootstrap_tmp/root
    # Debian has no Ubuntu keyring: the download is not verified here, but the
    # root carries Ubuntu's keyring and apt verifies everything inside builds.
    debootstrap --no-check-gpg --variant=minbase noble "$root" "$mirror" /usr/share/debootstrap/scripts/gutsy
    unmount_under "$root"
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/ubuntu.sources" <<EOF
Types: deb
URIs: $UBUNTU_ARCHIVE/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: $UBUNTU_SECURITY/
Suites: noble-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
EOF
    printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/99labkit-e2e-no-recommends"
    # This machine's HTTPS goes through an intercepting proxy: the host's own
    # extra CAs join the system bundle when lab-base installs ca-certificates,
    # and pip is told to use that bundle.
    mkdir -p "$root/usr/local/share/ca-certificates"
    for f in /usr/local/share/ca-certificates/*.crt; do
        [ -f "$f" ] && cp "$f" "$root/usr/local/share/ca-certificates/"
    done
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/tmp/*
    tar --numeric-owner -C "$root" -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$bootstrap_tmp"
    bootstrap_tmp=""
}
if [ ! -f "$base_tar" ]; then
    say "base root: debootstrap noble into $base_tar"
    make_base_tar >"$logs/base-root.log" 2>&1 || die "debootstrap of the base failed (log $logs/base-root.log)"
fi
docker import --change 'CMD ["/bin/bash"]' "$base_tar" "$BASE_REF" >/dev/null
say "base $BASE_REF imported"

# --- a family with a small child of lab-base ------------------------------------
fam=$work/repo
mkdir -p "$fam"
cp -r "$repo/images" "$fam/"
for d in services setup_steps; do
    [ -d "$repo/$d" ] && cp -r "$repo/$d" "$fam/"
done
cat >>"$fam/images/manifest.toml" <<'EOF'

[images.lab-e2e-child]
description = "End-to-end child: one file on top of lab-base"
template    = "lab-e2e-child.Dockerfile.tera"
parent      = "lab-base"
variants    = ["cpu"]
tags        = ["{variant}"]
EOF
cat >"$fam/images/templates/lab-e2e-child.Dockerfile.tera" <<'EOF'
{% extends "_layout.Dockerfile.tera" %}
{% block files -%}
RUN echo "child of {{ image.parent }}" > /opt/lab/e2e-child
{%- endblock files %}
EOF
"$labkit" --root "$fam" render >"$logs/render.log" 2>&1 || die "labkit render of the e2e family failed"
# A new image changes the variant's Python set: lock it again (uv and PyPI, as
# the maintainer would; the snapshot date keeps lab-base's lock as committed).
"$labkit" --root "$fam" lock --python --variant cpu >"$logs/lock.log" 2>&1 ||
    die "labkit lock --python of the e2e family failed (log $logs/lock.log)"

plan_json() { # IMAGE
    "$labkit" --root "$fam" plan --format json --image "$1" --variant cpu --base-override "cpu=$BASE_REF"
}
tag_of() { plan_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["targets"][0]["tags"][0])'; }
LAB_BASE=$(tag_of lab-base)
CHILD=$(tag_of lab-e2e-child)
revision=e2e-docker-rev
created=2026-01-02T03:04:05Z

# --- results ----------------------------------------------------------------------
passed=0 failed=0
pass() {
    passed=$((passed + 1))
    printf 'PASS %s\n' "$1"
}
failc() {
    failed=$((failed + 1))
    printf 'FAIL %s: %s\n' "$1" "$2"
}
label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1"; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }
layers() { docker image inspect -f '{{range .RootFS.Layers}}{{.}} {{end}}' "$1"; }

t0=$SECONDS
set +e
"$labkit" --root "$fam" build --engine docker --variant cpu --image lab-base --image lab-e2e-child \
    --base-override "cpu=$BASE_REF" --network host --labinit "$labinit" \
    --revision "$revision" --created "$created" --log-dir "$logs/build" \
    --summary-json "$work/summary.json" >"$logs/build.log" 2>&1
rc=$?
set -e
say "labkit build: exit $rc in $((SECONDS - t0))s (log $logs/build.log)"
if [ "$rc" = 0 ]; then
    pass build-lab-base-and-child
else
    failc build-lab-base-and-child "exit $rc; last lines: $(tail -5 "$logs/build.log" | tr '\n' ' ')"
fi

if docker image inspect "$CHILD" >/dev/null 2>&1 && docker image inspect "$LAB_BASE" >/dev/null 2>&1; then
    # The child's layers start with exactly the layers of the lab-base image
    # this run built, and the summary names that image.
    base_id=$(image_id "$LAB_BASE")
    summary_id=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([t["image_id"] for t in d["targets"] if t["name"]=="lab-base-cpu"][0])' "$work/summary.json")
    if [ "$summary_id" = "$base_id" ] && [[ "$(layers "$CHILD")" == "$(layers "$LAB_BASE")"* ]]; then
        pass child-built-on-the-parent-of-this-run
    else
        failc child-built-on-the-parent-of-this-run "lab-base $base_id, summary $summary_id, layers differ"
    fi
    grep -q "lab-e2e-child-cpu: started on lab-base-cpu $base_id" "$logs/build.log" &&
        pass child-from-parent-image-id || failc child-from-parent-image-id "no 'started on lab-base-cpu $base_id' line"

    out=$(docker run --rm --network none --entrypoint cat "$CHILD" /opt/lab/e2e-child 2>&1) || true
    [ "$out" = "child of lab-base" ] && pass child-runs || failc child-runs "got: $out"

    keys=$(docker run --rm --network none --entrypoint sh "$LAB_BASE" -c 'ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l')
    [ "$keys" = 0 ] && pass no-ssh-host-keys || failc no-ssh-host-keys "$keys host key file(s) in lab-base"

    want_labels=("org.opencontainers.image.revision=$revision" "org.opencontainers.image.created=$created"
        "org.opencontainers.image.base.name=$LAB_BASE" "org.opencontainers.image.title=lab-e2e-child")
    bad=""
    for kv in "${want_labels[@]}"; do
        got=$(label "$CHILD" "${kv%%=*}")
        [ "$got" = "${kv#*=}" ] || bad+=" ${kv%%=*}=$got"
    done
    [ -z "$bad" ] && pass child-labels || failc child-labels "wrong:$bad"

    # A plain `docker build --build-arg BASE_IMAGE=…` of a generated
    # Dockerfile: the labels name the parent that build used, and without the
    # argument (negative control) the Dockerfile's default parent.
    ctx=$work/plain-ctx
    mkdir -p "$ctx"
    df=$fam/images/generated/lab-e2e-child/cpu/Dockerfile
    if docker build -q -f "$df" --build-arg "BASE_IMAGE=$base_id" -t labkit-e2e/plain:arg "$ctx" >"$logs/plain-build.log" 2>&1 &&
        docker build -q -f "$df" -t labkit-e2e/plain:default "$ctx" >>"$logs/plain-build.log" 2>&1; then
        a=$(label labkit-e2e/plain:arg org.opencontainers.image.base.name)
        d=$(label labkit-e2e/plain:default org.opencontainers.image.base.name)
        if [ "$a" = "$base_id" ] && [ "$d" = "$LAB_BASE" ]; then
            pass plain-build-labels-name-the-parent-used
        else
            failc plain-build-labels-name-the-parent-used "with BASE_IMAGE: $a; default: $d"
        fi
    else
        failc plain-build-labels-name-the-parent-used "plain docker build failed (log $logs/plain-build.log)"
    fi
else
    failc images-present "the build did not leave $LAB_BASE and $CHILD"
fi

stop_daemon
left=$(our_pids | grep -vx "$$" | tr '\n' ' ' || true)
[ -z "$left" ] && pass daemon-stopped || failc daemon-stopped "processes of the scratch daemon remain: $left"
say "total $((SECONDS - t_start))s"
printf 'docker-e2e: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
