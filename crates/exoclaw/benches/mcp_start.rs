//! Does a slow MCP server delay the first turn? A fresh runtime's first turn (build → the
//! committed report, with a provider that answers at once, on an in-memory store):
//!
//! - `first_turn/no_mcp`: no `[mcp]` table — the floor;
//! - `first_turn/slow_mcp`: an `[mcp.slow]` server that takes 5 s before it even starts
//!   (`sleep 5`, then npm's server-everything).
//!
//! Target: the same (the server is started in the background and never waited for). Memory is
//! off, so the runtime's start-up sweep is not measured.
//! Run: `cargo bench -p exoclaw --bench mcp_start`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw::exoclaw_core::{AgentRuntime, Target, TurnInput};
use exoclaw::exoclaw_store::Store;
use exoclaw::{Config, Runtime};
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(slow_mcp: bool) -> Config {
    let mut toml = String::from("model = \"bench/m\"\n[memory]\nenabled = false\n");
    if slow_mcp {
        let script = exoclaw_testkit::peers::mcp_reference_server("everything");
        toml.push_str(&format!(
            "[mcp.slow]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 5; exec node '{}' stdio\"]\n",
            script.display()
        ));
    }
    Config::parse(&toml, Path::new("bench.toml")).unwrap()
}

async fn first_turn(config: &Config) -> Duration {
    let started = Instant::now();
    let store = Store::open("sqlite::memory:").await.unwrap();
    let runtime = Runtime::builder()
        .config(config.clone())
        .store(store)
        .provider(Arc::new(RespondingProvider::new("bench", |_| Outcome::Text("Paris.".into()))))
        .build()
        .await
        .unwrap();
    let turn =
        runtime.submit(Target::New { agent: None }, TurnInput::message("What is the capital of France?"));
    turn.unwrap().report().await.unwrap();
    let took = started.elapsed();
    if let Some(mcp) = runtime.mcp() {
        mcp.shutdown().await;
    }
    took
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("first_turn");
    group.sample_size(20);
    for (name, slow) in [("no_mcp", false), ("slow_mcp", true)] {
        let config = config(slow);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += first_turn(&config).await;
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
