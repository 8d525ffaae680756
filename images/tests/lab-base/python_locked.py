"""Every package of this image's locks (and its parents') is installed at the
locked version, and PIP_CONSTRAINT holds exactly those pins."""
import glob
import os
import re
import sys
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

pins = {}
for path in sorted(glob.glob("/opt/lab/python/*.lock")):
    for line in open(path):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", line)
        if m:
            pins[norm(m.group(1))] = (m.group(2), os.path.basename(path))
if not pins:
    sys.exit("no pins found in /opt/lab/python/*.lock")
installed = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        installed.setdefault(norm(name), d.version)
bad = [f"{n}: locked {v} in {f}, installed {installed.get(n, 'nothing')}"
       for n, (v, f) in sorted(pins.items()) if installed.get(n) != v]
if bad:
    sys.exit("not as locked: " + "; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""))
constraint = os.environ.get("PIP_CONSTRAINT", "")
if constraint != "/opt/lab/python/constraints.txt":
    sys.exit(f"PIP_CONSTRAINT is {constraint!r}, not /opt/lab/python/constraints.txt")
cons = {}
for line in open(constraint):
    n, _, v = line.strip().partition("==")
    cons[norm(n)] = v
want = {n: v for n, (v, _) in pins.items()}
if cons != want:
    diff = sorted(set(cons.items()) ^ set(want.items()))[:5]
    sys.exit(f"constraints.txt differs from the locks: {diff}")
print(f"{len(pins)} locked packages installed as locked; PIP_CONSTRAINT pins all of them")
