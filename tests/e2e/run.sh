#!/usr/bin/env bash
# End-to-end tests (`make e2e`): build the lab image family with a real engine
# from the committed Dockerfiles, then run the lab's own job shapes in it.
#
#   1. podman with the project's own configuration (tests/e2e/containers.conf
#      through CONTAINERS_CONF, tests/e2e/storage.conf through
#      CONTAINERS_STORAGE_CONF): nothing under /etc/containers is used or
#      changed. docker is used instead when E2E_ENGINE=docker.
#   2. A base image without a registry: Ubuntu 24.04 (noble) by debootstrap,
#      imported under a local name and cached in the project's image store
#      (the cache key is BASE_VERSION below); lab-base is built on it through
#      `labkit build --base-override cpu=<that name>`.
#   3. Scenarios, each a named check printing PASS or FAIL with a reason; the
#      last line is `e2e: N passed, M failed`; exit 0 only when M is 0.
#
# Environment:
#   E2E_FULL=1          also build lab-pytorch and lab-python-ml (cpu) from their
#                       locks, run every image's tests (labkit test), a
#                       researcher's `pip install` and a derived image's, and
#                       measure sizes and install times (make e2e-full)
#   E2E_ONLY=REGEX      run only the scenarios whose name matches
#   E2E_CACHE=DIR       cache root (default: $CACHE, else /var/cache/labkit)
#   E2E_ENGINE=podman|docker
#   E2E_LABINIT=PATH    labinit to put in the images (default: dist/labinit,
#                       built with `make labinit` when missing)
#   E2E_LABKIT=PATH     labkit binary (default: built with cargo)
#   E2E_UBUNTU_MIRROR=URL  archive for debootstrap, and --apt-mirror for builds
set -euo pipefail

# Bump to rebuild the cached base image (and drop older ones).
BASE_VERSION=1
BASE_REF="localhost/labkit-e2e/ubuntu:noble-e2e$BASE_VERSION"
# The archive the official ubuntu:24.04 image ships in its sources.
UBUNTU_ARCHIVE=http://archive.ubuntu.com/ubuntu
UBUNTU_SECURITY=http://security.ubuntu.com/ubuntu
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# The researcher of the scenarios (cluster guide's example values).
U_NAME=alice U_ID=123456 G_NAME=CVLAB-unit G_ID=11166

cd "$(dirname "$0")/../.."
repo=$PWD
e2e_dir=$repo/tests/e2e
cache=${E2E_CACHE:-${CACHE:-/var/cache/labkit}}
out=$repo/build/e2e
logs=$out/logs
full=${E2E_FULL:-0}
only=${E2E_ONLY:-}
t_start=$SECONDS

say() { printf 'e2e: %s\n' "$*"; }
die() { printf 'e2e: error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (podman builds and user namespaces of the scenarios need it)"

# --- engine -----------------------------------------------------------------
engine=${E2E_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null; then
        engine=podman
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        engine=docker
    else
        die "neither podman nor a running docker daemon found (.ci/run installs podman)"
    fi
fi
case "$engine" in podman | docker) ;; *) die "E2E_ENGINE=$engine: use podman or docker" ;; esac
command -v "$engine" >/dev/null || die "$engine is not installed"
for tool in debootstrap ssh ssh-keygen python3 tar; do
    command -v "$tool" >/dev/null || die "$tool is not installed (see .ci/run)"
done

if [ "$engine" = podman ]; then
    export CONTAINERS_CONF=$e2e_dir/containers.conf
    if [ "$cache" = /var/cache/labkit ]; then
        export CONTAINERS_STORAGE_CONF=$e2e_dir/storage.conf
    else
        mkdir -p "$cache/podman"
        sed "s|/var/cache/labkit|$cache|" "$e2e_dir/storage.conf" >"$cache/podman/storage.conf"
        export CONTAINERS_STORAGE_CONF=$cache/podman/storage.conf
    fi
fi

# --- scratch and cleanup ----------------------------------------------------
run_id="$$-$(date +%s)"
work=$(mktemp -d /tmp/labkit-e2e.XXXXXX)
chmod 0755 "$work"
bootstrap_tmp=""
cleanup() {
    local ids
    ids=$("$engine" ps -aq --filter "label=labkit-e2e=$run_id" 2>/dev/null || true)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # one id per word
        crm $ids >/dev/null 2>&1 || true
    fi
    if [ -n "$bootstrap_tmp" ] && [ -d "$bootstrap_tmp" ]; then
        unmount_under "$bootstrap_tmp"
        rm -rf "$bootstrap_tmp"
    fi
    rm -rf "$work"
}
# Remove containers at once (docker's rm has no --time).
crm() {
    if [ "$engine" = podman ]; then
        podman rm -f -t 0 "$@"
    else
        docker rm -f "$@"
    fi
}
unmount_under() {
    local m
    # debootstrap mounts /proc and /sys in its target; a failed run can leave them.
    awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$logs"
rm -f "$logs"/*.log

# --- results ----------------------------------------------------------------
passed=0 failed=0
results=()
reason_file=$work/reason
note_file=$work/note

# In a check: end it as failed with REASON.
fail() {
    printf '%s\n' "$*" >"$reason_file"
    exit 1
}
# In a check: a remark printed after PASS (timings and the like).
note() { printf '%s\n' "$*" >>"$note_file"; }

# check NAME FUNCTION [ARGS…]: run one scenario in a subshell with errexit,
# its output in build/e2e/logs/NAME.log.
check() {
    local name=$1 rc t0 reason msg
    shift
    if [ -n "$only" ] && ! [[ $name =~ $only ]]; then
        return 0
    fi
    : >"$reason_file"
    : >"$note_file"
    t0=$SECONDS
    set +e
    (
        set -e
        "$@"
    ) >"$logs/$name.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        msg="PASS $name ($((SECONDS - t0))s)"
        [ -s "$note_file" ] && msg+=": $(paste -sd';' "$note_file" | sed 's/;/; /g')"
    else
        failed=$((failed + 1))
        reason=$(cat "$reason_file")
        [ -n "$reason" ] || reason="a command failed with exit code $rc"
        msg="FAIL $name ($((SECONDS - t0))s): $reason [log: ${logs#"$repo"/}/$name.log]"
    fi
    results+=("$msg")
    printf '%s\n' "$msg"
    if [ "$rc" != 0 ]; then
        tail -n 12 "$logs/$name.log" | sed 's/^/    | /'
    fi
}

finish() {
    say "total $((SECONDS - t_start))s"
    printf 'e2e: %d passed, %d failed\n' "$passed" "$failed"
    [ "$failed" = 0 ]
}

# --- tools --------------------------------------------------------------------
labinit=${E2E_LABINIT:-$repo/dist/labinit}
if [ -z "${E2E_LABINIT:-}" ] && [ ! -x "$labinit" ]; then
    say "building dist/labinit (make labinit)"
    make -s labinit >"$logs/make-labinit.log" 2>&1 || { tail -20 "$logs/make-labinit.log"; die "make labinit failed"; }
fi
[ -x "$labinit" ] || die "no labinit at $labinit"
labkit=${E2E_LABKIT:-}
if [ -z "$labkit" ]; then
    say "building labkit (cargo build --release --bin labkit)"
    cargo build --release --locked --quiet --bin labkit >"$logs/cargo-labkit.log" 2>&1 ||
        { tail -20 "$logs/cargo-labkit.log"; die "cargo build of labkit failed"; }
    labkit=${CARGO_TARGET_DIR:-$repo/target}/release/labkit
fi
[ -x "$labkit" ] || die "no labkit at $labkit"

# Each engine call of the scenarios carries the run's label, so the trap finds
# every container; the four CLUSTER_* variables are the cluster guide's.
cluster_env=(-e "CLUSTER_USER=$U_NAME" -e "CLUSTER_USER_ID=$U_ID" -e "CLUSTER_GROUP_NAME=$G_NAME" -e "CLUSTER_GROUP_ID=$G_ID")
seq_no=0
ctr_name() {
    seq_no=$((seq_no + 1))
    printf 'labkit-e2e-%s-%s-%d' "$run_id" "$1" "$seq_no"
}
# crun NAME ARGS…: `ENGINE run` with the run label and the cluster user.
crun() {
    local name
    name=$(ctr_name "$1")
    shift
    "$engine" run --label "labkit-e2e=$run_id" --name "$name" "${cluster_env[@]}" "$@"
}
# A host directory standing for the researcher's NFS directory.
data_dir() {
    local d=$work/data-$1
    mkdir -p "$d"
    chown "$U_ID:$G_ID" "$d"
    printf '%s' "$d"
}
# wait_until SECONDS COMMAND…: poll every 0.2 s.
wait_until() {
    local limit=$1 t0
    shift
    t0=$(date +%s)
    until "$@" >/dev/null 2>&1; do
        [ $(($(date +%s) - t0)) -lt "$limit" ] || return 1
        sleep 0.2
    done
}
# Succeeds when `labinit shell` works in the container, or when it has ended
# (the caller then reports how).
exec_or_gone() {
    running "$1" || return 0
    "$engine" exec "$1" /opt/lab/labinit shell -- true
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
exit_code_of() { "$engine" inspect -f '{{.State.ExitCode}}' "$1"; }
running() { [ "$("$engine" inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
owner_is() {
    local f=$1 got
    [ -e "$f" ] || fail "$f was not written"
    got=$(stat -c %u:%g "$f")
    [ "$got" = "$U_ID:$G_ID" ] || fail "${f#"$work"/} is owned by $got, not $U_ID:$G_ID"
}

# --- base image -------------------------------------------------------------
have_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }

build_base() {
    local mirror=${E2E_UBUNTU_MIRROR:-$UBUNTU_ARCHIVE} root
    mkdir -p "$cache/e2e"
    bootstrap_tmp=$(mktemp -d "$cache/e2e/noble-root.XXXXXX")
    root=$bootstrap_tmp/root
    # Debian has no Ubuntu keyring: the download is not verified here, but the
    # root carries Ubuntu's keyring and apt verifies everything inside builds.
    debootstrap --no-check-gpg --variant=minbase noble "$root" "$mirror" \
        /usr/share/debootstrap/scripts/gutsy
    unmount_under "$root"
    # What the official ubuntu:24.04 image has: deb822 sources with all
    # components, a minimized dpkg, and the `ubuntu` user at uid 1000.
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
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
# Like the official minimized image: no documentation or translations.
path-exclude=/usr/share/man/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
    printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/99labkit-e2e-no-recommends"
    chroot "$root" /usr/sbin/groupadd -g 1000 ubuntu
    chroot "$root" /usr/sbin/useradd -u 1000 -g 1000 -m -s /bin/bash -c Ubuntu ubuntu
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.bash_history
    : >"$root/etc/hostname"
    tar --numeric-owner --xattrs -C "$root" -c . |
        "$engine" import --change 'CMD ["/bin/bash"]' - "$BASE_REF"
    rm -rf "$bootstrap_tmp"
    bootstrap_tmp=""
}

t0=$SECONDS
if have_image "$BASE_REF"; then
    say "base image $BASE_REF: cached"
else
    say "base image $BASE_REF: debootstrap noble and import"
    build_base >"$logs/base-image.log" 2>&1 || { tail -20 "$logs/base-image.log"; die "building the base image failed"; }
    # Older cache versions are dead weight now.
    "$engine" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/labkit-e2e/ubuntu:' |
        grep -vxF "$BASE_REF" | xargs -r "$engine" rmi -f >/dev/null 2>&1 || true
fi
t_base=$((SECONDS - t0))

# --- labkit check and the lab-base build ----------------------------------
t_labkit_check() {
    "$labkit" check || fail "labkit check failed before the build"
}
check labkit-check t_labkit_check

# Image references the plan gives the built targets.
primary_tag() { # IMAGE
    "$labkit" plan --format json --image "$1" --variant cpu --base-override "cpu=$BASE_REF" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["targets"][0]["tags"][0])'
}
LAB_BASE=$(primary_tag lab-base)

# Pinned once, so the labels check compares with what this build was given
# even when HEAD moves during the run.
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%dT%H:%M:%SZ)
plan_opts=(--variant cpu --base-override "cpu=$BASE_REF" --revision "$revision" --created "$created")
build_opts=(--engine "$engine" "${plan_opts[@]}" --network host --labinit "$labinit" --log-dir "$logs/build")
# HTTPS from RUN steps (pip and PyPI) trusts only what the host trusts here.
# Mounting the bundle over /etc/ssl/certs/ca-certificates.crt (docs/images.md)
# breaks lab-base: its apt step installs ca-certificates, whose postinst must
# replace that file ("Device or resource busy"). So pip gets the bundle through
# its site configuration instead, a directory only this build mounts (podman
# leaves the empty mount point /etc/xdg/pip in the image, nothing else).
pip_dir=$work/pip
mkdir -p "$pip_dir"
cp "$CA_BUNDLE" "$pip_dir/host-ca.crt"
printf '[global]\ncert = /etc/xdg/pip/host-ca.crt\n' >"$pip_dir/pip.conf"
[ "$engine" = podman ] && build_opts+=(-v "$pip_dir:/etc/xdg/pip:ro")
[ -n "${E2E_UBUNTU_MIRROR:-}" ] && build_opts+=(--apt-mirror "$E2E_UBUNTU_MIRROR")

t0=$SECONDS
t_build_lab_base() {
    "$labkit" build "${build_opts[@]}" --image lab-base ||
        fail "labkit build of lab-base cpu failed (log: build/e2e/logs/build/)"
    have_image "$LAB_BASE" || fail "the build reported success but $LAB_BASE is missing"
}
check build-lab-base t_build_lab_base
t_build=$((SECONDS - t0))
if ! have_image "$LAB_BASE"; then
    say "no lab-base image: the scenarios cannot run"
    failed=$((failed + 1))
    finish
    exit 1
fi
t_scen_start=$SECONDS
say "lab-base: $LAB_BASE ($("$engine" image inspect -f '{{.Size}}' "$LAB_BASE" | awk '{printf "%.0f MB", $1/1e6}'))"

# --- scenarios ----------------------------------------------------------------

# The job the lab's examples run: writes a file and a directory on the
# "NFS" volume and says who it is.
write_job() {
    cat >"$1/job.py" <<'EOF'
import os
with open("out.txt", "w") as f:
    f.write("written by the job\n")
os.makedirs("results", exist_ok=True)
with open("results/metrics.txt", "w") as f:
    f.write("loss 0.1\n")
print("job: uid=%d gid=%d cwd=%s home=%s user=%s" % (
    os.getuid(), os.getgid(), os.getcwd(), os.environ.get("HOME"), os.environ.get("USER")))
EOF
}
assert_job_output() { # DIR LOG
    owner_is "$1/out.txt"
    owner_is "$1/results"
    owner_is "$1/results/metrics.txt"
    grep -q "job: uid=$U_ID gid=$G_ID cwd=/data home=/home/$U_NAME user=$U_NAME" "$2" ||
        fail "the job did not report uid $U_ID, gid $G_ID, cwd /data, home /home/$U_NAME"
}

# Pod spec: command: ["/opt/lab/setup_and_run_command.sh", "cd /data && python3 job.py"]
t_pod_spec() {
    local d rc=0
    d=$(data_dir pod)
    write_job "$d"
    crun pod --rm -v "$d:/data" --entrypoint /opt/lab/setup_and_run_command.sh "$LAB_BASE" \
        "cd /data && python3 job.py" >"$work/pod.out" 2>&1 || rc=$?
    cat "$work/pod.out"
    [ "$rc" = 0 ] || fail "exit code $rc, expected 0"
    assert_job_output "$d" "$work/pod.out"
    grep -q "labinit: created user '$U_NAME'" "$work/pod.out" || fail "no 'created user' line in the log"
}
check pod-spec-setup-and-run t_pod_spec

# docker-compose / `docker run IMAGE /opt/lab/setup_and_run_command.sh '…'`:
# the legacy name arrives as CMD behind the ENTRYPOINT labinit.
t_compose_form() {
    local d rc=0
    d=$(data_dir compose)
    write_job "$d"
    crun compose --rm -v "$d:/data" "$LAB_BASE" /opt/lab/setup_and_run_command.sh \
        "cd /data && python3 job.py" >"$work/compose.out" 2>&1 || rc=$?
    cat "$work/compose.out"
    [ "$rc" = 0 ] || fail "exit code $rc, expected 0"
    assert_job_output "$d" "$work/compose.out"
    [ "$(grep -c "labinit: created user" "$work/compose.out")" = 1 ] || fail "setup did not run exactly once"
}
check compose-cmd-behind-entrypoint t_compose_form

# RunAI: --command -- "/opt/lab/setup_and_run_command.sh 'cd $WORK && python x.py'"
# arrives as ONE string: as the single argument after the ENTRYPOINT…
t_runai_one_arg() {
    local d rc=0
    d=$(data_dir runai1)
    write_job "$d"
    crun runai1 --rm -v "$d:/data" "$LAB_BASE" \
        "/opt/lab/setup_and_run_command.sh 'cd /data && python3 job.py'" >"$work/runai1.out" 2>&1 || rc=$?
    cat "$work/runai1.out"
    [ "$rc" = 0 ] || fail "exit code $rc, expected 0"
    assert_job_output "$d" "$work/runai1.out"
}
check runai-one-string-argument t_runai_one_arg

# …or handed to a shell that replaces the entrypoint.
t_runai_shell() {
    local d rc=0
    d=$(data_dir runai2)
    write_job "$d"
    crun runai2 --rm -v "$d:/data" --entrypoint /bin/sh "$LAB_BASE" \
        -c "/opt/lab/setup_and_run_command.sh 'cd /data && python3 job.py'" >"$work/runai2.out" 2>&1 || rc=$?
    cat "$work/runai2.out"
    [ "$rc" = 0 ] || fail "exit code $rc, expected 0"
    assert_job_output "$d" "$work/runai2.out"
}
check runai-one-string-via-shell t_runai_shell

# Image default (no command): set up and wait; exec in as the user.
t_default_wait() {
    local c out
    c=$(ctr_name wait)
    "$engine" run -d --label "labkit-e2e=$run_id" --name "$c" "${cluster_env[@]}" "$LAB_BASE" >/dev/null
    if ! wait_until 30 exec_or_gone "$c"; then
        "$engine" logs "$c" || true
        running "$c" || fail "the container ended (exit code $(exit_code_of "$c")) instead of waiting"
        fail "labinit shell -- true did not succeed within 30 s"
    fi
    if ! running "$c"; then
        "$engine" logs "$c" || true
        fail "the container ended (exit code $(exit_code_of "$c")) instead of waiting"
    fi
    out=$("$engine" exec "$c" /opt/lab/labinit shell -- id)
    echo "$out"
    [[ $out == "uid=$U_ID($U_NAME) gid=$G_ID($G_NAME)"* ]] || fail "labinit shell -- id printed: $out"
    # The legacy way in still works: exec as root, then su to the user.
    out=$("$engine" exec "$c" su "$U_NAME" -c 'id -u')
    [ "$out" = "$U_ID" ] || fail "su $U_NAME -c 'id -u' printed: $out"
    "$engine" logs "$c"
    crm "$c" >/dev/null
}
check default-cmd-waits-and-shell t_default_wait

# The idle watchdog ends a waiting container with exit code 0.
t_idle() {
    local c t0 took rc
    c=$(ctr_name idle)
    t0=$(now_ms)
    "$engine" run -d --label "labkit-e2e=$run_id" --name "$c" "${cluster_env[@]}" \
        -e LABKIT_IDLE_TIMEOUT=5s -e LABKIT_IDLE_INTERVAL=1s "$LAB_BASE" >/dev/null
    if ! timeout 60 "$engine" wait "$c" >/dev/null; then
        "$engine" logs "$c" || true
        fail "still running 60 s after start with LABKIT_IDLE_TIMEOUT=5s"
    fi
    took=$(($(now_ms) - t0))
    rc=$(exit_code_of "$c")
    "$engine" logs "$c"
    [ "$rc" = 0 ] || fail "exit code $rc, expected 0 (idle expiry)"
    [ "$took" -ge 5000 ] || fail "ended after ${took} ms, before the 5 s idle timeout"
    note "ended by the idle watchdog after ${took} ms (timeout 5s, interval 1s)"
    crm "$c" >/dev/null
}
check idle-watchdog-ends-wait t_idle

# podman stop on a job that traps TERM and checkpoints: the checkpoint is
# written, the container's exit code is the job's, well inside the grace.
t_stop() {
    local d c t0 took rc
    d=$(data_dir stop)
    cat >"$d/train.sh" <<'EOF'
#!/bin/bash
trap 'echo "step $step" > /data/checkpoint; echo "job: checkpoint written"; exit 42' TERM
step=0
echo started > /data/started
while :; do step=$((step + 1)); sleep 0.1; done
EOF
    c=$(ctr_name stop)
    "$engine" run -d --label "labkit-e2e=$run_id" --name "$c" "${cluster_env[@]}" -v "$d:/data" \
        --entrypoint /opt/lab/setup_and_run_command.sh "$LAB_BASE" "cd /data && bash train.sh" >/dev/null
    wait_until 30 test -e "$d/started" || {
        "$engine" logs "$c" || true
        fail "the job did not start within 30 s"
    }
    sleep 0.5
    t0=$(now_ms)
    "$engine" stop -t 10 "$c" >/dev/null
    took=$(($(now_ms) - t0))
    rc=$(exit_code_of "$c")
    "$engine" logs "$c"
    [ -e "$d/checkpoint" ] || fail "no checkpoint: the job never got SIGTERM (stop took ${took} ms)"
    owner_is "$d/checkpoint"
    [ "$rc" = 42 ] || fail "exit code $rc, expected the job's 42 (stop took ${took} ms)"
    [ "$took" -lt 5000 ] || fail "podman stop took ${took} ms of the 10 s grace"
    note "podman stop -t 10 returned after ${took} ms, checkpoint '$(cat "$d/checkpoint")', exit 42"
    crm "$c" >/dev/null
}
check stop-checkpoints-in-grace t_stop

# --timeout and LABKIT_TIMEOUT give 124.
t_timeout() {
    local rc=0 t0 took
    t0=$(now_ms)
    crun timeout1 --rm "$LAB_BASE" --timeout 2s sleep 60 || rc=$?
    took=$(($(now_ms) - t0))
    [ "$rc" = 124 ] || fail "labinit --timeout 2s sleep 60: exit code $rc, expected 124"
    note "--timeout 2s: 124 after ${took} ms"
    rc=0
    crun timeout2 --rm -e LABKIT_TIMEOUT=2s --entrypoint /opt/lab/setup_and_run_command.sh "$LAB_BASE" \
        "cd /tmp && sleep 60" || rc=$?
    [ "$rc" = 124 ] || fail "LABKIT_TIMEOUT=2s with setup_and_run_command.sh: exit code $rc, expected 124"
}
check timeout-gives-124 t_timeout

# The job's exit code is the container's.
t_exit_codes() {
    local rc=0
    crun exit1 --rm --entrypoint /opt/lab/setup_and_run_command.sh "$LAB_BASE" "exit 3" || rc=$?
    [ "$rc" = 3 ] || fail "setup_and_run_command.sh 'exit 3': exit code $rc, expected 3"
    rc=0
    crun exit2 --rm "$LAB_BASE" sh -c 'exit 3' || rc=$?
    [ "$rc" = 3 ] || fail "IMAGE sh -c 'exit 3': exit code $rc, expected 3"
    rc=0
    crun exit3 --rm "$LAB_BASE" no-such-program-e2e || rc=$?
    [ "$rc" = 127 ] || fail "IMAGE no-such-program: exit code $rc, expected 127"
    rc=0
    "$engine" run --rm --label "labkit-e2e=$run_id" -e CLUSTER_USER=alice "$LAB_BASE" true || rc=$?
    [ "$rc" = 125 ] || fail "only CLUSTER_USER set: exit code $rc, expected 125"
}
check exit-codes-propagate t_exit_codes

# ssh as the cluster user, with a generated key, on a published loopback port.
t_ssh() {
    local c port key=$work/ssh/id_ed25519 out
    mkdir -p "$work/ssh"
    ssh-keygen -q -t ed25519 -N '' -C e2e@labkit -f "$key"
    c=$(ctr_name ssh)
    "$engine" run -d --label "labkit-e2e=$run_id" --name "$c" "${cluster_env[@]}" \
        -e "SSH_PUBLIC_KEY=$(cat "$key.pub")" -p 127.0.0.1::22 "$LAB_BASE" sleep 600 >/dev/null
    port=$("$engine" port "$c" 22/tcp | sed -n 's/.*:\([0-9]*\)$/\1/p' | head -1)
    [ -n "$port" ] || fail "no published port for 22/tcp"
    echo "published on 127.0.0.1:$port"
    local sshopts=(-i "$key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
        -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR)
    if ! wait_until 30 ssh "${sshopts[@]}" "$U_NAME@127.0.0.1" true; then
        "$engine" logs "$c" || true
        running "$c" || fail "the container ended with exit code $(exit_code_of "$c")"
        fail "ssh $U_NAME@127.0.0.1 -p $port did not succeed within 30 s"
    fi
    out=$(ssh "${sshopts[@]}" "$U_NAME@127.0.0.1" id)
    echo "$out"
    [[ $out == "uid=$U_ID($U_NAME) gid=$G_ID($G_NAME)"* ]] || fail "ssh id printed: $out"
    if ssh "${sshopts[@]}" root@127.0.0.1 true 2>/dev/null; then
        fail "root login over ssh was accepted"
    fi
    "$engine" logs "$c"
    crm "$c" >/dev/null
}
check ssh-service-as-user t_ssh

# A user's image: FROM lab-base plus a setup step that exports a variable.
EXT_REF=localhost/labkit-e2e/lab-base-extended:cpu
t_extend() {
    local ctx=$work/extend out
    mkdir -p "$ctx"
    cat >"$ctx/50_mine.sh" <<'EOF'
#!/bin/sh
# A researcher's own setup step: hand a variable to the job.
echo "MYVAR=hello" >> "$LABKIT_ENV"
echo "50_mine: ran as $(id -u) for $LABKIT_USER"
EOF
    cat >"$ctx/Containerfile" <<EOF
FROM $LAB_BASE
COPY 50_mine.sh /opt/lab/setup_steps/50_mine.sh
RUN chmod 0755 /opt/lab/setup_steps/50_mine.sh
EOF
    "$engine" build -q -t "$EXT_REF" -f "$ctx/Containerfile" "$ctx"
    # shellcheck disable=SC2016 # expanded by the job's shell
    out=$(crun extend --rm "$EXT_REF" sh -c 'echo "job sees MYVAR=$MYVAR as $(id -un)"' 2>&1)
    echo "$out"
    grep -q "job sees MYVAR=hello as $U_NAME" <<<"$out" || fail "the job did not see MYVAR=hello"
    grep -q "50_mine: ran as 0 for $U_NAME" <<<"$out" || fail "the step did not run as root for $U_NAME"
    # shellcheck disable=SC2016 # expanded by the job's shell
    out=$(crun extend --rm --entrypoint /opt/lab/setup_and_run_command.sh "$EXT_REF" 'echo "legacy MYVAR=$MYVAR"' 2>&1)
    echo "$out"
    grep -q "legacy MYVAR=hello" <<<"$out" || fail "setup_and_run_command.sh did not pass MYVAR=hello"
}
check extend-with-setup-step t_extend

# `docker run -it IMAGE bash`: an interactive bash under a pty with job control.
t_pty() {
    local c rc=0
    c=$(ctr_name pty)
    python3 "$e2e_dir/pty_session.py" -- "$engine" run -it --rm --label "labkit-e2e=$run_id" --name "$c" \
        "${cluster_env[@]}" "$LAB_BASE" bash >"$work/pty.out" 2>&1 || rc=$?
    cat "$work/pty.out"
    [ "$rc" = 0 ] || fail "$(grep '^FAIL: ' "$work/pty.out" | tail -1 | cut -c7-)"
}
check interactive-bash-job-control t_pty

# Labels of the built image match the committed Dockerfile (hence the
# manifest), with the build's values; labkit check still agrees.
t_labels() {
    local plan
    plan=$("$labkit" plan --format json --image lab-base "${plan_opts[@]}")
    "$engine" image inspect -f '{{json .Labels}}' "$LAB_BASE" >"$work/labels.json"
    printf '%s' "$plan" >"$work/plan.json"
    python3 - "$repo/images/generated/lab-base/cpu/Dockerfile" "$work/labels.json" "$work/plan.json" >"$work/labels.out" <<'EOF' || {
import json, re, sys
dockerfile, labels_path, plan_path = sys.argv[1:]
text = open(dockerfile).read()
got = json.load(open(labels_path)) or {}
args = json.load(open(plan_path))["targets"][0]["args"]
# The LABEL instruction: its continuation lines up to the first without '\'.
m = re.search(r'^LABEL (.*?[^\\])$', text, re.M | re.S)
want = {k: v for k, v in re.findall(r'([A-Za-z0-9_.-]+)="((?:[^"\\]|\\.)*)"', m.group(1))}
want = {k: re.sub(r'\$\{(\w+)\}', lambda g: args.get(g.group(1), ""), v) for k, v in want.items()}
# `${NAME:-DEFAULT}` (base.name: BASE_NAME if labkit passed one, else BASE_IMAGE).
want = {k: re.sub(r'\$\{(\w+):-([^}]*)\}', lambda g: args.get(g.group(1)) or g.group(2), v) for k, v in want.items()}
header = re.search(r'^# labkit-inputs-sha256: ([0-9a-f]{64})$', text, re.M).group(1)
bad = []
for k, v in want.items():
    if got.get(k) != v:
        bad.append(f"{k}: image has {got.get(k)!r}, Dockerfile says {v!r}")
extra = sorted(set(got) - set(want) - {"io.buildah.version"})
if extra:
    bad.append("labels not in the Dockerfile (leaked from the base?): " + ", ".join(extra))
if got.get("ch.epfl.cvlab.labkit.inputs-sha256") != header:
    bad.append("inputs-sha256 label differs from the Dockerfile header")
for line in bad:
    print(line)
per_build = {"org.opencontainers.image." + k for k in ("created", "revision", "base.name", "base.digest")}
if bad and all(line.split(":")[0] in per_build for line in bad):
    print("hint: only per-build labels are stale: podman's layer cache reused the LABEL step "
          "(buildah 1.28 leaves build-arg values out of its cache key); labkit build should also "
          "pass them as --label KEY=VALUE for podman")
print(f"{len(want)} labels compared, {len(bad)} problems")
sys.exit(1 if bad else 0)
EOF
        cat "$work/labels.out"
        fail "labels differ from the committed Dockerfile: $(head -1 "$work/labels.out")$(grep -q '^hint:' "$work/labels.out" && echo " (stale build cache of the LABEL step, see log)")"
    }
    cat "$work/labels.out"
    "$labkit" check || fail "labkit check fails after the build"
    note "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))), "labels")' "$work/labels.json"), base.name=$BASE_REF, revision=${revision:0:12}"
}
check labels-match-manifest t_labels

# The committed Python locks are what `labkit lock` makes today: uv against
# PyPI (the manifest's python_snapshot makes that reproducible), in a copy.
t_locks_reproduce() {
    local copy=$work/lockcopy f n=0
    command -v uv >/dev/null || fail "uv is not installed (tests/tools/deps.sh installs it)"
    mkdir -p "$copy"
    cp -a "$repo/images" "$copy/"
    "$labkit" --root "$copy" lock --python || fail "labkit lock --python failed against PyPI"
    while IFS= read -r f; do
        n=$((n + 1))
        cmp -s "$repo/$f" "$copy/$f" || {
            diff "$repo/$f" "$copy/$f" | head -20
            fail "$f differs from a fresh labkit lock (uv $(uv --version | awk '{print $2}'))"
        }
    done < <(cd "$repo" && find images/generated -name requirements.lock | sort)
    [ "$n" -gt 0 ] || fail "no committed lock files found"
    note "$n lock files reproduced byte for byte by labkit lock --python ($(uv --version))"
}
check locks-reproduce-with-uv t_locks_reproduce

# The committed lab-pytorch Dockerfile on a lock that is inconsistent on
# purpose (requests without its dependencies): pip installs exactly that,
# and the build's `pip check` must fail it.
t_pip_check_fails_build() {
    local ctx=$work/brokenlock rc=0 f=$work/brokenlock.out
    mkdir -p "$ctx/python/lab-pytorch/cpu"
    printf 'requests==2.32.3\n' | uv pip compile - --no-deps --generate-hashes --no-header \
        --python-version 3.12 --python-platform x86_64-manylinux_2_28 -q \
        >"$ctx/python/lab-pytorch/cpu/requirements.lock" || fail "uv could not lock requests for the test"
    "$engine" build --network host -v "$pip_dir:/etc/xdg/pip:ro" -f "$repo/images/generated/lab-pytorch/cpu/Dockerfile" \
        --build-arg "BASE_IMAGE=$LAB_BASE" -t localhost/labkit-e2e/broken-lock:cpu "$ctx" >"$f" 2>&1 || rc=$?
    cat "$f"
    "$engine" rmi -f localhost/labkit-e2e/broken-lock:cpu >/dev/null 2>&1 || true
    [ "$rc" != 0 ] || fail "a lock without requests' dependencies built: pip check did not stop it"
    grep -q "requests 2.32.3 requires" "$f" || fail "the build failed, but not in pip check: $(grep -m1 -i error "$f")"
    note "pip check failed the build: $(grep -m1 'requests 2.32.3 requires' "$f")"
}
check pip-check-fails-the-build t_pip_check_fails_build

# `labkit test` on lab-base: the image's own tests (images/tests/lab-base),
# one line per test, in containers started as the cluster starts them.
t_image_tests_base() {
    "$labkit" test --engine "$engine" --image lab-base --variant cpu --log-dir "$logs/image-tests" \
        >"$work/image-tests-base.out" 2>&1 || {
        cat "$work/image-tests-base.out"
        fail "labkit test --image lab-base: $(grep -m1 '^FAIL' "$work/image-tests-base.out" || tail -1 "$work/image-tests-base.out")"
    }
    cat "$work/image-tests-base.out"
    grep -q '^SKIP' "$work/image-tests-base.out" && fail "a lab-base test was skipped without a reason to"
    note "$(tail -1 "$work/image-tests-base.out")"
}
check image-tests-lab-base t_image_tests_base

# --- E2E_FULL (make e2e-full): lab-pytorch and lab-python-ml -------------------
size_mb() { "$engine" image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f", $1/1e6}'; }
if [ "$full" = 1 ]; then
    LAB_PYTORCH=$(primary_tag lab-pytorch)
    LAB_ML=$(primary_tag lab-python-ml)
    # The checks below use these images only when this run built them: a tag
    # left by an earlier run is removed first (the image and its layers stay
    # as build cache), so a failed build can never be followed by tests that
    # pass on a stale image.
    for tag in "$LAB_PYTORCH" "$LAB_ML"; do
        have_image "$tag" && "$engine" untag "$tag" "$tag"
        if have_image "$tag"; then echo "e2e: cannot remove the stale tag $tag" >&2; exit 1; fi
    done
    # Each image from its committed Dockerfile and lock (pip resolves nothing:
    # --require-hashes --no-deps), timed on its own.
    build_one() { # IMAGE
        local t0=$SECONDS
        # The chain up to the image in one run: a child is built FROM the
        # image ID its parent got in this run (the parent's layers are cached).
        local chain=(--image lab-base --image lab-pytorch)
        [ "$1" = lab-python-ml ] && chain+=(--image lab-python-ml)
        "$labkit" build "${build_opts[@]}" "${chain[@]}" ||
            fail "labkit build of $1 cpu failed (log: build/e2e/logs/build/$1-cpu.log)"
        note "$1 built in $((SECONDS - t0))s, $(size_mb "$(primary_tag "$1")") MB"
        printf '%s build_s=%s size_mb=%s\n' "$1" "$((SECONDS - t0))" "$(size_mb "$(primary_tag "$1")")" >>"$out/measurements.txt"
    }
    : >"$out/measurements.txt"
    printf 'lab-base size_mb=%s (build %ss, above)\n' "$(size_mb "$LAB_BASE")" "$t_build" >>"$out/measurements.txt"
    t_build_pytorch() { build_one lab-pytorch; }
    check build-lab-pytorch t_build_pytorch
    t_build_ml() { build_one lab-python-ml; }
    have_image "$LAB_PYTORCH" && check build-lab-python-ml t_build_ml

    # Every image's tests, inherited: lab-python-ml runs lab-base's,
    # lab-pytorch's and its own. GPU tests must say SKIP here, never PASS.
    t_image_tests_full() {
        local f=$work/image-tests-full.out
        "$labkit" test --engine "$engine" --image lab-pytorch --image lab-python-ml --variant cpu \
            --log-dir "$logs/image-tests" >"$f" 2>&1 || {
            cat "$f"
            fail "labkit test: $(grep -m1 '^FAIL' "$f" || tail -1 "$f")"
        }
        cat "$f"
        grep -q '^PASS .*gpu_' "$f" && fail "a GPU test passed on a machine without a GPU"
        [ "$(grep -c '^SKIP .*gpu_' "$f")" = 3 ] || fail "expected 3 skipped GPU tests (torch on 2 images, TF on 1)"
        grep -q '^PASS  lab-python-ml-cpu lab-base/sudo.sh' "$f" || fail "lab-python-ml did not inherit lab-base's tests"
        note "$(tail -1 "$f")"
    }
    have_image "$LAB_ML" && check image-tests-pytorch-python-ml t_image_tests_full

    # A researcher in a running lab-pytorch container: `pip install` without
    # sudo lands in ~/.local, its script is on PATH, and the locked numpy and
    # torch cannot be replaced.
    t_user_pip() {
        local c out np
        c=$(ctr_name userpip)
        "$engine" run -d --label "labkit-e2e=$run_id" --name "$c" "${cluster_env[@]}" --network host \
            -v "$pip_dir:/etc/xdg/pip:ro" "$LAB_PYTORCH" >/dev/null
        wait_until 60 exec_or_gone "$c" || fail "labinit shell did not work within 60 s"
        ushell() { "$engine" exec "$c" /opt/lab/labinit shell -- bash -c "$1"; }
        versions=$(ushell 'python -c "import numpy, torch; print(numpy.__version__, torch.__version__)"')
        np=${versions%% *}
        out=$(ushell 'pip install tabulate 2>&1; echo "rc=$?"')
        echo "$out"
        grep -q '^rc=0$' <<<"$out" || fail "pip install tabulate as $U_NAME failed: $(grep -m1 ERROR <<<"$out")"
        out=$(ushell 'id -u; command -v tabulate; python -c "import tabulate; print(tabulate.__file__)"; echo a b | tabulate')
        echo "$out"
        [ "$(sed -n 1p <<<"$out")" = "$U_ID" ] || fail "the shell did not run as uid $U_ID"
        [ "$(sed -n 2p <<<"$out")" = "/home/$U_NAME/.local/bin/tabulate" ] || fail "tabulate's script is not ~/.local/bin/tabulate on PATH: $(sed -n 2p <<<"$out")"
        [[ "$(sed -n 3p <<<"$out")" == /home/$U_NAME/.local/lib/python3.12/site-packages/* ]] || fail "tabulate is not in the user site: $(sed -n 3p <<<"$out")"
        # A version other than the lock's: refused, named as the constraint.
        out=$(ushell 'pip install "numpy!='"$np"'" 2>&1; echo "rc=$?"')
        echo "$out"
        grep -q '^rc=0$' <<<"$out" && fail "pip install 'numpy!=$np' succeeded as the user"
        grep -q "(constraint) numpy==$np" <<<"$out" || fail "pip's refusal does not name the locked numpy==$np constraint"
        out=$(ushell 'pip install --upgrade torch 2>&1; echo "rc=$?"; python -c "import numpy, torch; print(numpy.__version__, torch.__version__)"')
        echo "$out"
        [ "$(tail -1 <<<"$out")" = "$versions" ] || fail "numpy/torch changed from $versions after the user's pip: $(tail -1 <<<"$out")"
        # Without the constraints, the user site could shadow numpy; say so.
        note "user pip install tabulate -> ~/.local (script on PATH); numpy!=$np refused as constraint; upgrade torch kept ${versions#* }"
        crm "$c" >/dev/null
    }
    have_image "$LAB_PYTORCH" && check researcher-pip-install-user-site t_user_pip

    # A derived image: `RUN pip install` keeps the locked versions too.
    t_derived_pip() {
        local ctx=$work/derived rc=0
        mkdir -p "$ctx"
        printf 'FROM %s\nRUN pip install --no-cache-dir tabulate && python -c "import tabulate, sys; assert tabulate.__file__.startswith(sys.prefix)"\n' \
            "$LAB_PYTORCH" >"$ctx/Containerfile.ok"
        "$engine" build --network host -v "$pip_dir:/etc/xdg/pip:ro" -q -t localhost/labkit-e2e/derived-ok:cpu \
            -f "$ctx/Containerfile.ok" "$ctx" || fail "FROM lab-pytorch + RUN pip install tabulate failed"
        printf 'FROM %s\nRUN pip install --no-cache-dir "numpy<2"\n' "$LAB_PYTORCH" >"$ctx/Containerfile.bad"
        "$engine" build --network host -v "$pip_dir:/etc/xdg/pip:ro" -t localhost/labkit-e2e/derived-bad:cpu \
            -f "$ctx/Containerfile.bad" "$ctx" >"$work/derived-bad.out" 2>&1 || rc=$?
        cat "$work/derived-bad.out"
        [ "$rc" != 0 ] || fail "FROM lab-pytorch + RUN pip install 'numpy<2' built: the constraints did not hold"
        grep -q "(constraint) numpy==" "$work/derived-bad.out" || fail "the failed build does not name the numpy constraint"
        "$engine" rmi -f localhost/labkit-e2e/derived-ok:cpu >/dev/null 2>&1 || true
        note "RUN pip install tabulate ok (into the venv); RUN pip install 'numpy<2' refused by the constraint"
    }
    have_image "$LAB_PYTORCH" && check derived-image-pip-constraints t_derived_pip

    # The same lab-python-ml lock installed with pip and with uv, cold (no
    # cache), into empty targets on top of lab-pytorch.
    t_pip_vs_uv() {
        local lock=$repo/images/generated/lab-python-ml/cpu/requirements.lock uvver out
        uvver=$(uv --version 2>/dev/null | awk '{print $2}')
        [ -n "$uvver" ] || fail "uv is not installed on the host (tests/tools/deps.sh)"
        # shellcheck disable=SC2016 # the script expands inside the container
        out=$(crun measure --rm --network host -v "$pip_dir:/etc/xdg/pip:ro" -v "$lock:/tmp/ml.lock:ro" \
            -e SSL_CERT_FILE=/etc/xdg/pip/host-ca.crt --entrypoint /bin/bash "$LAB_PYTORCH" -c '
                set -e
                python -m venv /tmp/uvenv && env -u PIP_CONSTRAINT /tmp/uvenv/bin/pip install -q --no-cache-dir "uv=='"$uvver"'"
                t0=$(date +%s.%N)
                env -u PIP_CONSTRAINT pip install -q --no-cache-dir --require-hashes --no-deps --only-binary :all: --target /tmp/p -r /tmp/ml.lock
                t1=$(date +%s.%N)
                /tmp/uvenv/bin/uv pip install -q --no-cache --require-hashes --no-deps --only-binary :all: --target /tmp/u -r /tmp/ml.lock
                t2=$(date +%s.%N)
                /tmp/uvenv/bin/uv pip install -q --no-cache --compile-bytecode --require-hashes --no-deps --only-binary :all: --target /tmp/ub -r /tmp/ml.lock
                t3=$(date +%s.%N)
                s() { python -c "print(round($2 - $1, 1))"; }
                echo "pip_s=$(s "$t0" "$t1") uv_s=$(s "$t1" "$t2") uv_bytecode_s=$(s "$t2" "$t3") files_pip=$(find /tmp/p | wc -l) files_uv_bytecode=$(find /tmp/ub | wc -l)"
            ' 2>&1)
        echo "$out"
        grep -q '^pip_s=' <<<"$out" || fail "the measurement did not run: $(tail -1 <<<"$out")"
        printf 'lab-python-ml lock install: %s\n' "$(grep '^pip_s=' <<<"$out")" >>"$out_dir_measure"
        note "$(grep '^pip_s=' <<<"$out")"
    }
    out_dir_measure=$out/measurements.txt
    have_image "$LAB_PYTORCH" && check install-time-pip-vs-uv t_pip_vs_uv
    [ -s "$out/measurements.txt" ] && sed 's/^/e2e: measured: /' "$out/measurements.txt"
fi

# Images this run replaced (an older lab-base whose labels changed with HEAD)
# are dangling now; the build cache layers stay, they are still referenced.
"$engine" image prune -f >/dev/null 2>&1 || true

say "base image ${t_base}s, lab-base build ${t_build}s, scenarios $((SECONDS - t_scen_start))s"
finish
