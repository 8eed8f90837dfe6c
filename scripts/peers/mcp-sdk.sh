#!/usr/bin/env bash
# The official MCP Python SDK, for testing `exoclaw mcp serve` with a real client: installed from
# PyPI into the peers venv (cached), pinned. Prints the venv's python.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=2.3.0
venv=$(peers_venv)
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$VERSION')" 2>/dev/null; then
  log "installing mcp==$VERSION into $venv"
  "$venv/bin/pip" install --quiet "mcp==$VERSION" >&2
fi
printf '%s\n' "$venv/bin/python"
