#!/usr/bin/env bash
# Run every cargo-fuzz target of labkit for a bounded time (issue 7 §3).
#
#   fuzz/run.sh SECONDS          run each target SECONDS s; exit 1 on any crash
#   fuzz/run.sh SECONDS --merge  same, then merge new coverage into fuzz/corpus/
#                                (what `make fuzz` does; CI never merges)
#   FUZZ_TARGETS="accounts duration" fuzz/run.sh 10   only these targets
#
# Stable toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags,
# and --sanitizer none keeps libFuzzer's coverage guidance without ASan (the
# fuzzed code is safe Rust; a panic is the crash we look for). Each target
# starts from the committed corpus (fuzz/corpus/T, read only here) plus
# fuzz/work/T (scratch, ignored by git); crashes land in fuzz/artifacts/T/.
set -uo pipefail
cd "$(dirname "$0")"

secs=${1:?usage: fuzz/run.sh SECONDS [--merge]}
merge=${2:-}
targets=${FUZZ_TARGETS:-accounts provision env_line duration manifest jupyter}
export RUSTC_BOOTSTRAP=1
# Keep the committed corpus small: inputs stay short (the account fixtures
# are ~2 KiB, the manifest ~3 KiB), and a merge stops at this many files.
max_files=300
declare -A max_len=([accounts]=4096 [provision]=8192 [env_line]=512 [duration]=256 [manifest]=8192 [jupyter]=2048)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  t0=$SECONDS
  cargo install cargo-fuzz --locked --quiet || exit 1
  echo "fuzz: installed cargo-fuzz in $((SECONDS - t0)) s"
fi

# --debug-assertions: overflow checks and debug_assert!s (e.g. the field
# count in Table::push) fire as crashes too.
fuzz() { local sub=$1; shift; cargo fuzz "$sub" --sanitizer none --release --debug-assertions "$@"; }

t0=$SECONDS
fuzz build || exit 1
echo "fuzz: built the targets in $((SECONDS - t0)) s"

failed=()
for t in $targets; do
  mkdir -p "work/$t" "corpus/$t"
  log="work/$t.log"
  echo "fuzz: $t for ${secs} s"
  t0=$SECONDS
  if fuzz run "$t" "work/$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len="${max_len[$t]:-4096}" -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz: $t: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs in $((SECONDS - t0)) s, no crash"
  else
    failed+=("$t")
    echo "fuzz: $t CRASHED; see fuzz/$log" >&2
    sed -n '/panicked at/,/stack backtrace/p' "$log" | head -40 >&2
    grep -E 'Test unit written to|Reproduce with' -A1 "$log" | head -6 >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]} (inputs in fuzz/artifacts/; keep them out of fuzz/corpus)" >&2
  exit 1
fi

if [ "$merge" = "--merge" ]; then
  # Merging by edges only (no hit counters, no value profile) adds just the
  # inputs that reach code the corpus does not reach yet, which keeps the
  # committed corpus at tens to a few hundred files.
  edges=(-use_counters=0 -use_value_profile=0)
  for t in $targets; do
    before=$(ls "corpus/$t" | wc -l)
    fuzz run "$t" "corpus/$t" "work/$t" -- -merge=1 "${edges[@]}" -max_len="${max_len[$t]:-4096}" \
      >"work/$t.merge.log" 2>&1 || { echo "fuzz: merging $t failed; see fuzz/work/$t.merge.log" >&2; exit 1; }
    after=$(ls "corpus/$t" | wc -l)
    echo "fuzz: $t corpus $before -> $after files"
    if [ "$after" -gt "$max_files" ]; then
      # Too many: re-minimise to a smallest covering set, keeping the
      # hand-written seeds (every file not named by its SHA-1).
      tmp=$(mktemp -d "work/$t.min.XXXX")
      fuzz run "$t" "$tmp" "corpus/$t" -- -set_cover_merge=1 "${edges[@]}" -max_len="${max_len[$t]:-4096}" \
        >"work/$t.min.log" 2>&1 || { echo "fuzz: minimising $t failed; see fuzz/work/$t.min.log" >&2; exit 1; }
      find "corpus/$t" -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}' -exec cp -p {} "$tmp/" \;
      rm -rf "corpus/$t" && mv "$tmp" "corpus/$t"
      echo "fuzz: $t corpus minimised to $(ls "corpus/$t" | wc -l) files"
    fi
  done
  rm -rf work
fi
echo "fuzz: all targets ran ${secs} s each without a crash"
