//! Long-term memory search on an SQLite file in WAL mode holding 100,000 entries: short chat
//! sentences made from a word list, each with a 384-dimension normalised embedding (random, from
//! a fixed seed). Benches `search_text` and `search_embedding` (limit 20) once warm, that is with
//! the owner's embeddings already cached, as they are in a running gateway.
//!
//! Run with `cargo bench -p exoclaw-store --bench memory`. The target is a hybrid search (one of
//! each, the query's embedding excluded) of at most 5 ms at the 99th percentile; in bench mode
//! this also times 2,000 hybrid searches one by one and prints their percentiles.

// A benchmark over fixed inputs: failing loudly is right, and printing the percentiles is its job.
#![allow(clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::Criterion;
use exoclaw_store::{EntryKind, MemoryIndex, NewEntry, Store};
use exoclaw_types::{Role, SessionId};
use tokio::runtime::Runtime;

const ENTRIES: usize = 100_000;
const DIMENSIONS: usize = 384;
const LIMIT: usize = 20;
const OWNER: &str = "U42";
/// Messages per session.
const SESSION_LEN: usize = 200;

/// What the sentences are made of: the words of everyday chat, some far more common than others.
const COMMON: &[&str] = &[
    "i", "you", "the", "a", "to", "and", "my", "is", "it", "in", "for", "that", "we", "on", "with", "was",
    "do", "can", "be", "have", "me", "what", "so", "at", "this", "just", "not", "but", "about", "there",
];
const CONTENT: &[&str] = &[
    "sister",
    "brother",
    "mother",
    "friend",
    "boss",
    "team",
    "doctor",
    "dog",
    "cat",
    "neighbour",
    "moved",
    "lives",
    "works",
    "visited",
    "called",
    "booked",
    "cancelled",
    "bought",
    "sold",
    "fixed",
    "broke",
    "started",
    "finished",
    "loves",
    "hates",
    "prefers",
    "remember",
    "forgot",
    "asked",
    "told",
    "lyon",
    "paris",
    "berlin",
    "tokyo",
    "london",
    "madrid",
    "office",
    "flat",
    "house",
    "garden",
    "kitchen",
    "car",
    "bike",
    "train",
    "flight",
    "hotel",
    "trip",
    "holiday",
    "meeting",
    "deadline",
    "project",
    "report",
    "invoice",
    "budget",
    "salary",
    "birthday",
    "wedding",
    "dinner",
    "lunch",
    "breakfast",
    "coffee",
    "tea",
    "wine",
    "pizza",
    "sushi",
    "salad",
    "vegetarian",
    "allergy",
    "peanuts",
    "gym",
    "running",
    "yoga",
    "football",
    "tennis",
    "guitar",
    "piano",
    "book",
    "film",
    "series",
    "podcast",
    "concert",
    "museum",
    "weekend",
    "monday",
    "friday",
    "tomorrow",
    "yesterday",
    "morning",
    "evening",
    "january",
    "march",
    "june",
    "september",
    "december",
    "password",
    "laptop",
    "phone",
    "printer",
    "server",
    "database",
    "deploy",
    "bug",
    "release",
    "review",
    "interview",
    "contract",
    "rent",
    "mortgage",
    "insurance",
    "dentist",
    "appointment",
    "vaccine",
    "passport",
    "visa",
    "tickets",
    "recipe",
    "pasta",
    "bread",
    "cheese",
    "chocolate",
    "tomatoes",
    "roses",
    "rain",
    "snow",
    "sunny",
    "cold",
    "warm",
];

/// A short chat sentence: 6 to 16 words, about half of them common.
fn sentence(rng: &mut fastrand::Rng) -> String {
    let words: Vec<&str> =
        (0..rng.usize(6..=16))
            .map(|_| {
                if rng.bool() {
                    COMMON[rng.usize(..COMMON.len())]
                } else {
                    CONTENT[rng.usize(..CONTENT.len())]
                }
            })
            .collect();
    let mut text = words.join(" ");
    text.push('.');
    text
}

/// A random direction, normalised.
fn embedding(rng: &mut fastrand::Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMENSIONS).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

struct Fixture {
    runtime: Runtime,
    store: Store,
    /// Query embeddings: near a stored entry (a question about something said) and near nothing.
    queries: Vec<Vec<f32>>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("memory.db");
    let store = runtime.block_on(Store::open(path.to_str().expect("UTF-8 path"))).expect("open the store");
    let mut rng = fastrand::Rng::with_seed(42);
    let start = Instant::now();
    let base = DateTime::<Utc>::from_timestamp(1_750_000_000, 0).expect("a time");
    let mut queries = Vec::new();
    let mut session = SessionId::new();
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..ENTRIES {
        if i % SESSION_LEN == 0 {
            session = SessionId::new();
        }
        let vector = embedding(&mut rng);
        if i % 1_000 == 0 {
            let noise = embedding(&mut rng);
            let near: Vec<f32> = vector.iter().zip(noise).map(|(a, b)| a + 0.7 * b).collect();
            queries.push(near);
            queries.push(embedding(&mut rng));
        }
        batch.push(NewEntry {
            owner: OWNER.into(),
            session,
            kind: EntryKind::Message,
            seq: (i % SESSION_LEN) as u64,
            role: Some(if i % 2 == 0 { Role::User } else { Role::Assistant }),
            text: sentence(&mut rng),
            created_at: base + chrono::Duration::seconds(i as i64),
            embedding: Some(vector),
        });
        if batch.len() == 1_000 {
            runtime.block_on(store.index(&batch)).expect("index");
            batch.clear();
        }
    }
    runtime.block_on(store.index(&batch)).expect("index");
    println!(
        "indexed {ENTRIES} entries of {DIMENSIONS} dimensions in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let found = runtime.block_on(store.search_embedding(OWNER, &queries[0], LIMIT)).expect("first search");
    assert_eq!(found.len(), LIMIT);
    println!("first embedding search (loads the cache) took {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    Fixture { runtime, store, queries, _dir: dir }
}

/// What a user asks that the memory is searched with.
const QUESTIONS: &[&str] = &[
    "when did my sister move to lyon?",
    "what's the name of the dentist appointment on friday",
    "do I have a peanuts allergy",
    "which hotel did we book for the trip to tokyo",
    "remember the wifi password for the office",
];

fn bench_search(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("sqlite_memory (100k entries, 384 dims, limit 20)");
    let mut i = 0;
    group.bench_function("search_text", |b| {
        b.iter(|| {
            i += 1;
            let query = QUESTIONS[i % QUESTIONS.len()];
            f.runtime.block_on(f.store.search_text(OWNER, black_box(query), LIMIT)).expect("text search")
        });
    });
    group.bench_function("search_embedding", |b| {
        b.iter(|| {
            i += 1;
            let query = &f.queries[i % f.queries.len()];
            f.runtime
                .block_on(f.store.search_embedding(OWNER, black_box(query), LIMIT))
                .expect("embedding search")
        });
    });
    group.finish();
}

/// Times hybrid searches (text, then embedding) one by one and prints their percentiles.
fn hybrid_percentiles(f: &Fixture) {
    const SAMPLES: usize = 2_000;
    let mut times = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let start = Instant::now();
        let text = f.runtime.block_on(f.store.search_text(OWNER, QUESTIONS[i % QUESTIONS.len()], LIMIT));
        let near =
            f.runtime.block_on(f.store.search_embedding(OWNER, &f.queries[i % f.queries.len()], LIMIT));
        times.push(start.elapsed());
        black_box((text.expect("text search"), near.expect("embedding search")));
    }
    print_percentiles(&format!("sqlite_memory/hybrid search over {SAMPLES} searches"), times);
}

fn print_percentiles(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target: p99 ≤ 5 ms)",
        millis(at(0.50)),
        millis(at(0.90)),
        millis(at(0.99)),
        millis(at(1.0)),
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let f = fixture();
    bench_search(&mut c, &f);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and only checks that the
    // benchmark runs.
    if std::env::args().any(|arg| arg == "--bench") {
        hybrid_percentiles(&f);
    }
    f.runtime.block_on(f.store.close());
}
