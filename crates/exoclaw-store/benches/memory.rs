//! Long-term memory search on an SQLite file in WAL mode holding 100,000 entries, each with a
//! 384-dimension normalised embedding (random, from a fixed seed). Benches `search_text`,
//! `search_embedding` and a hybrid search once warm, that is with the owner's embeddings already
//! cached, as they are in a running gateway.
//!
//! # The corpus
//!
//! By default (`realistic`) the entries are short chat sentences (6 to 16 words) drawn from a
//! vocabulary of 5,000 words with a Zipf frequency (the word of rank r about 1/r as often as the
//! first): the first ranks are the function words of chat ("i", "the", "to"…), then a hundred
//! everyday content words ("sister", "flight", "dentist"…), then made-up words (syllables, from a
//! fixed seed) standing for the long tail. So, as in real chat, a content word is in at most a few
//! percent of the entries and most are in a handful. The queries are 1,000 natural questions
//! ("when did my sister …?") of two to four content words each, some common (ranks 60 to 400),
//! some rare (ranks 400 to 5,000), some in no entry at all.
//!
//! `EXOCLAW_BENCH_CORPUS=pessimistic` gives the earlier corpus instead: about 130 content words
//! drawn uniformly, each in about 4% of the entries, so that every query matches thousands of them;
//! its queries are five fixed questions.
//!
//! Run with `cargo bench -p exoclaw-store --bench memory`. The target is a hybrid search (one of
//! each, the query's embedding excluded) of at most 5 ms at the 99th percentile. A hybrid search
//! here is what `exoclaw_memory::Memory::search` runs for 20 results: the best 60 by text and the
//! best 60 by embedding for the same question, at once. In bench mode this also times 2,000 text,
//! embedding and hybrid searches one by one (cycling through the questions) and prints their
//! percentiles.
//!
//! `EXOCLAW_BENCH_SLOWEST=N` also prints the N questions slowest to answer (each by its fastest
//! time, which leaves out a busy machine's pauses); `EXOCLAW_BENCH_RESULTS=PATH` writes every
//! question's results (ids and scores) to PATH, to check that a change finds what the code
//! before it found.

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
/// Results asked of each search: `exoclaw_memory::Memory::search` asks for three times the 20
/// hits it returns.
const LIMIT: usize = 60;
const OWNER: &str = "U42";
/// Messages per session.
const SESSION_LEN: usize = 200;
/// Words in the realistic corpus's vocabulary.
const VOCABULARY: usize = 5_000;
/// Questions asked of the realistic corpus.
const QUESTIONS: usize = 1_000;

/// The function words of chat, the most frequent first (most are stop words).
const FUNCTION_WORDS: &[&str] = &[
    "i", "you", "the", "a", "to", "and", "my", "is", "it", "in", "for", "that", "we", "on", "with", "was",
    "do", "can", "be", "have", "me", "what", "so", "at", "this", "just", "not", "but", "about", "there",
    "are", "if", "your", "get", "like", "know", "will", "one", "all", "think", "go", "when", "up", "out",
    "would", "they", "did", "how", "yes", "no", "time", "good", "really", "some", "been", "well", "yeah",
    "from", "our", "had",
];

/// Everyday content words: the most frequent after the function words (and the only content words
/// of the pessimistic corpus).
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

/// How the questions open: the way people ask their assistant to remember.
const OPENINGS: &[&str] = &[
    "when did my",
    "what did I say about the",
    "do you remember the",
    "where is my",
    "what was the name of the",
    "did we talk about",
    "how much was the",
    "who told me about the",
    "remind me what I said about",
    "what happened with the",
];

/// Which corpus to build (`EXOCLAW_BENCH_CORPUS`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Corpus {
    Realistic,
    Pessimistic,
}

/// The realistic corpus's words by rank, with a sampler of their Zipf frequencies.
struct Vocabulary {
    words: Vec<String>,
    /// Cumulative weights, for sampling by binary search.
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(rng: &mut fastrand::Rng) -> Self {
        const ONSETS: &[&str] = &[
            "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "cl",
            "dr", "fl", "gr", "pl", "st", "tr", "sh", "ch",
        ];
        const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou", "ea"];
        let mut words: Vec<String> = FUNCTION_WORDS.iter().chain(CONTENT).map(|w| (*w).to_owned()).collect();
        let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
        while words.len() < VOCABULARY {
            let syllables = rng.usize(2..=3);
            let mut word: String = (0..syllables)
                .map(|_| {
                    format!("{}{}", ONSETS[rng.usize(..ONSETS.len())], VOWELS[rng.usize(..VOWELS.len())])
                })
                .collect();
            word.push_str(["", "n", "r", "s", "l", "t"][rng.usize(..6)]);
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut total = 0.0;
        let cumulative = (1..=words.len())
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Self { words, cumulative }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> &str {
        let target = rng.f64() * self.cumulative.last().copied().unwrap_or(0.0);
        let at = self.cumulative.partition_point(|c| *c < target).min(self.words.len() - 1);
        &self.words[at]
    }

    /// A short chat sentence: 6 to 16 words by their frequencies.
    fn sentence(&self, rng: &mut fastrand::Rng) -> String {
        let words: Vec<&str> = (0..rng.usize(6..=16)).map(|_| self.sample(rng)).collect();
        let mut text = words.join(" ");
        text.push('.');
        text
    }

    /// A natural question: an opening and two to four content words, each common, rare or in no
    /// entry (a made-up word with a syllable the vocabulary never uses).
    fn question(&self, rng: &mut fastrand::Rng) -> String {
        let mut words = vec![OPENINGS[rng.usize(..OPENINGS.len())].to_owned()];
        for _ in 0..rng.usize(2..=4) {
            let word = match rng.u8(..100) {
                0..50 => self.words[rng.usize(FUNCTION_WORDS.len()..400)].clone(),
                50..85 => self.words[rng.usize(400..self.words.len())].clone(),
                _ => format!("qux{}", rng.u32(..100_000)),
            };
            words.push(word);
        }
        let mut question = words.join(" ");
        question.push('?');
        question
    }
}

/// A sentence of the pessimistic corpus: 6 to 16 words, about half of them function words, the
/// others among [`CONTENT`], all drawn uniformly.
fn pessimistic_sentence(rng: &mut fastrand::Rng) -> String {
    let words: Vec<&str> =
        (0..rng.usize(6..=16))
            .map(|_| {
                if rng.bool() { FUNCTION_WORDS[rng.usize(..30)] } else { CONTENT[rng.usize(..CONTENT.len())] }
            })
            .collect();
    let mut text = words.join(" ");
    text.push('.');
    text
}

/// The pessimistic corpus's questions.
const PESSIMISTIC_QUESTIONS: &[&str] = &[
    "when did my sister move to lyon?",
    "what's the name of the dentist appointment on friday",
    "do I have a peanuts allergy",
    "which hotel did we book for the trip to tokyo",
    "remember the wifi password for the office",
];

/// A random direction, normalised.
fn embedding(rng: &mut fastrand::Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMENSIONS).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

struct Fixture {
    runtime: Runtime,
    store: Store,
    /// Questions, each with its embedding: near a stored entry (a question about something said)
    /// or near nothing, alternately.
    queries: Vec<(String, Vec<f32>)>,
    _dir: tempfile::TempDir,
}

fn fixture(corpus: Corpus) -> Fixture {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("memory.db");
    let store = runtime.block_on(Store::open(path.to_str().expect("UTF-8 path"))).expect("open the store");
    let mut rng = fastrand::Rng::with_seed(42);
    let vocabulary = Vocabulary::new(&mut rng);
    let start = Instant::now();
    let base = DateTime::<Utc>::from_timestamp(1_750_000_000, 0).expect("a time");
    let mut near = Vec::new();
    let mut session = SessionId::new();
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..ENTRIES {
        if i % SESSION_LEN == 0 {
            session = SessionId::new();
        }
        let vector = embedding(&mut rng);
        if i % (2 * ENTRIES / QUESTIONS) == 0 {
            let noise = embedding(&mut rng);
            near.push(vector.iter().zip(noise).map(|(a, b)| a + 0.7 * b).collect::<Vec<f32>>());
            near.push(embedding(&mut rng));
        }
        let text = match corpus {
            Corpus::Realistic => vocabulary.sentence(&mut rng),
            Corpus::Pessimistic => pessimistic_sentence(&mut rng),
        };
        batch.push(NewEntry {
            owner: OWNER.into(),
            session,
            kind: EntryKind::Message,
            seq: (i % SESSION_LEN) as u64,
            role: Some(if i % 2 == 0 { Role::User } else { Role::Assistant }),
            text,
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
        "indexed {ENTRIES} entries ({corpus:?} corpus) of {DIMENSIONS} dimensions in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let queries: Vec<(String, Vec<f32>)> = near
        .into_iter()
        .enumerate()
        .map(|(i, vector)| {
            let question = match corpus {
                Corpus::Realistic => vocabulary.question(&mut rng),
                Corpus::Pessimistic => PESSIMISTIC_QUESTIONS[i % PESSIMISTIC_QUESTIONS.len()].to_owned(),
            };
            (question, vector)
        })
        .collect();
    let start = Instant::now();
    let found = runtime.block_on(store.search_embedding(OWNER, &queries[0].1, LIMIT)).expect("first search");
    assert_eq!(found.len(), LIMIT);
    println!("first embedding search (loads the cache) took {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    let matched: Vec<usize> = queries
        .iter()
        .take(200)
        .map(|(q, _)| runtime.block_on(store.search_text(OWNER, q, LIMIT)).expect("text search").len())
        .collect();
    println!(
        "text searches that found {LIMIT} results: {} of {} (sample: {:?})",
        matched.iter().filter(|n| **n == LIMIT).count(),
        matched.len(),
        &queries[..3].iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>()
    );
    Fixture { runtime, store, queries, _dir: dir }
}

fn bench_search(c: &mut Criterion, f: &Fixture, corpus: Corpus) {
    let mut group =
        c.benchmark_group(format!("sqlite_memory ({corpus:?}, 100k entries, 384 dims, limit 60)"));
    let mut i = 0;
    group.bench_function("search_text", |b| {
        b.iter(|| {
            i += 1;
            let (query, _) = &f.queries[i % f.queries.len()];
            f.runtime.block_on(f.store.search_text(OWNER, black_box(query), LIMIT)).expect("text search")
        });
    });
    group.bench_function("search_embedding", |b| {
        b.iter(|| {
            i += 1;
            let (_, query) = &f.queries[i % f.queries.len()];
            f.runtime
                .block_on(f.store.search_embedding(OWNER, black_box(query), LIMIT))
                .expect("embedding search")
        });
    });
    group.finish();
}

/// Times text, embedding and hybrid searches one by one, cycling through the questions, and prints
/// their percentiles. A hybrid search is both searches for the same question: one after the other
/// (their sum), and at once, as `exoclaw_memory::Memory::search` runs them.
fn percentiles(f: &Fixture, corpus: Corpus) {
    const SAMPLES: usize = 2_000;
    let (mut text, mut near, mut hybrid, mut together) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        let (question, vector) = &f.queries[i % f.queries.len()];
        let start = Instant::now();
        let found = f.runtime.block_on(f.store.search_text(OWNER, question, LIMIT));
        let middle = Instant::now();
        let nearest = f.runtime.block_on(f.store.search_embedding(OWNER, vector, LIMIT));
        let end = Instant::now();
        text.push(middle - start);
        near.push(end - middle);
        hybrid.push(end - start);
        black_box((found.expect("text search"), nearest.expect("embedding search")));
        // As `exoclaw_memory::Memory::search` runs them: at once.
        let start = Instant::now();
        let (found, nearest) = f.runtime.block_on(async {
            tokio::join!(
                f.store.search_text(OWNER, question, LIMIT),
                f.store.search_embedding(OWNER, vector, LIMIT)
            )
        });
        together.push(start.elapsed());
        black_box((found.expect("text search"), nearest.expect("embedding search")));
    }
    let what = format!("sqlite_memory/{corpus:?} over {SAMPLES} searches");
    if let Ok(count) = std::env::var("EXOCLAW_BENCH_SLOWEST") {
        let count: usize = count.parse().expect("EXOCLAW_BENCH_SLOWEST: a number of questions");
        print_slowest(f, "text", &text, count);
        print_slowest(f, "embedding", &near, count);
        print_slowest(f, "hybrid at once", &together, count);
    }
    print_percentiles(&format!("{what}, text"), text);
    print_percentiles(&format!("{what}, embedding"), near);
    print_percentiles(&format!("{what}, hybrid, one after the other"), hybrid);
    print_percentiles(&format!("{what}, hybrid, at once (as Memory::search)"), together);
}

/// Prints the `count` questions whose searches were slowest (`times` by sample, cycling through
/// the questions), each with its fastest time: what the question costs, without the pauses of a
/// busy machine.
fn print_slowest(f: &Fixture, what: &str, times: &[Duration], count: usize) {
    let mut slowest: Vec<(Duration, usize)> = vec![(Duration::MAX, 0); f.queries.len()];
    for (i, time) in times.iter().enumerate() {
        let at = i % f.queries.len();
        slowest[at] = (slowest[at].0.min(*time), at);
    }
    slowest.sort_by(|a, b| b.cmp(a));
    for (time, at) in slowest.into_iter().take(count) {
        println!("slowest {what}: {:.2} ms, question {at}: {:?}", time.as_secs_f64() * 1e3, f.queries[at].0);
    }
}

/// Writes, for every question, the ids its text and embedding searches found (best first), one
/// line each, to compare a change's results with the code's before it.
fn dump_results(f: &Fixture, path: &str) {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (at, (question, vector)) in f.queries.iter().enumerate() {
        let found = f.runtime.block_on(f.store.search_text(OWNER, question, LIMIT)).expect("text search");
        let nearest =
            f.runtime.block_on(f.store.search_embedding(OWNER, vector, LIMIT)).expect("embedding search");
        let ids = |list: &[exoclaw_store::ScoredEntry]| {
            list.iter().map(|s| format!("{}:{:.4}", s.entry.id, s.score)).collect::<Vec<_>>().join(" ")
        };
        writeln!(out, "text {at}: {}", ids(&found)).expect("a string");
        writeln!(out, "embedding {at}: {}", ids(&nearest)).expect("a string");
    }
    std::fs::write(path, out).expect("write the results");
    println!("wrote every question's results to {path}");
}

fn print_percentiles(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (hybrid target: p99 ≤ 5 ms)",
        millis(at(0.50)),
        millis(at(0.90)),
        millis(at(0.99)),
        millis(at(1.0)),
    );
}

fn main() {
    let corpus = match std::env::var("EXOCLAW_BENCH_CORPUS").as_deref() {
        Ok("pessimistic") => Corpus::Pessimistic,
        _ => Corpus::Realistic,
    };
    let mut c = Criterion::default().configure_from_args();
    let f = fixture(corpus);
    bench_search(&mut c, &f, corpus);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and only checks that the
    // benchmark runs.
    if let Ok(path) = std::env::var("EXOCLAW_BENCH_RESULTS") {
        dump_results(&f, &path);
    }
    if std::env::args().any(|arg| arg == "--bench") {
        percentiles(&f, corpus);
    }
    f.runtime.block_on(f.store.close());
}
