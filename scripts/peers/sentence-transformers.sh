#!/usr/bin/env bash
# sentence-transformers, the reference implementation exoclaw's local MiniLM embedder is checked and
# benchmarked against, with a torch that runs on the CPU, from PyPI alone, in its own cached venv.
# Prints the venv's python on stdout.
#
# PyPI has no CPU-only torch for Linux x86_64: its wheel links the CUDA libraries, which come as
# nvidia-* wheels (the full resolution is ~3.0 GB). torch imports and computes on the CPU with just
# the CUDA libraries its shared objects name at load time, so this installs the resolved set minus
# what only a GPU or torch.compile uses — triton (286 MB), cusolver (228 MB, loaded lazily for CUDA
# linear algebra), cuda-bindings/-pathfinder, the cuda-toolkit meta-package, the cccl headers and
# nvtx: ~2.4 GB downloaded, once. Its own venv (as litellm.sh's), not the shared one: a torch
# installed without some of its declared dependencies would make any later `pip install` there that
# touches torch pull the rest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ST=6.3.0
TORCH=2.15.0
venv="$PEERS_CACHE/sentence-transformers-$ST"
marker="$venv/.installed-sentence-transformers-$ST-torch-$TORCH"
if [ -f "$marker" ] && [ -x "$venv/bin/python" ]; then printf '%s\n' "$venv/bin/python"; exit 0; fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating the sentence-transformers venv at $venv"
  python3 -m venv "$venv"
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log "resolving sentence-transformers==$ST with torch==$TORCH"
"$venv/bin/pip" install --quiet --disable-pip-version-check --dry-run --ignore-installed \
  --report "$tmp/report.json" "sentence-transformers==$ST" "torch==$TORCH" >&2
"$venv/bin/python" - "$tmp/report.json" >"$tmp/requirements.txt" <<'PY'
import json, sys
# Needed only on a GPU or by torch.compile; torch runs on the CPU without them.
GPU_ONLY = {"triton", "nvidia-cusolver", "cuda-bindings", "cuda-pathfinder", "cuda-toolkit",
            "nvidia-cuda-cccl", "nvidia-nvtx"}
for item in json.load(open(sys.argv[1]))["install"]:
    name = item["metadata"]["name"]
    if name.lower().replace("_", "-") not in GPU_ONLY:
        print(f"{name}=={item['metadata']['version']}")
PY
log "installing $(wc -l <"$tmp/requirements.txt") packages into $venv (≈2.4 GB the first time)"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$tmp/requirements.txt" >&2
"$venv/bin/python" - "$ST" "$TORCH" <<'PY' || { log "sentence-transformers did not install"; exit 1; }
import importlib.metadata as m, sys
import torch, sentence_transformers  # noqa: F401 (the imports are the check)
assert m.version("sentence-transformers") == sys.argv[1], m.version("sentence-transformers")
assert m.version("torch") == sys.argv[2], m.version("torch")
assert (torch.ones(2, 3) @ torch.ones(3, 2)).sum().item() == 12.0
PY
touch "$marker"
log "sentence-transformers ready: $venv/bin/python"
printf '%s\n' "$venv/bin/python"
