#!/usr/bin/env bash
# First start on a large account database (issue 14 §3): sites bake their
# directory's passwd into images so that NFS uids have names. For N in
# 1000, 10 000 and 100 000 extra accounts (passwd, shadow, group and gshadow
# all populated, one group per user), `labinit setup` creates the cluster user
# (user + group + home + sudo) in a throwaway copy of the Debian root whose
# /etc is an overlay, as in a container (lower: the image's /etc with the
# accounts; upper: a fresh writable layer on the disk, new for every run).
# Reports the median wall time minus a bare `chroot ROOT /bin/true`, the
# median CPU time (user + system of the run, chroot and GNU time included),
# the peak resident memory (rusage) and the
# size of the four files, so the growth from 1k to 100k shows; and the
# floor on this machine: one perl reading the four files and writing each
# twice (new file and backup) on the same overlay, minus perl's start. The legacy
# scripts are not run here (useradd on 100 000 accounts takes minutes).
# Usage: bench-accounts.sh LABINIT DEBIAN_ROOT [SIZES] [RUNS]
set -euo pipefail
[ -x /usr/bin/time ] || { echo "bench-accounts: needs GNU time (apt-get install time)" >&2; exit 1; }
labinit=$(realpath "${1:?labinit binary}"); debroot=${2:?debian root}
sizes=${3:-1000 10000 100000}; runs=${4:-5}
work=$(mktemp -d /tmp/labkit-bench-accounts.XXXXXX)
trap 'umount "$work/root/etc" 2>/dev/null || true; rm -rf "$work"' EXIT
R=$work/root
cp -a "$debroot/." "$R"
install -D -m 0755 "$labinit" "$R/opt/lab/labinit"
export CLUSTER_USER=alice CLUSTER_USER_ID=123456 CLUSTER_GROUP_NAME=CVLAB-unit CLUSTER_GROUP_ID=11166
export LABKIT_QUIET=1 LABKIT_STEPS_DIR=/nonexistent

# RUNS runs of `chroot ROOT CMD`, each after the restore: prints the median
# wall time (ms), the median CPU time (ms) and the peak resident memory (KiB,
# the rusage of the run).
measure() {
    python3 - "$work/restore" "$runs" chroot "$R" "$@" <<'PY'
import resource, statistics, subprocess, sys, time
restore, runs, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rss_file = restore + ".rss"
times, cpus, rss = [], [], 0
for _ in range(runs):
    subprocess.run([restore], check=True)
    # GNU time reports the peak RSS of the command alone (a child forked
    # from Python would count Python's pages until its exec).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if p.returncode != 0:
        sys.exit(f"bench-accounts: {' '.join(cmd)} exited with {p.returncode}")
    rss = max(rss, int(open(rss_file).read().split()[-1]))
print("%.2f %.1f %d" % (statistics.median(times) * 1000, statistics.median(cpus) * 1000, rss))
PY
}

echo "## First start on a large account database: labinit setup (user + group + home + sudo), median of $runs runs"
echo "| extra accounts | passwd+shadow+group+gshadow (KiB) | wall (ms) | over bare (ms) | CPU (ms) | peak RSS (KiB) | RSS / files | bytes alone: read 4, write 8 (ms) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
# shellcheck disable=SC2016 # perl code, expanded by perl
copy8='for $f (qw(passwd shadow group gshadow)) { open(I, "<", "/etc/$f") or die; local $/; my $d = <I>; for $s (".new", "-.new") { open(O, ">", "/etc/.$f$s") or die; print O $d; close(O) or die } }'
cp -a "$R/etc" "$work/etc.base"
for n in $sizes; do
    umount "$R/etc" 2>/dev/null || true
    rm -rf "$work/etc.pristine"; cp -a "$work/etc.base" "$work/etc.pristine"
    python3 - "$work/etc.pristine" "$n" <<'PY'
import sys
etc, n = sys.argv[1], int(sys.argv[2])
first = 200000  # above the cluster ids of the benchmark (123456, 11166)
with open(f"{etc}/passwd", "a") as pw, open(f"{etc}/shadow", "a") as sh, \
     open(f"{etc}/group", "a") as gr, open(f"{etc}/gshadow", "a") as gs:
    for i in range(n):
        uid = first + i
        name = f"u{uid}"
        pw.write(f"{name}:x:{uid}:{uid}:Site user {i}:/nfs/home/{name}:/bin/bash\n")
        sh.write(f"{name}:*:19000:0:99999:7:::\n")
        gr.write(f"{name}:x:{uid}:\n")
        gs.write(f"{name}:!::\n")
PY
    # A fresh writable layer over the image's /etc for every run.
    cat > "$work/restore" <<RESTORE
#!/bin/sh
umount "$R/etc" 2>/dev/null; rm -rf "$R/home/alice" "$work/upper" "$work/ovlwork"
mkdir -p "$R/etc" "$work/upper" "$work/ovlwork"
mount -t overlay overlay -o "lowerdir=$work/etc.pristine,upperdir=$work/upper,workdir=$work/ovlwork" "$R/etc"
RESTORE
    chmod +x "$work/restore"
    kib=$(( ($(cat "$work"/etc.pristine/{passwd,shadow,group,gshadow} | wc -c) + 1023) / 1024 ))
    read -r bare _ _ <<<"$(measure /bin/true)"
    read -r ms cpu rss <<<"$(measure /opt/lab/labinit setup)"
    # Sanity: the user exists after the last run.
    chroot "$R" id alice | grep -q 'uid=123456(alice)' || { echo "bench-accounts: labinit did not create alice ($n accounts)" >&2; exit 1; }
    # The floor: moving the bytes alone. One perl reads the four files and
    # writes each twice (the new file and its backup) on the same overlay,
    # minus perl's own start.
    read -r perl0 _ _ <<<"$(measure /usr/bin/perl -e 1)"
    read -r perl8 _ _ <<<"$(measure /usr/bin/perl -e "$copy8")"
    awk -v n="$n" -v k="$kib" -v b="$bare" -v m="$ms" -v c="$cpu" -v r="$rss" -v p0="$perl0" -v p8="$perl8" \
        'BEGIN { printf "| %d | %d | %.2f | %.2f | %.1f | %d | %.2f | %.2f |\n", n, k, m, m - b, c, r, r / k, p8 - p0 }'
done
echo
