//! The SQLite store on a file in WAL mode (the default setup): committing a typical turn (a user
//! message, an assistant answer of about 500 characters and one usage record), reading back a
//! 200-message session, and checkpointing a turn in progress (`save_run`, after every step of a
//! turn).
//!
//! Run with `cargo bench -p exoclaw-store --bench store`. The targets are an append and a run
//! checkpoint of at most 1 ms each at the 99th percentile; criterion reports means and medians, so
//! in bench mode this also times 10,000 single commits back to back into a session already holding
//! 10,000 messages (about 5,000 commits a second, far more than agents produce), then 10,000
//! checkpoints of a run of a few KB in that session, and prints their percentiles. The slowest in
//! a thousand are those that coincide with a background checkpoint's fsync on the same disk.

// A benchmark over fixed inputs: failing loudly is right, and printing the percentiles is its job.
#![allow(clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::Criterion;
use exoclaw_core::{Run, RunConfig, RunTool};
use exoclaw_store::{NewSession, RunStore, SessionStore, Store};
use exoclaw_types::{
    Message, Part, SessionId, StopReason, ToolCall, ToolEffect, ToolSpec, Usage, UsageRecord,
};
use tokio::runtime::Runtime;

const ANSWER: &str = "Sure. The failing test is `commit_turn_is_atomic`: the second insert violates the \
unique constraint on message ids, and the transaction rolls back, so nothing of the turn is stored. \
That is the intended behaviour; the assertion that fails expects the session's updated_at to have \
moved, but a rolled-back turn must leave it alone. I changed the assertion to compare the whole \
session before and after, and added a case where the duplicate id belongs to another session. Both \
pass now, on SQLite and on Postgres. Want me to run the full suite as well?";

/// A typical turn for `session`.
fn turn(session: SessionId) -> (Vec<Message>, Vec<UsageRecord>) {
    let messages =
        vec![Message::user("Why does the atomicity test fail on my machine?"), Message::assistant(ANSWER)];
    let usage = vec![UsageRecord {
        at: Utc::now(),
        session_id: Some(session),
        agent: "main".into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        usage: Usage {
            input_tokens: Some(5_210),
            output_tokens: Some(132),
            cache_read_tokens: Some(4_800),
            cache_write_tokens: None,
        },
        latency_ms: 2_340,
        ttft_ms: Some(610),
        cost_usd: Some(0.0042),
        estimated: false,
        purpose: exoclaw_types::CallPurpose::Answer,
    }];
    (messages, usage)
}

/// A turn in progress as the agent checkpoints it after a model call: a coding agent's system
/// prompt and five tools, the user's question, and an answer of text and a tool call, with its
/// usage. `history` (the session's messages) is not part of the checkpoint.
fn run_in_progress(session: SessionId, history: Vec<Message>) -> Run {
    let mut config = RunConfig::new("claude-sonnet-4-5");
    config.system = Some(
        "You are exoclaw, a coding agent working in the user's repository. Read before you write; \
         keep changes small; run the tests after every change and say what you ran. "
            .repeat(6),
    );
    config.tools = ["read_file", "write_file", "list_files", "grep", "shell"]
        .into_iter()
        .map(|name| RunTool {
            spec: ToolSpec {
                name: name.into(),
                description: format!("{name}: does what its name says, inside the workspace only."),
                input_schema: serde_json::json!({
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "Relative to the workspace root."},
                        "pattern": {"type": "string"}
                    },
                    "required": ["path"]
                }),
            },
            effect: ToolEffect::ReadOnly,
        })
        .collect();
    let mut run = Run::new(config, history, Message::user("Why does the atomicity test fail on my machine?"));
    let mut answer = Message::assistant(ANSWER);
    answer.parts.push(Part::ToolCall(ToolCall {
        id: "call_1".into(),
        name: "read_file".into(),
        arguments: serde_json::json!({"path": "crates/exoclaw-store/tests/suite/scenarios.rs"}),
    }));
    run.model_answered(answer, StopReason::ToolUse).expect("a model answer");
    run.record_usage(turn(session).1.remove(0));
    run
}

struct Fixture {
    runtime: Runtime,
    store: Store,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("exoclaw.db");
    let store = runtime.block_on(Store::open(path.to_str().expect("UTF-8 path"))).expect("open the store");
    Fixture { runtime, store, _dir: dir }
}

fn bench_commit(c: &mut Criterion) {
    let f = fixture();
    let session = f.runtime.block_on(f.store.create_session(NewSession::default())).expect("session").id;
    c.bench_function("sqlite_wal/commit_turn (user + 500-char answer + usage)", |b| {
        b.iter_batched(
            || turn(session),
            |(messages, usage)| {
                f.runtime
                    .block_on(f.store.commit_turn(
                        session,
                        &messages,
                        &usage,
                        Some("anthropic/claude-sonnet-4-5"),
                    ))
                    .expect("commit")
            },
            criterion::BatchSize::SmallInput,
        );
    });
    f.runtime.block_on(f.store.close());
}

fn bench_read(c: &mut Criterion) {
    let f = fixture();
    let session = f.runtime.block_on(f.store.create_session(NewSession::default())).expect("session").id;
    for _ in 0..100 {
        let (messages, usage) = turn(session);
        f.runtime.block_on(f.store.commit_turn(session, &messages, &usage, None)).expect("commit");
    }
    c.bench_function("sqlite_wal/messages (200-message session)", |b| {
        b.iter(|| {
            let messages = f.runtime.block_on(f.store.messages(black_box(session))).expect("read");
            assert_eq!(messages.len(), 200);
            messages
        });
    });
    f.runtime.block_on(f.store.close());
}

/// Times single commits one by one, into a session that already holds 10,000 messages (the
/// target's condition), and prints their percentiles.
fn commit_percentiles() {
    /// Turns committed, untimed, before timing starts: two messages each.
    const WARM_UP: usize = 5_000;
    const SAMPLES: usize = 10_000;
    let f = fixture();
    let session = f.runtime.block_on(f.store.create_session(NewSession::default())).expect("session").id;
    let mut times = Vec::with_capacity(SAMPLES);
    for i in 0..WARM_UP + SAMPLES {
        let (messages, usage) = turn(session);
        let start = Instant::now();
        f.runtime.block_on(f.store.commit_turn(session, &messages, &usage, None)).expect("commit");
        if i >= WARM_UP {
            times.push(start.elapsed());
        }
    }
    f.runtime.block_on(f.store.close());
    print_percentiles(
        &format!(
            "sqlite_wal/commit_turn over {SAMPLES} single commits into a session of {}+ messages",
            WARM_UP * 2
        ),
        times,
    );
}

/// A session holding `turns` typical turns (two messages each), and a run in progress in it.
fn session_with_run(f: &Fixture, turns: usize) -> (SessionId, Run) {
    let session = f.runtime.block_on(f.store.create_session(NewSession::default())).expect("session").id;
    for _ in 0..turns {
        let (messages, usage) = turn(session);
        f.runtime.block_on(f.store.commit_turn(session, &messages, &usage, None)).expect("commit");
    }
    let history = f.runtime.block_on(f.store.messages(session)).expect("history");
    (session, run_in_progress(session, history))
}

fn bench_save_run(c: &mut Criterion) {
    let f = fixture();
    let (session, run) = session_with_run(&f, 100);
    let size = serde_json::to_string(&run).expect("run JSON").len();
    c.bench_function(&format!("sqlite_wal/save_run ({size}-byte run)"), |b| {
        b.iter(|| f.runtime.block_on(f.store.save_run(session, black_box(&run))).expect("save"));
    });
    f.runtime.block_on(f.store.close());
}

/// Times single run checkpoints one by one, in a session that holds 10,000 messages, and prints
/// their percentiles.
fn save_run_percentiles() {
    const TURNS: usize = 5_000;
    const SAMPLES: usize = 10_000;
    let f = fixture();
    let (session, run) = session_with_run(&f, TURNS);
    let size = serde_json::to_string(&run).expect("run JSON").len();
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let start = Instant::now();
        f.runtime.block_on(f.store.save_run(session, &run)).expect("save");
        times.push(start.elapsed());
    }
    f.runtime.block_on(f.store.close());
    print_percentiles(
        &format!(
            "sqlite_wal/save_run over {SAMPLES} checkpoints of a {size}-byte run in a session of {} messages",
            TURNS * 2
        ),
        times,
    );
}

/// Prints the percentiles of `times` against the 1 ms target.
fn print_percentiles(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{what}: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs (target: p99 ≤ 1000 µs)",
        micros(at(0.50)),
        micros(at(0.90)),
        micros(at(0.99)),
        micros(at(0.999)),
        micros(at(1.0)),
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_commit(&mut c);
    bench_read(&mut c);
    bench_save_run(&mut c);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and only checks that the
    // benchmarks run.
    if std::env::args().any(|arg| arg == "--bench") {
        commit_percentiles();
        save_run_percentiles();
    }
}
