//! Indexing one message with its embedding (the target: ≤ 10 ms with the local MiniLM,
//! off the turn's critical path): the memory's after-turn work (index, facts by pattern, the
//! archival check) for a turn of one message, in a session of 1,000 messages on a real SQLite
//! store, embedding with the embedded all-MiniLM-L6-v2 (from `scripts/peers/minilm.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_core::runtime::{AfterTurn, TurnReport};
use exoclaw_core::{ForgetEntries, MemoryIndex, NewSession, SessionStore};
use exoclaw_local::{LocalEmbedder, LocalEmbedderOptions};
use exoclaw_memory::{Memory, MemoryOptions};
use exoclaw_testkit::provider::ScriptedProvider;
use exoclaw_types::{Message, TurnOutcome};
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (memory, store, session) = rt.block_on(async {
        let store = exoclaw_store::Store::open(&dir.path().join("m.db").display().to_string()).await.unwrap();
        let options = LocalEmbedderOptions {
            model_dir: Some(exoclaw_testkit::peers::minilm_dir()),
            ..LocalEmbedderOptions::default()
        };
        let embedder = LocalEmbedder::open(options, &mut |_, _| {}).await.unwrap();
        let provider = Arc::new(ScriptedProvider::new("script", []));
        let options = MemoryOptions { window: 1_000_000, ..MemoryOptions::default() };
        let memory = Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), provider, options)
            .with_embedder(Arc::new(embedder), "all-MiniLM-L6-v2");
        let session = store.create_session(NewSession::default()).await.unwrap().id;
        let history: Vec<Message> = (0..1_000)
            .map(|i| {
                Message::user(format!(
                    "Earlier message number {i} about the garden, the budget and the trip."
                ))
            })
            .collect();
        store.commit_turn(session, &history, &[], None).await.unwrap();
        memory.index_session(session, "local").await.unwrap();
        (memory, store, session)
    });
    let mut n = 0u64;
    c.bench_function(
        "after-turn indexing of one message with its MiniLM embedding (SQLite, 1,000-message session)",
        |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let message = Message::user(format!(
                            "I finally booked the train to Lyon for the 14th, seat {n}, and paid 42 euros."
                        ));
                        store.commit_turn(session, std::slice::from_ref(&message), &[], None).await.unwrap();
                        let report = TurnReport {
                            session_id: session,
                            session_key: None,
                            agent: "default".into(),
                            binding: None,
                            model: "script/m".into(),
                            outcome: TurnOutcome::Completed,
                            stop_reason: None,
                            messages: vec![message],
                            usage: Vec::new(),
                            error: None,
                            resumed: false,
                        };
                        let started = std::time::Instant::now();
                        memory.after_turn(&report, None).await;
                        total += started.elapsed();
                    }
                    total
                })
            })
        },
    );
    let indexed = rt.block_on(store.indexed_messages(session)).unwrap();
    assert_eq!(indexed, 1_000 + n, "every message was indexed");
    rt.block_on(store.forget("local", &ForgetEntries::Session(session))).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
