#!/usr/bin/env bash
# Regenerates crates/exoclaw-cli/link/symbol-order.txt: the functions `exoclaw` runs when it starts
# (the gateway, the REPL's and chat's start-up, the common subcommands) and on the gateway's /v1
# request path, which the linker (lld, Rust's default on x86_64 Linux) places side by side. Code
# is paged in 64 KB at a time, so start-up code scattered over 21 MB of text kept ~9 MB of it
# resident; packed together it is a few hundred KB (see crates/exoclaw-cli/build.rs).
#
# Needs valgrind. Runs the release binary under callgrind against an instant local upstream
# (python's http.server, no network) for a few seconds. Symbol names carry hashes that change with
# the compiler and dependency versions: names that no longer exist are skipped by the linker, so a
# stale list only loses some of its effect. Rerun after upgrading the toolchain or dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "symbol-order: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
EXOCLAW_NO_SYMBOL_ORDER=1 cargo build --release -p exoclaw-cli --locked
bin=target/release/exoclaw
work=$(mktemp -d -t exoclaw-symbol-order.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# shellcheck source=lib/instant-upstream.sh
. scripts/lib/instant-upstream.sh
instant_upstream "$work"
grind() { valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.%p" "$bin" "$@"; }

for args in "--help" "config check" "session list" "keys list" "models" "usage"; do
  # shellcheck disable=SC2086
  grind $args >/dev/null 2>&1 || true
done
grind gateway --bind "127.0.0.1:$gw" >/dev/null 2>&1 &
for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$gw/healthz" && break; sleep 0.2; done
for stream in false true false true; do
  curl -fs -o /dev/null -H 'content-type: application/json' \
    -d "{\"model\":\"fixed/m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":$stream}" \
    "http://127.0.0.1:$gw/v1/chat/completions" || true
done
curl -fs -o /dev/null "http://127.0.0.1:$gw/v1/models" || true
curl -fs -o /dev/null "http://127.0.0.1:$gw/metrics" || true
sleep 1
pkill -INT -f "gateway --bind 127.0.0.1:$gw" || true
for _ in $(seq 1 100); do pgrep -f "gateway --bind 127.0.0.1:$gw" >/dev/null || break; sleep 0.2; done

# Every function named in the profiles that the binary defines, in the binary's own order.
python3 - "$bin" "$work" crates/exoclaw-cli/link/symbol-order.txt <<'PY'
import glob, re, subprocess, sys
binary, work, out = sys.argv[1:4]
ran = set()
for path in glob.glob(f"{work}/cg.*"):
    for line in open(path, errors="replace"):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.strip())
        if m:
            ran.add(m.group(1))
symbols = []
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tT" and parts[2] in ran:
        symbols.append((int(parts[0], 16), parts[2]))
with open(out, "w") as f:
    f.writelines(name + "\n" for _, name in sorted(set(symbols)))
print(f"symbol-order: {len(symbols)} functions written to {out}", file=sys.stderr)
PY
