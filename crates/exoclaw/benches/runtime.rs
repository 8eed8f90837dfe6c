//! The runtime's own cost around a turn, with a provider that answers at once (registered with
//! `RuntimeBuilder::provider`) and a real SQLite store in a temporary directory:
//! - `submit_to_first_model_request`: from `submit` of a new session's first turn to the
//!   provider's `stream` being called: routing, the session's queue, its cross-process lock, the
//!   session's creation and the first checkpoint (two writes).
//! - `whole_turn`: the same turn, submit → the report, the turn committed.
//!
//! Each turn starts a new session: continuing one would make its history (read in full by
//! today's context assembly) grow with every iteration and measure that instead.
//!
//! Run: `cargo bench -p exoclaw --bench runtime`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw::exoclaw_core::{AgentRuntime, EventStream, Provider, ProviderError, Target, TurnInput};
use exoclaw::exoclaw_types::{ChatRequest, SessionId, StopReason, StreamEvent, Usage};
use exoclaw::{Config, Runtime};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers at once with a short text, noting when it was called.
#[derive(Debug, Default)]
struct InstantProvider {
    called: Mutex<Option<Instant>>,
}

#[async_trait]
impl Provider for InstantProvider {
    fn name(&self) -> &str {
        "bench"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, ProviderError> {
        *self.called.lock().unwrap() = Some(Instant::now());
        let usage = Usage { input_tokens: Some(20), output_tokens: Some(2), ..Usage::default() };
        let events = vec![
            Ok(StreamEvent::TextDelta { text: "Paris.".into() }),
            Ok(StreamEvent::Usage(usage)),
            Ok(StreamEvent::Finish { reason: StopReason::EndTurn }),
        ];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(InstantProvider::default());
    let (runtime, session) = rt.block_on(async {
        let config =
            Config::parse("model = \"bench/m\"\n[agent]\ntools = false\n", Path::new("bench.toml")).unwrap();
        let url = dir.path().join("bench.db").display().to_string();
        let store = exoclaw::exoclaw_store::Store::open(&url).await.unwrap();
        let runtime =
            Runtime::builder().config(config).store(store).provider(provider.clone()).build().await.unwrap();
        let first = runtime.submit(Target::New { agent: None }, TurnInput::message("hello")).unwrap();
        let session = first.report().await.unwrap().session_id;
        for _ in 0..4 {
            runtime
                .submit(Target::Session(session), TurnInput::message("again"))
                .unwrap()
                .report()
                .await
                .unwrap();
        }
        (runtime, session)
    });
    let turn = |runtime: &Runtime, session: SessionId| {
        runtime
            .submit(Target::Session(session), TurnInput::message("What is the capital of France?"))
            .unwrap()
    };
    let mut group = c.benchmark_group("runtime");
    group.bench_function("submit_to_first_model_request", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    turn(&runtime, session).report().await.unwrap();
                    let called = provider.called.lock().unwrap().take().unwrap();
                    total += called - started;
                }
                total
            })
        });
    });
    group.bench_function("whole_turn", |b| {
        b.iter(|| rt.block_on(async { turn(&runtime, session).report().await.unwrap() }));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
