#!/usr/bin/env bash
# Instructions the runtime executes per turn (crates/exoclaw/benches/runtime.rs, instant model):
# a measure that, unlike the bench's times, does not move with the machine's load. Each case runs
# under valgrind (callgrind) at two turn counts; the difference divided by the extra turns cancels
# the start-up. `store/…` cases make the same store calls in the same order without the runtime, so
# `runtime/X - store/X` is the runtime's own share.
#
# Usage: scripts/runtime-instructions.sh [--turns N] [CASE…]
#   CASE: runtime|store / file|memory / continued|new (default: all eight)
# Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
turns=200
cases=()
while [ $# -gt 0 ]; do
  case "$1" in
    --turns) turns=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) cases+=("$1") ;;
  esac
  shift
done
if [ ${#cases[@]} -eq 0 ]; then
  for part in runtime store; do for backing in file memory; do for kind in continued new; do
    cases+=("$part/$backing/$kind")
  done; done; done
fi
command -v valgrind >/dev/null || { echo "runtime-instructions: valgrind is needed" >&2; exit 1; }
cargo bench -p exoclaw --bench runtime --locked --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/runtime-* | grep -v '\.d$' | head -n 1)
work=$(mktemp -d -t exoclaw-runtime-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT
count() { # case turns -> total instructions
  EXOCLAW_BENCH_CASE=$1 EXOCLAW_BENCH_TURNS=$2 valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg" "$bin" >/dev/null 2>&1
  awk '/^(summary|totals):/ {print $2; exit}' "$work/cg"
}
base=20
for case in "${cases[@]}"; do
  low=$(count "$case" "$base")
  high=$(count "$case" "$turns")
  printf '%-26s %10d instructions/turn\n' "$case" $(((high - low) / (turns - base)))
done
