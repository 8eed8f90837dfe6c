#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the store and CLI tests (the
# machine's own cluster, trust authentication, user postgres): starts the local cluster when it is
# installed but stopped. Set EXOCLAW_TEST_POSTGRES_URL to test against another server instead.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ -n "${EXOCLAW_TEST_POSTGRES_URL:-}" ]; then exit 0; fi
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ready; then exit 0; fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  log "starting the local PostgreSQL cluster"
  for version in /etc/postgresql/*; do
    pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start >&2 || true
  done
  for _ in $(seq 1 50); do ready && exit 0; sleep 0.2; done
fi
log "no PostgreSQL answers on 127.0.0.1:5432: install it (apt-get install postgresql) and start it, or set EXOCLAW_TEST_POSTGRES_URL"
exit 1
