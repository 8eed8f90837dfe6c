//! Measures the embedded model: load time, prompt processing and generation speed, peak memory,
//! and the prompt cache: the time to the first token of a second turn (the first prompt, its
//! answer and a short new message) with the cache, against the same prompt cold. Prints one JSON
//! object. `scripts/bench-local.sh` runs it beside llama.cpp on the same GGUF.
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
    let tokenizer = model.tokenizer();
    // BOS first where the GGUF asks for it (Gemma), as llama.cpp does with a text prompt.
    let bos = tokenizer.bos_id().filter(|_| tokenizer.add_bos_token());
    let prompt: Vec<u32> =
        bos.into_iter().chain(tokenizer.encode(&std::fs::read_to_string(prompt_file)?)?).collect();
    let options = GenerateOptions {
        max_tokens: max_tokens.parse()?,
        sampling: SamplingOptions { temperature: 0.0, ..SamplingOptions::default() },
        stop: Vec::new(),
        // The bench generates exactly `max_tokens`, like llama.cpp beside it.
        stop_repetition: false,
        reuse_prompt: false,
    };
    let started = Instant::now();
    let mut token_times = Vec::new();
    let mut answer = Vec::new();
    let done = model.generate(&prompt, &options, None, &mut |g| {
        if let Generated::Token(token) = g {
            token_times.push(started.elapsed().as_secs_f64());
            answer.push(token);
        }
        true
    })?;
    // The second turn: the first prompt, its answer, and a new message.
    let next = model
        .tokenizer()
        .encode("<|im_end|>\n<|im_start|>user\nGo on.<|im_end|>\n<|im_start|>assistant\n")?;
    let second: Vec<u32> = [prompt.as_slice(), &answer, &next].concat();
    let first_token = |reuse_prompt: bool| -> Result<f64, exoclaw_local::LocalError> {
        let options = GenerateOptions { max_tokens: 1, reuse_prompt, ..options.clone() };
        let started = Instant::now();
        model.generate(&second, &options, None, &mut |_| true)?;
        Ok(started.elapsed().as_secs_f64())
    };
    let warm_s = first_token(true)?;
    let cold_s = first_token(false)?;
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
        "{{\"load_s\": {load_s:.3}, \"prompt_tokens\": {}, \"prompt_tps\": {:.1}, \"generated\": {generated}, \"gen_tps\": {gen_tps:.1}, \"peak_rss_mb\": {peak_rss_mb:.0}, \"requantised\": {}, \"finish\": \"{:?}\", \"second_turn_tokens\": {}, \"second_turn_ttft_cold_ms\": {:.1}, \"second_turn_ttft_cached_ms\": {:.1}}}",
        prompt.len(),
        prompt.len() as f64 / first,
        model.requantised,
        done.reason,
        second.len(),
        cold_s * 1000.0,
        warm_s * 1000.0,
    );
    Ok(())
}
