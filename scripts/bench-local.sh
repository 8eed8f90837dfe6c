#!/usr/bin/env bash
# Embedded model vs llama.cpp, side by side in one run: the same GGUF, the same prompt, the same
# thread count, greedy decoding. Prints each side's numbers and the ratios exoclaw/llama.cpp (issue
# targets: generation and prompt ≥ 1.0×, peak RSS ≤ 180 MB for SmolLM2), and the embedded model's
# second-turn time to first token with its prompt cache against cold (≤ 25%).
# Usage: [MODEL=smollm2|gemma3] scripts/bench-local.sh [RUNS=3] [MAX_TOKENS=128] [NOTES=12]
# MODEL: SmolLM2-135M-Instruct Q4_1 (default, a chat prompt) or Gemma 3 270M Q4_K_M (the base
# model: the same text without chat markers). NOTES sets the prompt's length (12: 285 tokens;
# 80: 1,645 tokens, an agent's system prompt and tools' size, where the prompt cache has most to
# reuse).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; max_tokens=${2:-128}; notes=${3:-12}
threads=$(nproc)
server=$(bash scripts/peers/llama-server.sh)
which=${MODEL:-smollm2}
case "$which" in
  smollm2|gemma3) model=$(bash "scripts/peers/$which.sh") ;;
  *) echo "MODEL must be smollm2 or gemma3, not $which" >&2; exit 2 ;;
esac
cargo build -q --release -p exoclaw-local --example bench_local
prompt=$(mktemp); trap 'rm -f "$prompt"' EXIT
chat() { [ "$which" = smollm2 ] && printf '%s' "$1" || true; }
{
  chat $'<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n'
  printf 'Here are some notes about the history of computing. '
  for i in $(seq 1 "$notes"); do printf 'Early machines filled whole rooms, used vacuum tubes and punched cards, and needed teams of operators. '; done
  printf 'Write a long, detailed story about a dragon who learns to program computers.'
  chat $'<|im_end|>\n<|im_start|>assistant\n'
  [ "$which" = smollm2 ] || printf '\n\nOnce upon a time'
} > "$prompt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" -m "$model" --host 127.0.0.1 --port "$port" -c 4096 -t "$threads" --jinja >/dev/null 2>&1 &
pid=$!; trap 'kill $pid 2>/dev/null || true; rm -f "$prompt"' EXIT
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done

python3 - "$port" "$prompt" "$max_tokens" "$runs" "$model" <<'PY'
import json, subprocess, sys, urllib.request, statistics, os
port, prompt_file, max_tokens, runs, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
prompt = open(prompt_file).read()
ours, theirs = [], []
for _ in range(runs):
    req = json.dumps({"prompt": prompt, "n_predict": max_tokens, "temperature": 0, "cache_prompt": False}).encode()
    t = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/completion", req))["timings"]
    theirs.append({"prompt_tps": t["prompt_per_second"], "gen_tps": t["predicted_per_second"], "prompt_tokens": t["prompt_n"], "generated": t["predicted_n"]})
    out = subprocess.check_output(["target/release/examples/bench_local", model, prompt_file, str(max_tokens)], text=True)
    ours.append(json.loads(out.strip().splitlines()[-1]))
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f"model={os.path.basename(model)}  threads={os.cpu_count()}  runs={runs}  prompt≈{med(ours,'prompt_tokens'):.0f} tokens  max_tokens={max_tokens}")
print(f"{'':22}{'exoclaw-local':>15}{'llama.cpp':>12}{'ratio':>8}")
for key, label in [("prompt_tps", "prompt tokens/s"), ("gen_tps", "generation tokens/s")]:
    a, b = med(ours, key), med(theirs, key)
    print(f"{label:22}{a:15.1f}{b:12.1f}{a/b:8.2f}")
print(f"{'generated tokens':22}{med(ours,'generated'):15.0f}{med(theirs,'generated'):12.0f}")
print(f"{'load s':22}{med(ours,'load_s'):15.2f}")
print(f"{'peak RSS MB':22}{med(ours,'peak_rss_mb'):15.0f}")
print(f"re-quantised to Q8_0 at load: {ours[0]['requantised']}")
cold, cached = med(ours, 'second_turn_ttft_cold_ms'), med(ours, 'second_turn_ttft_cached_ms')
print(f"second turn ({med(ours,'second_turn_tokens'):.0f} tokens), time to first token: cold {cold:.1f} ms, "
      f"prompt cache {cached:.1f} ms, ratio {cached/cold:.3f} (target <= 0.25)")
PY
