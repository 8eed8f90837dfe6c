#!/usr/bin/env bash
# The release binary's size, stripped (the design's limit: 25 MB with every default feature), and
# which crates take it: the sizes of the unstripped binary's symbols, grouped by the crate their
# demangled name starts with (generic code instantiated elsewhere counts where it is named, so the
# split is approximate; C libraries are grouped by their symbol prefix).
#
#   bash scripts/binary-size.sh [TOP]     # TOP groups shown (default 25)
set -euo pipefail
cd "$(dirname "$0")/.."
top=${1:-25}
cargo build -q --release --locked -p exoclaw-cli
bin=target/release/exoclaw
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip -o "$stripped" "$bin"
size=$(stat -c %s "$stripped")
echo "stripped release binary: $((size / 1024 / 1024)) MB ($size bytes; the limit is 25 MB = 26214400 bytes)"
nm --size-sort -C -S "$bin" | python3 -c '
import re, sys, collections
groups = collections.Counter()
c_prefixes = [("sqlite3", "C: sqlite"), ("aws_lc", "C: aws-lc"), ("ring_", "C: ring"), ("zstd", "C: zstd"), ("ZSTD", "C: zstd"), ("mi_", "C: mimalloc")]
for line in sys.stdin:
    parts = line.split(None, 3)
    if len(parts) < 4:
        continue
    size, name = int(parts[1], 16), parts[3].strip()
    match = re.match(r"^[<&\s]*(?:dyn\s+)?([A-Za-z_][A-Za-z0-9_]*)::", name)
    if match:
        group = match.group(1)
    else:
        group = next((label for prefix, label in c_prefixes if name.startswith(prefix)), "other")
    if group.startswith(("wasmtime", "cranelift", "pulley", "wasi_common", "wiggle", "extism", "wasmparser", "wast", "wat", "cap_", "regalloc2")):
        groups["(wasm host) " + group] += size
    groups[group] += size
wasm = sum(v for k, v in groups.items() if k.startswith("(wasm host)"))
total = sum(v for k, v in groups.items() if not k.startswith("(wasm host)"))
print(f"symbols: {total/1048576:.1f} MiB in all; the WASM host (wasmtime, cranelift, pulley, wasi-common, wiggle, extism, wasmparser, wat, cap-std, regalloc2): {wasm/1048576:.1f} MiB")
for group, bytes_ in groups.most_common():
    if group.startswith("(wasm host)"):
        continue
    print(f"  {bytes_/1048576:7.2f} MiB  {group}")
' | head -n $((top + 2))
