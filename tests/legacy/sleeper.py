#!/usr/bin/env python3
"""A re-creation of the legacy `sleeper` idle watchdog, written from its
description in shared/design/legacy.md (not its code): every 10 s it looks at
all processes with psutil; the container is active while any other process
has "python" in its name or uses over 5 % CPU (the real one also asked NVML
whether a GPU was busy; there is no GPU here, so that part is left out and
the figures are a lower bound of its cost). After 30 idle minutes it exits.

Used by tests/bench/bench-idle.sh as the baseline of one idle check:
`sleeper.py --bench N` runs N checks and prints the CPU time of one check and
the peak resident memory, as `labinit idle-check` does.
"""
import os
import resource
import sys
import time

import psutil

ME = os.getpid()


def check():
    """One check, the sleeper's way: the reason the container is busy, or None."""
    reason = None
    for p in psutil.process_iter(["name"]):
        if p.pid == ME:
            continue
        try:
            name = p.info["name"] or ""
            cpu = p.cpu_percent(interval=None)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if reason is None and "python" in name:
            reason = f"{name} ({p.pid}) is running"
        if reason is None and cpu > 5:
            reason = f"{name} ({p.pid}) used {cpu:.0f}% CPU"
    return reason


def bench(n):
    check()  # primes cpu_percent, as the first check of the real loop does
    total = 0.0
    reason = None
    for _ in range(n):
        time.sleep(0.02)
        t0 = time.process_time()
        reason = check()
        total += time.process_time() - t0
    procs = len(psutil.pids())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    verdict = f"busy: {reason}" if reason else "idle"
    print(f"processes={procs} checks={n} cpu_per_check_us={total / n * 1e6:.0f} max_rss_kib={rss} verdict={verdict}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        bench(int(sys.argv[2]))
        return
    idle_since = time.monotonic()
    while True:
        reason = check()
        now = time.monotonic()
        if reason:
            idle_since = now
        print(f"sleeper: {'busy: ' + reason if reason else 'idle'}", flush=True)
        if now - idle_since >= 30 * 60:
            print("sleeper: idle for 30 minutes, exiting", flush=True)
            return
        time.sleep(10)


if __name__ == "__main__":
    main()
