#!/usr/bin/env bash
# Runs `cargo test ARGS...` and fails when it passed no test at all (for instance when the filter or
# `--ignored` matches nothing), as well as when cargo test fails. Prints the totals.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" = 0 ] || exit "$status"
read -r passed failed ignored < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) g += $(i-1)
    } } END { print p+0, f+0, g+0 }' "$log")
echo "cargo test $*: $passed passed, $failed failed, $ignored ignored"
if [ "$passed" = 0 ]; then
  echo "cargo test $*: no test ran, so nothing was checked" >&2
  exit 1
fi
