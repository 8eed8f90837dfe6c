//! What a channel adds, measured on Slack's path with an instant model: how long a delivery takes
//! to be acknowledged (signature checked, parsed, deduplicated, its turn queued), and how long from
//! the delivery to the model's request — beside the floor measured in the same run: the same turn
//! submitted to the runtime directly. Deliveries go one at a time (each waits for its model
//! request), so the numbers are the path's, not a queue's. Percentiles over 2,000 deliveries.
//!
//! `cargo bench -p exoclaw-channels --bench webhook`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use bytes::Bytes;
use exoclaw_channels::{SlackChannel, SlackConfig};
use exoclaw_core::AgentRunner;
use exoclaw_core::runtime::{AgentRuntime, Target, TurnInput, Webhook};
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use exoclaw_testkit::runtime::ScriptedRuntime;
use exoclaw_testkit::slack;
use exoclaw_types::Inbound;
use http::HeaderMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DELIVERIES: usize = 2_000;
const SECRET: &str = "bench-secret";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!("{name:<44} p50 {:>8.1} µs   p99 {:>8.1} µs", p50.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6);
    (p50, p99)
}

/// Waits until the model has been asked `count` times; when the last was asked.
async fn asked(calls: &Mutex<Vec<Instant>>, count: usize) -> Instant {
    loop {
        if let Some(&at) = calls.lock().unwrap().get(count - 1) {
            return at;
        }
        tokio::task::yield_now().await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let calls = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let recorder = Arc::clone(&calls);
        let model = Arc::new(RespondingProvider::new("instant", move |_| {
            recorder.lock().unwrap().push(Instant::now());
            Outcome::Text("ok".into())
        }));
        let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
        let runner = AgentRunner::new(model, "m", "instant/m").with_agent("default");
        let agents: Arc<dyn AgentRuntime> =
            Arc::new(ScriptedRuntime::new(store).agent("default", None, runner));
        let api = slack::web_api(2 * DELIVERIES + 10).await;
        let config = SlackConfig { api_base: api.url(), ..SlackConfig::default() };
        let channel = SlackChannel::new(&config, SECRET.into(), "xoxb-bench".into(), Arc::clone(&agents));

        // The floor: the same turns submitted to the runtime directly.
        let mut direct = Vec::with_capacity(DELIVERIES);
        for i in 0..DELIVERIES {
            let inbound = Inbound {
                channel: "slack".into(),
                account: "T1".into(),
                peer: format!("D{}", i % 100),
                guild: None,
                team: Some("T1".into()),
            };
            let started = Instant::now();
            let handle =
                agents.submit(Target::Inbound { inbound, agent: None }, TurnInput::message("hello")).unwrap();
            direct.push(asked(&calls, i + 1).await - started);
            handle.report().await.unwrap();
        }

        let (mut acks, mut latency) = (Vec::with_capacity(DELIVERIES), Vec::with_capacity(DELIVERIES));
        let now = chrono::Utc::now().timestamp();
        for i in 0..DELIVERIES {
            let event =
                slack::mention(&format!("Ev{i}"), "T1", &format!("C{}", i % 100), "U1", "hello", "1.1");
            let body = event.to_string();
            let headers: HeaderMap = slack::headers(SECRET, now, body.as_bytes())
                .into_iter()
                .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
                .collect();
            let body = Bytes::from(body);
            let started = Instant::now();
            channel.verify(&headers, &body).unwrap();
            channel.receive(&headers, body).await.unwrap();
            acks.push(started.elapsed());
            latency.push(asked(&calls, DELIVERIES + i + 1).await - started);
        }
        println!("{DELIVERIES} deliveries, one at a time, instant model, SQLite in memory");
        report("Slack webhook acknowledged", acks);
        let (floor, _) = report("runtime.submit → model request (floor)", direct);
        let (path, _) = report("Slack delivery → model request", latency);
        println!(
            "added by the channel (p50): {:.1} µs (target ≤ 2 ms)",
            path.saturating_sub(floor).as_secs_f64() * 1e6
        );
    });
}
