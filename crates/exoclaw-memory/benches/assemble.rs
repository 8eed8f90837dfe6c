//! Context assembly for a 50-turn session (the target: ≤ 1 ms, the query's embedding
//! excluded): `compose` alone, and the whole `ContextAssembler::assemble` on a real SQLite store
//! (summary, facts and full-text search read from it; the history from the assembler's cache, as
//! for a session in use).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_core::runtime::ContextRequest;
use exoclaw_core::{ContextAssembler, NewSession, SessionStore};
use exoclaw_memory::{Estimate, Memory, MemoryOptions, Parts, compose};
use exoclaw_testkit::provider::ScriptedProvider;
use exoclaw_types::Message;
use std::sync::Arc;

const WORDS: &[&str] = &[
    "train", "ticket", "Lyon", "budget", "meeting", "garden", "recipe", "python", "deploy", "sister",
    "holiday", "report", "invoice", "weather", "music", "bike", "coffee", "project", "deadline", "review",
];

fn sentence(i: usize, len: usize) -> String {
    (0..len).map(|j| WORDS[(i * 7 + j * 3) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

fn history(turns: usize) -> Vec<Message> {
    (0..turns)
        .flat_map(|i| [Message::user(sentence(i, 25)), Message::assistant(sentence(i + 1, 60))])
        .collect()
}

fn bench(c: &mut Criterion) {
    let history = history(50);
    let input = "What did we decide about the train ticket to Lyon?";
    c.bench_function("compose 50 turns", |b| {
        let parts = Parts { history: &history, input, ..Parts::default() };
        b.iter(|| compose(&parts, 8_000, &Estimate, chrono::Utc::now()))
    });

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (memory, session, revision) = rt.block_on(async {
        let store = exoclaw_store::Store::open(&dir.path().join("m.db").display().to_string()).await.unwrap();
        let info = store.create_session(NewSession::default()).await.unwrap();
        for pair in history.chunks(2) {
            store.commit_turn(info.id, pair, &[], None).await.unwrap();
        }
        let provider = Arc::new(ScriptedProvider::new("script", []));
        let options = MemoryOptions { window: 1_000, ..MemoryOptions::default() };
        let memory = Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), provider, options);
        memory.index_session(info.id, "local").await.unwrap();
        let revision = store.session(info.id).await.unwrap().unwrap().revision;
        (memory, info.id, revision)
    });
    c.bench_function("assemble 50 turns (SQLite)", |b| {
        b.iter(|| {
            rt.block_on(memory.assemble(ContextRequest {
                session,
                key: None,
                agent: "default",
                input,
                revision,
                model: "script/m",
                budget: 8_000,
            }))
            .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
