# shellcheck shell=bash
# Sourced by the benchmarks: `interleave` runs hyperfine over several
# commands in ROUNDS rounds, each command in turn for RUNS/ROUNDS runs per
# round, so a drift of the machine (another tenant, the page cache, the
# host) during the benchmark weighs on every command alike instead of on the
# one that happened to run then. hyperfine itself runs its commands one after
# the other, all runs of the first before the second.
#
# interleave OUT ROUNDS RUNS PREPARE NAME CMD [NAME CMD]...
#   OUT      prefix of the JSON exports (OUT.<round>.<name>.json)
#   PREPARE  command run before every timed run ("" for none)
# Prints the exports joined with commas (summarize.py's FILES).
interleave() {
    local out=$1 rounds=$2 runs=$3 prepare=$4; shift 4
    local per=$(( (runs + rounds - 1) / rounds )) exports=() r i
    local prep=(); [ -n "$prepare" ] && prep=(--prepare "$prepare")
    local args=("$@")
    for r in $(seq 1 "$rounds"); do
        for (( i = 0; i < ${#args[@]}; i += 2 )); do
            local name=${args[i]} cmd=${args[i+1]} f="$out.$r.${args[i]}.json"
            hyperfine -N --style none --runs "$per" --warmup 2 "${prep[@]}" --export-json "$f" -n "$name" "$cmd" >/dev/null 2>&1 \
                || { echo "bench: '$cmd' failed (hyperfine)" >&2; return 1; }
            exports+=("$f")
        done
    done
    (IFS=,; echo "${exports[*]}")
}
