#!/usr/bin/env bash
# The local embedder vs sentence-transformers, side by side in one run: all-MiniLM-L6-v2 from the
# same folder, the same texts, the same batch size and the same number of threads (candle and the
# tokenizer run on rayon's pool: RAYON_NUM_THREADS; torch: torch.set_num_threads and
# OMP_NUM_THREADS/MKL_NUM_THREADS). Each side embeds the texts once to warm up, then RUNS times;
# the best run counts. Prints each side's sentences/s and the ratio exoclaw/sentence-transformers
# (issue target: ≥ 1.0×).
# Usage: [RUNS=3] [BATCH=32] scripts/bench-embeddings.sh [SENTENCES=1000] [THREADS=nproc]
# The texts are a fixed mix (seeded): 60% short sentences (5–25 words), 30% paragraphs (30–120
# words) and 10% long passages cut at 256 tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
sentences=${1:-1000}; threads=${2:-$(nproc)}; runs=${RUNS:-3}; batch=${BATCH:-32}
model=$(bash scripts/peers/minilm.sh)
python=$(bash scripts/peers/sentence-transformers.sh)
cargo build -q --release -p exoclaw-local --example bench_embeddings
bench="${CARGO_TARGET_DIR:-target}/release/examples/bench_embeddings"
texts=$(mktemp); trap 'rm -f "$texts"' EXIT
python3 - "$sentences" >"$texts" <<'PY'
import json, random, sys
rng = random.Random(20240601)
words = ("the a of to and in is it that for on with as was at by be this from or have an they "
         "which one you were her all she there would their we him been has when who will more no "
         "if out so said what up its about into than them can only other new some could time these "
         "two may then do first any my now such like our over man me even most made after also did "
         "many before must through back years where much your way well down should because each "
         "just those people how too little state good very make world still own see men work long "
         "get here between both life being under never day same another know while last might us "
         "great old year off come since against go came right used take three memory agent model "
         "server request tokens database error config deploy cache vector search meeting report "
         "customer invoice weather Paris Tokyo 2024 42 3.14 café naïve 東京 🚀").split()
def text(lo, hi):
    s = " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))
    return s[0].upper() + s[1:] + rng.choice([".", "?", "!", "."])
out = []
for i in range(int(sys.argv[1])):
    r = rng.random()
    out.append(text(5, 25) if r < 0.6 else text(30, 120) if r < 0.9 else text(250, 400))
json.dump(out, sys.stdout)
PY
echo "all-MiniLM-L6-v2, $sentences texts, $threads threads, batch $batch, best of $runs runs" >&2
ours=$(RAYON_NUM_THREADS=$threads "$bench" "$model" "$texts" "$runs" "$batch")
theirs=$(OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
  "$python" scripts/lib/sentence_transformers_embed.py bench "$model" \
  --threads "$threads" --batch "$batch" --runs "$runs" <"$texts" 2>/dev/null)
python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"exoclaw (candle):       {ours['sentences_per_s']:8.1f} sentences/s  ({ours['seconds']:.3f} s, {ours['tokens']} tokens)")
print(f"sentence-transformers:  {theirs['sentences_per_s']:8.1f} sentences/s  ({theirs['seconds']:.3f} s, torch threads {theirs['threads']})")
print(f"ratio exoclaw/sentence-transformers: {ours['sentences_per_s'] / theirs['sentences_per_s']:.2f}x (target >= 1.0x)")
PY
