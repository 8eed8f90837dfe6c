#!/usr/bin/env bash
# Instructions the gateway executes per /v1 request: a measure that, unlike req/s, does not move
# with the machine's load. Runs `exoclaw gateway` under valgrind (callgrind) in front of an instant
# local upstream (scripts/lib/instant-upstream.py), warms it up, zeroes the counters, drives
# wrk's 4 connections for a few seconds, and prints total instructions / requests, streamed and
# not. `--keep DIR` keeps the callgrind profiles (callgrind_annotate --inclusive=yes FILE).
#
# Usage: scripts/gateway-instructions.sh [--keep DIR] [--seconds N]
# Needs valgrind and wrk (scripts/peers/nginx.sh installs wrk); EXOCLAW_BIN picks the binary
# (default: builds target/release/exoclaw).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=""; seconds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v valgrind >/dev/null || { echo "gateway-instructions: valgrind is needed" >&2; exit 1; }
command -v wrk >/dev/null || bash scripts/peers/nginx.sh >/dev/null
bin=${EXOCLAW_BIN:-target/release/exoclaw}
[ -n "${EXOCLAW_BIN:-}" ] || cargo build --release -p exoclaw-cli --locked
work=$(mktemp -d -t exoclaw-instructions.XXXXXX)
trap 'pkill -f "gateway --bind 127.0.0.1:$gw" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck source=lib/instant-upstream.sh
. scripts/lib/instant-upstream.sh
instant_upstream "$work"
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BODY")
function done(summary) io.write(string.format("REQUESTS\t%d\n", summary.requests)) end
LUA
setsid valgrind --tool=callgrind \
  --callgrind-out-file="$work/cg.%p" "$bin" gateway --bind "127.0.0.1:$gw" >"$work/log" 2>&1 &
for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$gw/healthz" && break; sleep 0.2; done
pid=$(pgrep -f "valgrind.*gateway --bind 127.0.0.1:$gw" | head -n 1)
for stream in false true; do
  body="{\"model\":\"fixed/m\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hi\"}],\"stream\":$stream}"
  for _ in 1 2 3; do curl -fs -o /dev/null -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$gw/v1/chat/completions"; done
  callgrind_control -z "$pid" >/dev/null 2>&1
  n=$(BODY=$body wrk -t1 -c4 -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$gw/v1/chat/completions" | awk -F'\t' '/^REQUESTS/ {print $2}')
  callgrind_control -d "$pid" >/dev/null 2>&1; sleep 0.5
  profile=$(ls -t "$work"/cg.* | head -n 1)
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$profile")
  mode=$([ "$stream" = true ] && echo streaming || echo non-streaming)
  printf '%-14s %8d requests  %10d instructions/request\n' "$mode" "$n" $((total / n))
  if [ -n "$keep" ]; then mkdir -p "$keep"; cp "$profile" "$keep/callgrind.$mode"; fi
done
