#!/usr/bin/env bash
# `make try`: what labkit exists for, end to end, in a few minutes on a fresh
# Debian 12 machine (as root):
#   1. a local Ubuntu 24.04 base image (debootstrap + podman import; no registry);
#   2. lab-base (cpu) built with podman by `labkit build` from the committed
#      Dockerfile, with this checkout's labinit;
#   3. a researcher's job started the way a pod spec starts it: the four
#      CLUSTER_* variables and the legacy `setup_and_run_command.sh "cd … &&
#      python …"` form, writing to a host directory that stands for the NFS volume;
#   4. stopped with SIGTERM as `kubectl delete` / preemption stops it: the job
#      saves a checkpoint, and the container's exit code is shown.
# Podman uses the project's own configuration (tests/e2e/containers.conf and
# storage.conf under $CACHE); /etc/containers is never read or changed.
#
# Environment: CACHE (default /var/cache/labkit), UBUNTU_MIRROR (debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${CACHE:-/var/cache/labkit}
step=0
say() { printf '\ntry: %s\n' "$*"; }
stage() { step=$((step + 1)); printf '\n== [%d/4] %s\n' "$step" "$*"; }
die() { printf 'try: error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (podman builds and debootstrap need it)"
command -v podman >/dev/null || die "podman is not installed: run tests/tools/deps.sh (or make test once)"
[ -x dist/labinit ] && [ -x dist/labkit ] || die "dist/labinit or dist/labkit missing: run make first"

export CONTAINERS_CONF=$repo/tests/e2e/containers.conf
mkdir -p "$cache/podman"
sed "s|/var/cache/labkit|$cache|" tests/e2e/storage.conf >"$cache/podman/storage.conf"
export CONTAINERS_STORAGE_CONF=$cache/podman/storage.conf

base_ref=localhost/labkit-try/ubuntu:noble
work=$(mktemp -d /tmp/labkit-try.XXXXXX)
chmod 0755 "$work"
ctr=labkit-try-$$
cleanup() {
    podman rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

stage "base image: Ubuntu 24.04 from debootstrap (once, then cached)"
if podman image inspect "$base_ref" >/dev/null 2>&1; then
    echo "cached: $base_ref"
else
    t0=$SECONDS
    tests/tools/noble-root.sh "$cache/try/noble-root.tar" 2>&1 | awk '/^I: Retrieving|^I: Extracting|^I: Installing|^I: Configuring/ {n++; if (n % 25 == 1) print "  " $0; next} /^E:|rror/ {print}'
    podman import --change 'CMD ["/bin/bash"]' "$cache/try/noble-root.tar" "$base_ref" >/dev/null
    echo "made $base_ref in $((SECONDS - t0)) s"
fi

stage "lab-base (cpu): labkit build with podman from images/generated/lab-base/cpu/Dockerfile"
t0=$SECONDS
dist/labkit build --engine podman --image lab-base --variant cpu --base-override "cpu=$base_ref" \
    --network host --labinit dist/labinit --log-dir "$work/build"
image=$(dist/labkit plan --format json --image lab-base --variant cpu --base-override "cpu=$base_ref" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["targets"][0]["tags"][0])')
echo "built $image in $((SECONDS - t0)) s"

stage "a researcher's job, started as the cluster guide's pod spec starts it"
data=$work/cvlabdata
mkdir -p "$data"
cat >"$data/train.py" <<'EOF'
import os, signal, sys, time

step = 0
def checkpoint(signum, frame):
    with open("checkpoint.txt", "w") as f:
        f.write(f"step {step}\n")
    print(f"train.py: got {signal.Signals(signum).name} at step {step}: checkpoint saved to {os.getcwd()}/checkpoint.txt as uid {os.getuid()}", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, checkpoint)
print(f"train.py: training as {os.environ.get('USER')} (uid {os.getuid()}, gid {os.getgid()}) in {os.getcwd()}", flush=True)
while True:
    step += 1
    if step % 5 == 0:
        print(f"train.py: step {step}", flush=True)
    time.sleep(0.2)
EOF
cat <<EOF
  podman run IMAGE with
    env:     CLUSTER_USER=alice CLUSTER_USER_ID=123456 CLUSTER_GROUP_NAME=CVLAB-unit CLUSTER_GROUP_ID=11166
    volume:  $data -> /cvlabdata (the shared NFS volume)
    command: ["/opt/lab/setup_and_run_command.sh", "cd /cvlabdata && python3 train.py"]
EOF
podman run -d --name "$ctr" --network none \
    -e CLUSTER_USER=alice -e CLUSTER_USER_ID=123456 -e CLUSTER_GROUP_NAME=CVLAB-unit -e CLUSTER_GROUP_ID=11166 \
    -v "$data:/cvlabdata" "$image" \
    /opt/lab/setup_and_run_command.sh "cd /cvlabdata && python3 train.py" >/dev/null
for _ in $(seq 1 100); do
    podman logs "$ctr" 2>&1 | grep -q "train.py: step 10" && break
    sleep 0.2
done
podman logs "$ctr" 2>&1 | sed 's/^/  | /'

stage "kubectl delete: SIGTERM to PID 1 (labinit), which passes it to the whole job"
podman kill --signal TERM "$ctr" >/dev/null
code=$(podman wait "$ctr")
podman logs "$ctr" 2>&1 | grep -E 'train.py: got|received SIGTERM|exiting with code' | sed 's/^/  | /'
owner=$(stat -c '%u:%g' "$data/checkpoint.txt" 2>/dev/null || echo missing)
cat <<EOF

try: the container exited with code $code: 143 = 128 + SIGTERM, the command string's shell was
     stopped by the signal (as Kubernetes reports a deleted pod) after train.py saved its
     checkpoint; the checkpoint on the "NFS volume" is owned by $owner, alice's cluster
     uid:gid as the NFS server sees them. Next: README.md ("For researchers"),
     docs/images.md (the image family), make test (every test).
EOF
[ "$code" = 143 ] && [ "$owner" = 123456:11166 ] || die "the job did not stop as expected (exit $code, checkpoint $owner)"
