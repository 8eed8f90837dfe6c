#!/usr/bin/env bash
# OpenSSH's server for the SSH tool's tests, from Debian's `openssh-server` package: installs it
# when /usr/sbin/sshd is missing; a repeat run only refreshes the test user's password.
# The tests run their own throwaway sshd (own config, host key, authorized_keys and port, on
# 127.0.0.1; see exoclaw-testkit's `Sshd`); the system service is not used.
# Also makes sure `ssh-keygen` is there (package openssh-client), which the tests use for keys.
#
# Password logins can only be tested against a real account (sshd checks /etc/shadow), so, when run
# as root, this creates the locked-down user `exoclaw-sshtest` (no home, /bin/sh) with a random
# password, written to `$PEERS_CACHE/sshd/password` (mode 600) for the tests. The test sshd lets only
# that user and root in.
#
# Prints the folder holding `password` on stdout (sshd is /usr/sbin/sshd).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # A stale package index is the usual reason for a failed install: refresh it once and retry.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi
[ -x /usr/sbin/sshd ] || { log "/usr/sbin/sshd is still missing after the install"; exit 1; }
command -v ssh-keygen >/dev/null || { log "ssh-keygen is still missing after the install"; exit 1; }
# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd

state="$PEERS_CACHE/sshd"
mkdir -p "$state"
if [ "$(id -u)" = 0 ]; then
  user=exoclaw-sshtest
  id "$user" >/dev/null 2>&1 || useradd --no-create-home --home-dir /tmp --shell /bin/sh "$user"
  if [ ! -s "$state/password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$state/password")
  fi
  printf '%s:%s\n' "$user" "$(cat "$state/password")" | chpasswd
  printf '%s\n' "$user" > "$state/user"
else
  log "not root: no password-login user (the password test will fail and say so)"
fi
printf '%s\n' "$state"
