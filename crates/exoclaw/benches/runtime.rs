//! The runtime's own cost around a turn, with a provider that answers at once (registered with
//! `RuntimeBuilder::provider`), on an SQLite store in a file (WAL, the default setup) and on an
//! in-memory one (no file IO at all: what is left is the runtime and sqlx's round trips):
//!
//! - `submit_to_first_model_request/{file,memory}/{continued,new}`: from `submit` to the
//!   provider's `stream` being called. A continued session's turn takes the session's queue
//!   place and its cross-process lock, reads the session (its revision says the history the
//!   runtime kept is current) and assembles the context; its first checkpoint is saved while the
//!   model is asked. A new session's turn asks the model at once: the session is locked and
//!   stored with the first checkpoint, meanwhile. The continued sessions keep 2 to 20 stored
//!   messages: every 10 turns the bench moves to a fresh session (untimed), since a history
//!   growing over a whole criterion run (thousands of turns) would measure the history's size
//!   instead.
//! - `lock_and_read_session/{file,memory}`: the store work a continued session's first request
//!   waits for (the session's lock, and its row read under the lock), without the runtime: the
//!   floor under `continued`, measured in the same run. What `continued` adds to it is the
//!   runtime's own overhead.
//! - `whole_turn/{file,memory}/continued`: the same turn, submit → the report, committed.
//!
//! Run: `cargo bench -p exoclaw --bench runtime`.
//!
//! # Instruction counts
//!
//! Wall time moves with whatever else the machine runs; instruction counts do not. With
//! `EXOCLAW_BENCH_TURNS=N` set the binary skips criterion and runs N whole turns of one case,
//! `EXOCLAW_BENCH_CASE=PATH` (`runtime/{file,memory}/{continued,new}`, or `store/{file,memory}/
//! {continued,new}`: the same store calls in the same order without the runtime, to tell the
//! store's share from the runtime's). `scripts/runtime-instructions.sh` runs each case under
//! callgrind at two turn counts and prints the difference per turn, which cancels start-up.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::print_stdout, missing_docs)]

use async_trait::async_trait;
use criterion::{Criterion, criterion_group};
use exoclaw::exoclaw_core::{
    AgentRuntime, EventStream, NewSession, Provider, ProviderError, Run, RunConfig, RunStore, SessionLocks,
    SessionStore, Target, TurnInput,
};
use exoclaw::exoclaw_store::Store;
use exoclaw::exoclaw_types::{ChatRequest, Message, SessionId, StopReason, StreamEvent, Usage, UsageRecord};
use exoclaw::{Config, Runtime};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Turns a continued session takes before the bench moves to a fresh one.
const TURNS_PER_SESSION: usize = 10;

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
        let events = vec![
            Ok(StreamEvent::TextDelta { text: "Paris.".into() }),
            Ok(StreamEvent::Usage(usage())),
            Ok(StreamEvent::Finish { reason: StopReason::EndTurn }),
        ];
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

fn usage() -> Usage {
    Usage { input_tokens: Some(20), output_tokens: Some(2), ..Usage::default() }
}

/// Where the store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    File,
    Memory,
}

impl Backing {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Memory => "memory",
        }
    }
}

/// A runtime on its own store, and the provider it calls.
struct Bench {
    runtime: Runtime,
    provider: Arc<InstantProvider>,
    /// The continued session and the turns it has had.
    current: Option<(SessionId, usize)>,
    _dir: tempfile::TempDir,
}

async fn open_store(backing: Backing, dir: &Path) -> Store {
    let url = match backing {
        Backing::File => dir.join("bench.db").display().to_string(),
        Backing::Memory => "sqlite::memory:".to_owned(),
    };
    Store::open(&url).await.unwrap()
}

fn config() -> Config {
    Config::parse("model = \"bench/m\"\n[agent]\ntools = false\n", Path::new("bench.toml")).unwrap()
}

impl Bench {
    async fn new(backing: Backing) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(InstantProvider::default());
        let store = open_store(backing, dir.path()).await;
        let runtime = Runtime::builder()
            .config(config())
            .store(store)
            .provider(provider.clone())
            .build()
            .await
            .unwrap();
        let mut bench = Self { runtime, provider, current: None, _dir: dir };
        // Warm up: the provider opened, the connections and statements prepared.
        for _ in 0..20 {
            bench.continued().await;
            bench.new_session().await;
        }
        bench
    }

    /// A turn on the continued session; moves to a fresh one (its first turn untimed) every
    /// [`TURNS_PER_SESSION`] turns. Gives how long submit → the model request took.
    async fn continued(&mut self) -> Duration {
        let session = match self.current {
            Some((session, turns)) if turns < TURNS_PER_SESSION => session,
            _ => {
                let first = self.runtime.submit(Target::New { agent: None }, TurnInput::message("hello"));
                first.unwrap().report().await.unwrap().session_id
            }
        };
        let took = self.timed(Target::Session(session)).await;
        let turns = self.current.filter(|(s, _)| *s == session).map_or(1, |(_, n)| n + 1);
        self.current = Some((session, turns));
        took
    }

    /// A new session's first turn; gives how long submit → the model request took.
    async fn new_session(&self) -> Duration {
        self.timed(Target::New { agent: None }).await
    }

    async fn timed(&self, target: Target) -> Duration {
        let started = Instant::now();
        let turn = self.runtime.submit(target, TurnInput::message("What is the capital of France?"));
        turn.unwrap().report().await.unwrap();
        let called = self.provider.called.lock().unwrap().take().unwrap();
        called - started
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("runtime");
    for backing in [Backing::File, Backing::Memory] {
        let mut bench = rt.block_on(Bench::new(backing));
        group.bench_function(format!("submit_to_first_model_request/{}/continued", backing.name()), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += bench.continued().await;
                    }
                    total
                })
            });
        });
        group.bench_function(format!("submit_to_first_model_request/{}/new", backing.name()), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += bench.new_session().await;
                    }
                    total
                })
            });
        });
        // The floor under a continued session's first request: the store work it waits for
        // (the lock, and the session's row read under it), alone, on the same store.
        group.bench_function(format!("lock_and_read_session/{}", backing.name()), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let session = bench.current.map(|(s, _)| s).unwrap();
                    let store = bench.runtime.store();
                    let started = Instant::now();
                    for _ in 0..iters {
                        let lease = store.lock_session(session, true).await.unwrap();
                        store.session(session).await.unwrap().unwrap();
                        drop(lease);
                    }
                    started.elapsed()
                })
            });
        });
        group.bench_function(format!("whole_turn/{}/continued", backing.name()), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        bench.continued().await;
                    }
                    started.elapsed()
                })
            });
        });
        rt.block_on(bench.runtime.store().close());
    }
    group.finish();
}

criterion_group!(benches, bench);

/// The store calls a turn makes, in the runtime's order, without the runtime: the lock, the
/// session read (or its creation), the first checkpoint, the commit. (The runtime keeps the
/// histories of recent sessions, so a continued session's messages are not read.)
struct StoreOnly {
    store: Store,
    current: Option<(SessionId, usize)>,
    _dir: tempfile::TempDir,
}

impl StoreOnly {
    async fn new(backing: Backing) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(backing, dir.path()).await;
        Self { store, current: None, _dir: dir }
    }

    async fn continued(&mut self) {
        let session = match self.current {
            Some((session, turns)) if turns < TURNS_PER_SESSION => session,
            _ => self.turn(None).await,
        };
        self.turn(Some(session)).await;
        let turns = self.current.filter(|(s, _)| *s == session).map_or(1, |(_, n)| n + 1);
        self.current = Some((session, turns));
    }

    /// One turn's store calls on `session`, or on a new session; gives the session.
    async fn turn(&self, session: Option<SessionId>) -> SessionId {
        let store = &self.store;
        let id = session.unwrap_or_default();
        let lease = store.lock_session(id, true).await.unwrap();
        match session {
            Some(id) => {
                // The history is the runtime's, kept since its last commit: the revision says so.
                let info = store.session(id).await.unwrap().unwrap();
                if info.interrupted {
                    store.interrupted_run(id).await.unwrap();
                }
            }
            None => {
                let new = NewSession {
                    id: Some(id),
                    title: Some("What is the capital of France?".into()),
                    model: Some("bench/m".into()),
                    ..NewSession::default()
                };
                store.create_session(new).await.unwrap();
            }
        }
        let history = Vec::new();
        let input = Message::user("What is the capital of France?");
        let run = Run::new(RunConfig::new("m"), history, input.clone());
        store.save_run(id, &run).await.unwrap();
        let record = UsageRecord {
            at: chrono::Utc::now(),
            session_id: Some(id),
            agent: "default".into(),
            provider: "bench".into(),
            model: "m".into(),
            usage: usage(),
            latency_ms: 0,
            ttft_ms: Some(0),
            cost_usd: None,
            estimated: false,
            purpose: exoclaw::exoclaw_types::CallPurpose::Answer,
        };
        store
            .commit_turn(id, &[input, Message::assistant("Paris.")], &[record], Some("bench/m"))
            .await
            .unwrap();
        drop(lease);
        id
    }
}

/// Runs `turns` whole turns of `case` (see the module docs) and nothing else.
fn instructions(case: &str, turns: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let parts: Vec<&str> = case.split('/').collect();
    let backing = match parts.get(1) {
        Some(&"file") => Backing::File,
        Some(&"memory") => Backing::Memory,
        _ => panic!("EXOCLAW_BENCH_CASE={case}: expected runtime|store / file|memory / continued|new"),
    };
    let continued = match parts.get(2) {
        Some(&"continued") => true,
        Some(&"new") => false,
        _ => panic!("EXOCLAW_BENCH_CASE={case}: expected runtime|store / file|memory / continued|new"),
    };
    rt.block_on(async {
        match parts[0] {
            "runtime" => {
                let mut bench = Bench::new(backing).await;
                for _ in 0..turns {
                    if continued {
                        bench.continued().await;
                    } else {
                        bench.new_session().await;
                    }
                }
                bench.runtime.store().close().await;
            }
            "store" => {
                let mut bench = StoreOnly::new(backing).await;
                for _ in 0..20 {
                    bench.continued().await;
                    bench.turn(None).await;
                }
                for _ in 0..turns {
                    if continued {
                        bench.continued().await;
                    } else {
                        bench.turn(None).await;
                    }
                }
                bench.store.close().await;
            }
            other => panic!("EXOCLAW_BENCH_CASE={case}: `{other}` is neither runtime nor store"),
        }
    });
    println!("{case}: {turns} turns");
}

fn main() {
    if let Ok(turns) = std::env::var("EXOCLAW_BENCH_TURNS") {
        let case = std::env::var("EXOCLAW_BENCH_CASE").unwrap_or_else(|_| "runtime/file/continued".into());
        instructions(&case, turns.parse().expect("EXOCLAW_BENCH_TURNS is a number of turns"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
