//! Measures the local embedder: embeds the texts of a JSON array once to warm up, then `RUNS`
//! times, and prints one JSON object with the best run's sentences per second.
//! `scripts/bench-embeddings.sh` runs it beside sentence-transformers on the same texts and
//! threads (candle's matrix products and the tokenizer use rayon's pool: set
//! `RAYON_NUM_THREADS`).
//!
//! `cargo run --release -p exoclaw-local --example bench_embeddings -- MODEL_DIR TEXTS.json RUNS [BATCH]`

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use exoclaw_core::Embedder;
use exoclaw_local::{LocalEmbedder, LocalEmbedderOptions};
use exoclaw_types::EmbeddingRequest;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_dir, texts_file, runs, batch) = match args.as_slice() {
        [dir, texts, runs] => (dir, texts, runs, None),
        [dir, texts, runs, batch] => (dir, texts, runs, Some(batch)),
        _ => {
            eprintln!("usage: bench_embeddings MODEL_DIR TEXTS.json RUNS [BATCH]");
            std::process::exit(2);
        }
    };
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(texts_file)?)?;
    let mut options = LocalEmbedderOptions { model_dir: Some(model_dir.into()), ..Default::default() };
    if let Some(batch) = batch {
        options.batch_size = batch.parse()?;
    }
    let started = Instant::now();
    let embedder = LocalEmbedder::open(options, &mut |_, _| {}).await?;
    let load_s = started.elapsed().as_secs_f64();
    let request = EmbeddingRequest::new(embedder.model(), texts.clone());
    let warm = embedder.embed(request.clone()).await?;
    let mut best = f64::INFINITY;
    for _ in 0..runs.parse::<usize>()? {
        let started = Instant::now();
        embedder.embed(request.clone()).await?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    let report = serde_json::json!({
        "sentences": texts.len(),
        "tokens": warm.input_tokens,
        "seconds": best,
        "sentences_per_s": texts.len() as f64 / best,
        "load_s": load_s,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
    });
    println!("{report}");
    Ok(())
}
