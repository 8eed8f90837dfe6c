#!/usr/bin/env bash
# The example WASM plugins in examples/plugins/ (word-tools: a tool plugin for wasm32-wasip1;
# json-chat: a channel plugin for wasm32-unknown-unknown), built with their own locked
# dependencies, for testing exoclaw-wasm against real Extism PDK plugins. Adds the Rust targets
# if missing, builds into a shared target folder in the peers cache (cargo rebuilds only what
# changed), and copies each plugin.toml + .wasm to plugins/<example>/. Prints the plugins folder.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

examples="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../examples/plugins" && pwd)"
out="$PEERS_CACHE/plugins"
export CARGO_TARGET_DIR="$PEERS_CACHE/plugin-target"

command -v cargo >/dev/null || { log "cargo is needed to build the example plugins"; exit 1; }

# example folder, Rust target, module file name
plugins=(
  "word-tools wasm32-wasip1 word_tools.wasm"
  "json-chat wasm32-unknown-unknown json_chat.wasm"
)

installed="$(rustup target list --installed)"
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! grep -qx "$target" <<<"$installed"; then
    log "adding the Rust target $target"
    rustup target add "$target" >&2
  fi
done

# Puts $1 at $2 only when they differ, and by a rename: tests run this script concurrently, and a
# test loading $2 while another's run copies over it must never read a half-written file.
place() {
  cmp -s "$1" "$2" && return 0
  cp "$1" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}

for entry in "${plugins[@]}"; do
  read -r name target wasm <<<"$entry"
  cargo build --quiet --release --locked --target "$target" \
    --manifest-path "$examples/$name/Cargo.toml" >&2
  mkdir -p "$out/$name"
  place "$examples/$name/plugin.toml" "$out/$name/plugin.toml"
  place "$CARGO_TARGET_DIR/$target/release/$wasm" "$out/$name/$wasm"
done
printf '%s\n' "$out"
