//! What one runtime keeps for each session it has served: 10,000 sessions (half with a key, as a
//! gateway's chat users have, half by id) each take a turn, a hundred at a time, against a
//! provider that answers at once and an SQLite store in a file; once they are all idle, the
//! growth of the process's heap (counted by a global allocator that tallies every allocation) and
//! of its resident memory is divided by the sessions, over all of them and over the second half
//! alone (which leaves out growth that does not repeat per session). The target is at most 2 KB
//! each.
//!
//! The heap count covers everything Rust allocates (the runtime, its queues and locks, sqlx,
//! tokio); SQLite's page caches are allocated by SQLite itself, outside it, and show only in the
//! resident memory, which also moves with the allocator's own retention: read it as an upper
//! bound.
//!
//! Run: `cargo bench -p exoclaw --bench idle_sessions` (10,000 sessions); `cargo test --benches`
//! runs it with 200, to check that it works.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use async_trait::async_trait;
use exoclaw::exoclaw_core::{AgentRuntime, EventStream, Provider, ProviderError, Target, TurnInput};
use exoclaw::exoclaw_types::{ChatRequest, SessionKey, StopReason, StreamEvent, Usage};
use exoclaw::{Config, Runtime};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Turns submitted at once.
const WAVE: usize = 100;

/// Answers at once with a short text.
#[derive(Debug, Default)]
struct InstantProvider;

#[async_trait]
impl Provider for InstantProvider {
    fn name(&self) -> &str {
        "bench"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, ProviderError> {
        let usage = Usage { input_tokens: Some(20), output_tokens: Some(2), ..Usage::default() };
        let events = vec![
            Ok(StreamEvent::TextDelta { text: "Paris.".into() }),
            Ok(StreamEvent::Usage(usage)),
            Ok(StreamEvent::Finish { reason: StopReason::EndTurn }),
        ];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

/// Bytes the process has allocated and not freed. (stats_alloc already counts a reallocation's
/// growth in `bytes_allocated` and its shrinking in `bytes_deallocated`; `bytes_reallocated` is
/// the same change again, not to be added.)
fn heap() -> i64 {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

/// The process's resident memory, in bytes (0 where `/proc` is missing).
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The `i`th session's target: a key for even `i`, a new session by id for odd.
fn target(i: usize) -> Target {
    if i.is_multiple_of(2) {
        Target::Key(SessionKey {
            agent: "default".into(),
            channel: "slack".into(),
            account: "T0001".into(),
            peer: format!("U{i:08}"),
        })
    } else {
        Target::New { agent: None }
    }
}

/// Runs turns `from..to`, [`WAVE`] at a time, each on its own session.
async fn turns(runtime: &Runtime, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let wave: Vec<_> = (i..to.min(i + WAVE))
            .map(|i| runtime.submit(target(i), TurnInput::message("What is the capital of France?")).unwrap())
            .collect();
        for turn in wave {
            turn.report().await.unwrap();
        }
        i += WAVE;
    }
}

/// Waits until no turn runs and the runtime's background work has settled.
async fn idle(runtime: &Runtime) {
    while runtime.queues().busy() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // After-turn work and the store's background checkpoint run on their own tasks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn main() {
    let sessions = if std::env::args().any(|arg| arg == "--bench") { 10_000 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let config =
            Config::parse("model = \"bench/m\"\n[agent]\ntools = false\n", Path::new("bench.toml")).unwrap();
        let url = dir.path().join("bench.db").display().to_string();
        let store = exoclaw::exoclaw_store::Store::open(&url).await.unwrap();
        let runtime = Runtime::builder()
            .config(config)
            .store(store)
            .provider(Arc::new(InstantProvider))
            .build()
            .await
            .unwrap();
        // Warm up: the provider opened, every connection open, the statements prepared, the
        // tokio pools grown to what a wave needs.
        turns(&runtime, sessions, sessions + 4 * WAVE).await;
        idle(&runtime).await;
        let (heap_before, resident_before) = (heap(), resident());
        let half = sessions / 2;
        turns(&runtime, 0, half).await;
        idle(&runtime).await;
        let (heap_half, resident_half) = (heap(), resident());
        turns(&runtime, half, sessions).await;
        idle(&runtime).await;
        let (heap_after, resident_after) = (heap(), resident());
        let per = |before: i64, after: i64, n: usize| (after - before) as f64 / n as f64;
        // The second half's growth per session: what each more idle session costs, without the
        // one-off growth (pools, caches, buffers) the first sessions still cause after warm-up.
        println!(
            "runtime/idle_sessions: {sessions} sessions, each after one turn, now idle: heap {:+.0} bytes \
             per session over all, {:+.0} per session over the second half (target ≤ 2048); resident \
             {:+.0} bytes per session over all, {:+.0} over the second half; {} sessions busy, {} turns waiting",
            per(heap_before, heap_after, sessions),
            per(heap_half, heap_after, sessions - half),
            per(resident_before, resident_after, sessions),
            per(resident_half, resident_after, sessions - half),
            runtime.queues().busy(),
            runtime.queues().waiting(),
        );
        runtime.store().close().await;
    });
}
