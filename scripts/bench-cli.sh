#!/usr/bin/env bash
# The CLI's own costs, on the release binary: `exoclaw --version` cold start (hyperfine), the idle
# REPL's memory before any model is loaded, and the binary's size. Issue targets: cold start
# ≤ 10 ms, idle REPL RSS ≤ 30 MB. (Agent-loop overhead and turn appends have criterion benches:
# `cargo bench -p exoclaw-core --bench agent_loop`, `cargo bench -p exoclaw-store --bench store`.)
# Usage: scripts/bench-cli.sh          (needs hyperfine: apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 1; }
cargo build -q --release -p exoclaw-cli
bin=target/release/exoclaw
home=$(mktemp -d); trap 'rm -rf "$home"' EXIT

echo "== cold start: exoclaw --version"
hyperfine -N --warmup 20 --runs 200 --export-json "$home/start.json" "$bin --version" >/dev/null
python3 - "$home/start.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"mean {r['mean']*1e3:.2f} ms, median {r['median']*1e3:.2f} ms, max {r['max']*1e3:.2f} ms (target ≤ 10 ms)")
PY

echo "== idle REPL (no model loaded yet)"
fifo="$home/in"; mkfifo "$fifo"
EXOCLAW_HOME="$home" "$bin" <"$fifo" >/dev/null 2>&1 &
pid=$!
exec 3>"$fifo"   # keep the REPL's stdin open: it waits for a line
sleep 1.5
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status"); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
exec 3>&-; wait "$pid" || true
echo "RSS $((rss / 1024)) MB, peak $((hwm / 1024)) MB (target ≤ 30 MB)"

echo "== release binary"
size=$(stat -c %s "$bin")
echo "$bin: $((size / 1024 / 1024)) MB ($size bytes)"
