"""Signal delivery latency driver for bench-signal.sh.

Usage: sigdrive.py NAME TRIALS BUDGET_S -- COMMAND...

Per trial: start COMMAND (unshare ... INIT -- perl sigjob.pl: the init is
PID 1 of a new PID namespace, the child of unshare), wait for the job's
"READY", read CLOCK_MONOTONIC, send SIGTERM to the init from this (the
parent) namespace, and read the job's "TERM <ns>" (CLOCK_MONOTONIC at handler
entry; one clock for both namespaces). Stops after TRIALS trials or when
BUDGET_S seconds are spent. Prints one line:
  RESULT name=.. trials=.. failed=.. p50_us=.. p99_us=.. max_us=.. mean_us=.. why=..
(why: the failed trials by reason, or "-").
"""
import os
import select
import signal
import statistics
import subprocess
import sys
import time

name, trials, budget = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cmd = sys.argv[sys.argv.index("--") + 1:]


def readline(fd, deadline, buf):
    """A line from fd before deadline (monotonic s), or None."""
    while b"\n" not in buf[0]:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf[0] += chunk
    line, buf[0] = buf[0].split(b"\n", 1)
    return line.decode(errors="replace")


reasons = {}


def fail(why):
    reasons[why] = reasons.get(why, 0) + 1


def one():
    """Latency of one trial in ns, or None (the reason counted)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    fd, buf = p.stdout.fileno(), [b""]
    try:
        deadline = time.monotonic() + 5
        while True:
            line = readline(fd, deadline, buf)
            if line is None:
                return fail("no-ready")
            if line == "READY":
                break
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            kids = f.read().split()
        if len(kids) != 1:
            return fail("no-init")
        init = int(kids[0])
        t0 = time.monotonic_ns()
        os.kill(init, signal.SIGTERM)
        while True:
            line = readline(fd, deadline, buf)
            if line is None:
                return fail(f"no-handler(exit={p.poll()})")
            if line.startswith("TERM "):
                return int(line.split()[1]) - t0
    finally:
        if p.poll() is None:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()  # unshare --kill-child takes the namespace with it
                p.wait()
        p.stdout.close()


lat, failed = [], 0
start = time.monotonic()
while len(lat) + failed < trials and time.monotonic() - start < budget:
    r = one()
    if r is None:
        failed += 1
    else:
        lat.append(r / 1000)
why = ",".join(f"{k}:{v}" for k, v in sorted(reasons.items())) or "-"
if not lat:
    print(f"RESULT name={name} trials=0 failed={failed} why={why}")
    sys.exit(0)
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]  # noqa: E731
print(f"RESULT name={name} trials={len(lat)} failed={failed} p50_us={statistics.median(lat):.0f} "
      f"p99_us={q(0.99):.0f} max_us={lat[-1]:.0f} mean_us={statistics.mean(lat):.0f} why={why}")
