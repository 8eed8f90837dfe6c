# Shared helpers for the peer scripts. Sourced, not run.
# Peers are cached under ~/.cache/exoclaw-peers/<name>-<version>/ so a repeat run is free.
set -euo pipefail
PEERS_CACHE="${EXOCLAW_PEERS_CACHE:-$HOME/.cache/exoclaw-peers}"
mkdir -p "$PEERS_CACHE"

log() { printf '[peers] %s\n' "$*" >&2; }

# A Python venv shared by the peer builds (cmake, ninja, …).
peers_venv() {
  local venv="$PEERS_CACHE/venv"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating build venv at $venv"
    python3 -m venv "$venv"
  fi
  printf '%s\n' "$venv"
}
