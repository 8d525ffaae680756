"""Print medians from a hyperfine JSON export, each minus a baseline, and ratios.

Usage: summarize.py FILE TITLE BASELINE OURS OTHER...
"""
import json
import statistics
import sys

path, title, base, ours, *others = sys.argv[1:]
results = {r["command"]: r for r in json.load(open(path))["results"]}
med = {name: statistics.median(r["times"]) * 1000 for name, r in results.items()}
print(f"## {title}")
print(f"| command | median (ms) | over {base} (ms) | ratio vs {ours} |")
print("| --- | --- | --- | --- |")
ours_over = med[ours] - med[base]
for name in [base, ours, *others]:
    over = med[name] - med[base]
    ratio = "" if name == base else f"{over / ours_over:.1f}x" if ours_over > 0 else "n/a"
    print(f"| {name} | {med[name]:.2f} | {over:.2f} | {ratio} |")
print()
