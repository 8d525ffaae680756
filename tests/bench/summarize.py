"""Print medians from hyperfine JSON exports, each minus a baseline, and ratios.

Usage: summarize.py FILES TITLE BASELINE OURS OTHER...

FILES is one export or several joined with commas (the rounds of one
interleaved benchmark, see rounds.sh): the times of a command are pooled
across them before the median is taken, so a drift of the machine during the
run weighs on every command alike.
"""
import json
import statistics
import sys

paths, title, base, ours, *others = sys.argv[1:]
times = {}
for path in paths.split(","):
    for r in json.load(open(path))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
med = {name: statistics.median(t) * 1000 for name, t in times.items()}
print(f"## {title}")
print(f"| command | median (ms) | over {base} (ms) | ratio vs {ours} |")
print("| --- | --- | --- | --- |")
ours_over = med[ours] - med[base]
for name in [base, ours, *others]:
    over = med[name] - med[base]
    ratio = "" if name == base else f"{over / ours_over:.1f}x" if ours_over > 0 else "n/a"
    print(f"| {name} | {med[name]:.2f} | {over:.2f} | {ratio} |")
print()
