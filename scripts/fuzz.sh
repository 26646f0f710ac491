#!/usr/bin/env bash
# Fuzzes every parser that takes outside input (targets in fuzz/fuzz_targets/, seeds in fuzz/seeds/).
#
#   scripts/fuzz.sh --short              # the test suite's step: build, then each target 5 s from its seeds
#   scripts/fuzz.sh                      # each target 60 s, corpus kept in fuzz/corpus/TARGET
#   scripts/fuzz.sh --seconds N [TARGET] # each target (or one) N seconds
#
# Prints `fuzz: TARGET ok (N runs)` per target and ends with `fuzz: N passed, M failed`; exits
# non-zero if any target crashed, panicked, timed out or ran out of memory. A crash's input is
# saved in fuzz/artifacts/TARGET/; once fixed, copy it into fuzz/seeds/TARGET/ so every short
# run replays it.
#
# Builds (measured from a clean fuzz/target on 2 cores): the short run uses the dev profile
# without a sanitizer, about 2 minutes of build and 40 s of runs (plus about 1.5 minutes the first
# time, to install cargo-fuzz). AddressSanitizer costs about 25% more build CPU and runs several
# times slower; an optimised build (-O) costs twice the CPU of the dev one. Five seconds per target
# is mostly replaying the seeds and past crashes, which needs no speed, and the dev profile keeps
# debug assertions and overflow checks on. Our crates are `#![forbid(unsafe_code)]`, so what we
# hunt is panics, hangs and broken round trips. Longer runs use an optimised build with the same
# assertions (`-O -a`): 5-30x more executions per second.
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets it use them on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(config detect guard http1 response roundtrip route spiffe snapshot pem)
short=false
seconds=60
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=true; seconds=5 ;;
    --seconds) seconds="${2:?--seconds needs a number}"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) only="$1" ;;
  esac
  shift
done
if [ -n "$only" ]; then
  case " ${TARGETS[*]} " in
    *" $only "*) TARGETS=("$only") ;;
    *) echo "fuzz: no target $only (have: ${TARGETS[*]})" >&2; exit 2 ;;
  esac
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13'
fi

if $short; then
  build=(--dev --sanitizer none)
else
  build=(-O -a --sanitizer none)
fi
fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$1" --fuzz-dir fuzz "${build[@]}" "${@:2}"; }

echo "fuzz: building ${TARGETS[*]} (${build[*]})"
if [ ${#TARGETS[@]} -eq 1 ]; then fuzz build "${TARGETS[0]}"; else fuzz build; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
for t in "${TARGETS[@]}"; do
  if $short; then
    # A throwaway corpus: the checked-in seeds stay as they are.
    corpus="$work/corpus-$t"
  else
    corpus="fuzz/corpus/$t"
  fi
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp fuzz/seeds/"$t"/* "$corpus"/
  log="$work/$t.log"
  # -timeout: one input taking this long is a hang (generous: the dev build is slow).
  if fuzz run "$t" "$corpus" -- -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    echo "fuzz: $t ok (${runs:-?} runs)"
    passed=$((passed + 1))
  else
    echo "fuzz: $t FAILED:"
    # From the panic or sanitizer report on, without cargo-fuzz's own backtrace.
    report="$(sed -n '/panicked at\|ERROR: libFuzzer\|==[0-9]*== *ERROR/,/^Error: Fuzz target exited/p' "$log")"
    if [ -n "$report" ]; then echo "$report"; else tail -n 40 "$log"; fi | head -n 80 | sed 's/^/  /'
    echo "  inputs that failed are in fuzz/artifacts/$t/ (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz ${build[*]} $t FILE)"
    failed=$((failed + 1))
  fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
