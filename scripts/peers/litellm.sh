#!/usr/bin/env bash
# The LiteLLM proxy, the peer gateway that scripts/bench-gateway.sh measures exoclaw's /v1 against:
# `litellm[proxy]`, pinned, from PyPI into its own venv (its dependency tree is large and would
# clash with the shared peers venv). Cached; a repeat run is free. Prints the path of the `litellm`
# executable on stdout.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# 1.106.12 is the last 1.106 patch release on PyPI: the release the issue's LiteLLM numbers are from.
VERSION=1.106.12
venv="$PEERS_CACHE/litellm-venv"
marker="$venv/.installed-litellm-$VERSION"
bin="$venv/bin/litellm"
if [ -f "$marker" ] && [ -x "$bin" ]; then printf '%s\n' "$bin"; exit 0; fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating LiteLLM venv at $venv"
  python3 -m venv "$venv"
fi
log "installing litellm[proxy]==$VERSION into $venv (≈1 min)"
"$venv/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$VERSION" >&2
"$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$VERSION')" \
  || { log "litellm $VERSION did not install"; exit 1; }
touch "$marker"
log "LiteLLM ready: $bin"
printf '%s\n' "$bin"
