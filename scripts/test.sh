#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests including the real-peer tests.
# This is what CI runs (.ci/run). Real peers (llama.cpp llama-server, SmolLM2, ArcadeDB, the MCP reference servers, OpenSSH's sshd) are fetched and built
# on first use and cached under ~/.cache/exoclaw-peers/ and ~/.cache/exoclaw/models/; the machine's
# PostgreSQL is started if it is installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "real peers (cached after the first run) and services"
bash scripts/peers/smollm2.sh >/dev/null
bash scripts/peers/gemma3.sh >/dev/null
bash scripts/peers/minilm.sh >/dev/null
bash scripts/peers/sentence-transformers.sh >/dev/null
bash scripts/peers/llama-server.sh >/dev/null
bash scripts/peers/openai-sdk.sh >/dev/null
bash scripts/peers/websockets.sh >/dev/null
bash scripts/peers/mcp-sdk.sh >/dev/null
bash scripts/peers/mcp-servers.sh >/dev/null
bash scripts/peers/arcadedb.sh >/dev/null
bash scripts/peers/sshd.sh >/dev/null
bash scripts/peers/wasm-plugins.sh >/dev/null
bash scripts/peers/postgres.sh

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
