#!/usr/bin/env bash
# `make fuzz`: every target in fuzz/ under libFuzzer (cargo-fuzz, nightly) for SECONDS each, starting
# from and growing the committed corpus fuzz/corpus/<target>. Installs the nightly toolchain and
# cargo-fuzz when missing. Fails on the first crash; libFuzzer leaves the input in
# fuzz/artifacts/<target>/: fix the bug, then copy the input into the corpus so `make test` replays it.
# Prints executions per target and in total.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-150}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hiedge-fuzz$')
total=0
summary=""
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  echo "fuzz: $t for ${seconds}s"
  set +e
  cargo +nightly fuzz run --features libfuzzer "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 -timeout=10 >"$log" 2>&1
  status=$?
  set -e
  grep -E "^(#[0-9]+.*DONE|==[0-9]+==|SUMMARY|thread .* panicked|.*panicked at)" "$log" || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rm -f "$log"
  [ "$status" = 0 ] || { echo "fuzz: $t crashed (exit $status); the input is in fuzz/artifacts/$t/" >&2; exit 1; }
  total=$((total + ${runs:-0}))
  summary+="$t: ${runs:-0} executions, 0 crashes"$'\n'
done
printf '%s' "$summary"
echo "fuzz: $total executions in total, 0 crashes"
