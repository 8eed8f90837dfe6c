#!/usr/bin/env bash
# The official MCP reference servers from npm (everything, filesystem, memory), for testing exoclaw's
# MCP client against the real thing over stdio: installed (pinned) into the peers cache with npm,
# offline-capable once cached. Prints the folder holding node_modules/.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=2026.8.31
dir="$PEERS_CACHE/mcp-servers-$VERSION"
marker="$dir/node_modules/@modelcontextprotocol/server-memory/package.json"
if [ ! -f "$marker" ]; then
  command -v npm >/dev/null || { log "npm is needed for the MCP reference servers: apt-get install nodejs npm"; exit 1; }
  log "installing the MCP reference servers $VERSION into $dir"
  mkdir -p "$dir"
  (cd "$dir" && npm install --silent --no-audit --no-fund --prefix "$dir" \
    "@modelcontextprotocol/server-everything@$VERSION" \
    "@modelcontextprotocol/server-filesystem@$VERSION" \
    "@modelcontextprotocol/server-memory@$VERSION" >&2)
fi
printf '%s\n' "$dir"
