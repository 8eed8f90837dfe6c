#!/usr/bin/env bash
# nginx (as an instant upstream that answers a fixed chat completion) and wrk (the HTTP load
# generator) for scripts/bench-gateway.sh, from Debian's packages. Installs whichever is missing;
# a repeat run does nothing. Prints the nginx binary's path on stdout.
# The bench runs its own nginx (own config, pid and port); the system service is not used.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

nginx_bin() { command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }

missing=()
nginx_bin >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # A stale package index is the usual reason for a failed install: refresh it once and retry.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi
bin=$(nginx_bin) || { log "nginx is still missing after the install"; exit 1; }
command -v wrk >/dev/null || { log "wrk is still missing after the install"; exit 1; }
printf '%s\n' "$bin"
