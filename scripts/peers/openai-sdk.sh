#!/usr/bin/env bash
# The official OpenAI Python SDK, for testing exoclaw's OpenAI-compatible /v1 API with a real
# client: installed from PyPI into the peers venv (cached), pinned. Prints the venv's python.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=3.57.0
venv=$(peers_venv)
if ! "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$VERSION')" 2>/dev/null; then
  log "installing openai==$VERSION into $venv"
  "$venv/bin/pip" install --quiet "openai==$VERSION" >&2
fi
printf '%s\n' "$venv/bin/python"
