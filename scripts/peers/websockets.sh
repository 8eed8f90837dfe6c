#!/usr/bin/env bash
# The `websockets` Python library, for testing the gateway's WebSocket JSON-RPC protocol with a real
# client (crates/exoclaw-gateway/tests/ws_client.py): installed from PyPI into the peers venv
# (cached), pinned. Prints the venv's python.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=17.4
venv=$(peers_venv)
if ! "$venv/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$VERSION')" 2>/dev/null; then
  log "installing websockets==$VERSION into $venv"
  "$venv/bin/pip" install --quiet "websockets==$VERSION" >&2
fi
printf '%s\n' "$venv/bin/python"
