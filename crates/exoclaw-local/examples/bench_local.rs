//! Measures the embedded model: load time, prompt processing and generation speed, peak memory.
//! Prints one JSON object. `scripts/bench-local.sh` runs it beside llama.cpp on the same GGUF.
//!
//! `cargo run --release -p exoclaw-local --example bench_local -- MODEL.gguf PROMPT_FILE MAX_TOKENS`

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use exoclaw_local::{GenerateOptions, Generated, LocalModel, SamplingOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, prompt_file, max_tokens] = args.as_slice() else {
        eprintln!("usage: bench_local MODEL.gguf PROMPT_FILE MAX_TOKENS");
        std::process::exit(2);
    };
    let started = Instant::now();
    let model = LocalModel::load(std::path::Path::new(model))?;
    let load_s = started.elapsed().as_secs_f64();
    let prompt = model.tokenizer().encode(&std::fs::read_to_string(prompt_file)?)?;
    let options = GenerateOptions {
        max_tokens: max_tokens.parse()?,
        sampling: SamplingOptions { temperature: 0.0, ..SamplingOptions::default() },
        stop: Vec::new(),
        // The bench generates exactly `max_tokens`, like llama.cpp beside it.
        stop_repetition: false,
    };
    let started = Instant::now();
    let mut token_times = Vec::new();
    let done = model.generate(&prompt, &options, None, &mut |g| {
        if let Generated::Token(_) = g {
            token_times.push(started.elapsed().as_secs_f64());
        }
        true
    })?;
    let first = token_times.first().copied().unwrap_or(0.0);
    let last = token_times.last().copied().unwrap_or(0.0);
    let generated = token_times.len();
    let gen_tps = if generated > 1 { (generated - 1) as f64 / (last - first) } else { 0.0 };
    let peak_rss_mb = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0);
    println!(
        "{{\"load_s\": {load_s:.3}, \"prompt_tokens\": {}, \"prompt_tps\": {:.1}, \"generated\": {generated}, \"gen_tps\": {gen_tps:.1}, \"peak_rss_mb\": {peak_rss_mb:.0}, \"requantised\": {}, \"finish\": \"{:?}\"}}",
        prompt.len(),
        prompt.len() as f64 / first,
        model.requantised,
        done.reason,
    );
    Ok(())
}
