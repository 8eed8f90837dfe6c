"""The reference for exoclaw's local embedder: sentence-transformers on a model folder, on the CPU.

Reads a JSON array of texts on stdin. Run with the python that scripts/peers/sentence-transformers.sh
prints.

  embed MODEL_DIR [--batch B] [--threads N]
      prints {"max_seq_length": …, "vectors": [[…], …]} (unit vectors, in the input order)
  bench MODEL_DIR [--batch B] [--threads N] [--runs R]
      encodes the texts once to warm up, then R times, and prints
      {"sentences": n, "seconds": best, "sentences_per_s": n / best, "threads": …}
"""

import argparse
import json
import os
import sys
import time

# Never reach for the hub: the folder is all there is.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["embed", "bench"])
    parser.add_argument("model_dir")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    texts = json.load(sys.stdin)
    model = SentenceTransformer(args.model_dir, device="cpu")

    def encode():
        with torch.inference_mode():
            return model.encode(texts, batch_size=args.batch, convert_to_numpy=True, show_progress_bar=False)

    if args.mode == "embed":
        vectors = encode()
        json.dump({"max_seq_length": model.max_seq_length, "vectors": vectors.tolist()}, sys.stdout)
        return
    encode()
    best = float("inf")
    for _ in range(args.runs):
        started = time.perf_counter()
        encode()
        best = min(best, time.perf_counter() - started)
    json.dump(
        {
            "sentences": len(texts),
            "seconds": best,
            "sentences_per_s": len(texts) / best,
            "threads": torch.get_num_threads(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
