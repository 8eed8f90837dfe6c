//! The router's costs and its resilience targets.
//!
//! Criterion: the routing decision (alias, prefix, pattern rule with fallbacks) and a breaker's
//! admission check. In bench mode (`cargo bench -p exoclaw-providers --bench router`) it then runs
//! the resilience scenarios against a real llama.cpp `llama-server` behind the testkit's fault
//! proxy, and prints:
//! - 1,000 turns with 30% of the primary's calls failing with 503 and a healthy fallback: how many
//!   succeed (target ≥ 99.9%);
//! - with the primary stalled and a 1 s first-token timeout: the time to the first event via the
//!   fallback, over the timeout (target ≤ 50 ms), median and worst of 10.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use criterion::Criterion;
use exoclaw_core::Provider;
use exoclaw_providers::router::{Breaker, RetryPolicy, Router, Routes};
use exoclaw_providers::{OpenAiCompatible, ProviderOptions, presets::LLAMACPP};
use exoclaw_testkit::fault::{Fault, FaultProxy};
use exoclaw_testkit::peers::LlamaServer;
use exoclaw_types::{ChatRequest, GenerationParams, Message, StreamEvent};
use futures::StreamExt;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn table() -> Routes {
    Routes::new(["anthropic", "openai", "gemini", "local", "work"])
        .alias("fast", "anthropic/claude-haiku-4-5")
        .rule("claude-*", "anthropic")
        .unwrap()
        .rule("gpt-*", "openai")
        .unwrap()
        .rule("gemini-*", "gemini")
        .unwrap()
        .fallbacks("claude-*", &["openai/gpt-4o-mini", "local/smollm2"])
        .unwrap()
}

fn bench_decisions(c: &mut Criterion) {
    let routes = table();
    c.bench_function("route/alias", |b| b.iter(|| routes.resolve(black_box("fast")).unwrap()));
    c.bench_function("route/prefix", |b| b.iter(|| routes.resolve(black_box("work/qwen3-8b")).unwrap()));
    c.bench_function("route/rule_with_fallbacks", |b| {
        b.iter(|| routes.resolve(black_box("claude-sonnet-4-5")).unwrap())
    });
    let breaker = Breaker::default();
    c.bench_function("breaker/admit_closed", |b| b.iter(|| black_box(&breaker).admit()));
}

fn llamacpp(name: &str, base: &str) -> Arc<dyn Provider> {
    Arc::new(
        OpenAiCompatible::new(
            &LLAMACPP,
            ProviderOptions::default().name(name).base_url(format!("{base}/v1")),
        )
        .expect("provider"),
    )
}

fn router(primary: &str, fallback: &str, retry: RetryPolicy, first_token: Duration) -> Router {
    let builder = Router::builder("bench")
        .retry(retry)
        .first_token_timeout(first_token)
        .provider(llamacpp("primary", primary), false)
        .provider(llamacpp("fallback", fallback), false);
    let routes = Routes::new(builder.provider_names())
        .alias("m", "primary/smollm2")
        .fallbacks("m", &["fallback/smollm2"])
        .expect("routes");
    builder.build(routes)
}

fn request() -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("Hi")]).with_system("You are a helpful assistant.").with_params(
        GenerationParams { max_tokens: Some(1), temperature: Some(0.0), ..GenerationParams::default() },
    )
}

/// Streams one answer to its end; whether it finished (a failure is printed).
async fn turn(router: &Router) -> bool {
    let mut stream = match router.stream(request()).await {
        Ok(stream) => stream,
        Err(err) => {
            println!("failed turn: {err}");
            return false;
        }
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Finish { .. }) => return true,
            Ok(_) => {}
            Err(err) => {
                println!("failed turn, mid-stream: {err}");
                return false;
            }
        }
    }
    println!("failed turn: the stream ended without a finish");
    false
}

async fn resilience() {
    let server = tokio::task::spawn_blocking(LlamaServer::start).await.expect("llama-server");
    let proxy = FaultProxy::with_failure_rate(&server.url(), 0.3, Fault::status(503), 7).await;
    let retry = RetryPolicy {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    let r = router(&proxy.url(), &server.url(), retry, Duration::from_secs(5));
    let mut ok = 0;
    for _ in 0..1_000 {
        if turn(&r).await {
            ok += 1;
        }
    }
    let injected = proxy.faults().iter().filter(|f| **f != Fault::Pass).count();
    println!(
        "router/30%_503_on_primary: {ok} of 1000 turns succeeded ({:.1}%; target ≥ 99.9%); {injected} of {} primary calls failed",
        ok as f64 / 10.0,
        proxy.count()
    );

    let stalled = FaultProxy::start(&server.url(), []).await;
    stalled.set_default(Fault::stall(Duration::from_secs(600)));
    let timeout = Duration::from_secs(1);
    let mut overs = Vec::new();
    for _ in 0..10 {
        // A fresh router each time: the stalled primary's breaker would otherwise open.
        let r = router(&stalled.url(), &server.url(), RetryPolicy::default(), timeout);
        let started = Instant::now();
        let mut stream = r.stream(request()).await.expect("stream");
        let _first = stream.next().await;
        overs.push(started.elapsed().saturating_sub(timeout));
        while stream.next().await.is_some() {}
    }
    overs.sort();
    println!(
        "router/stalled_primary: first event via the fallback {:.1} ms (median) / {:.1} ms (worst) after the 1 s first-token timeout (target ≤ 50 ms)",
        overs[overs.len() / 2].as_secs_f64() * 1e3,
        overs[overs.len() - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_decisions(&mut c);
    c.final_summary();
    if std::env::args().any(|arg| arg == "--bench") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(resilience());
    }
}
