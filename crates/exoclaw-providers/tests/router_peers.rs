//! The router over real HTTP: a real llama.cpp `llama-server` (SmolLM2-135M) as the upstream, with
//! the testkit's fault-injection proxy in front of the primary injecting 5xx, 429 + Retry-After,
//! stalls and cut streams. The fallback is the same server reached directly. Never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::{ErrorKind, Provider};
use exoclaw_providers::router::{BreakerPolicy, BreakerState, RetryPolicy, Router, Routes};
use exoclaw_providers::{OpenAiCompatible, ProviderOptions, presets::LLAMACPP};
use exoclaw_testkit::conformance::drain;
use exoclaw_testkit::fault::{Fault, FaultProxy, RetryAfter};
use exoclaw_testkit::peers::LlamaServer;
use exoclaw_types::{ChatRequest, GenerationParams, Message, StreamEvent};
use std::sync::Arc;
use std::time::Duration;

fn llamacpp(name: &str, base: &str) -> Arc<dyn Provider> {
    Arc::new(
        OpenAiCompatible::new(
            &LLAMACPP,
            ProviderOptions::default().name(name).base_url(format!("{base}/v1")),
        )
        .unwrap(),
    )
}

/// `m` goes to `flaky` (through the proxy), falling back to `steady` (direct).
fn router(proxy: &FaultProxy, server: &LlamaServer, retry: RetryPolicy) -> Router {
    let builder = Router::builder("router")
        .retry(retry)
        .seed(1)
        // Long enough for the real model's first token while the rest of the suite loads both
        // cores (2 s was seen to expire in CI), far below the stall test's 60 s.
        .first_token_timeout(Duration::from_secs(15))
        // The breaker test's five failed requests must all fall within the window: the default
        // 30 s was seen to let the first one expire when the real model answered slowly under
        // load (33 s for the test).
        .breaker_policy(BreakerPolicy { window: Duration::from_secs(600), ..BreakerPolicy::default() })
        .provider(llamacpp("flaky", &proxy.url()), true)
        .provider(llamacpp("steady", &server.url()), true);
    let routes = Routes::new(builder.provider_names())
        .alias("m", "flaky/smollm2")
        .fallbacks("m", &["steady/smollm2"])
        .unwrap();
    builder.build(routes)
}

fn question(max_tokens: u32) -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("What is the capital of France?")])
        .with_system("You are a helpful assistant.")
        .with_params(GenerationParams {
            temperature: Some(0.0),
            max_tokens: Some(max_tokens),
            ..GenerationParams::default()
        })
}

fn served(events: &[StreamEvent]) -> Option<&str> {
    events.iter().find_map(|e| match e {
        StreamEvent::Served { provider, .. } => Some(provider.as_str()),
        _ => None,
    })
}

use exoclaw_testkit::conformance::text_of as text;

async fn start(script: impl IntoIterator<Item = Fault>) -> (LlamaServer, FaultProxy) {
    let server = tokio::task::spawn_blocking(LlamaServer::start).await.unwrap();
    let proxy = FaultProxy::start(&server.url(), script).await;
    (server, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried_and_the_real_model_answers() {
    let (server, proxy) = start([Fault::status(503)]).await;
    let r =
        router(&proxy, &server, RetryPolicy { base: Duration::from_millis(10), ..RetryPolicy::default() });
    let (events, err) = drain(r.stream(question(24)).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served(&events), Some("flaky"), "the retry on the primary succeeded");
    assert!(text(&events).contains("Paris"), "{}", text(&events));
    assert_eq!(proxy.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_keeps_failing_falls_over_to_the_fallback() {
    let (server, proxy) = start([]).await;
    proxy.set_default(Fault::status(500));
    let r =
        router(&proxy, &server, RetryPolicy { base: Duration::from_millis(10), ..RetryPolicy::default() });
    let (events, err) = drain(r.stream(question(24)).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served(&events), Some("steady"));
    assert!(text(&events).contains("Paris"), "{}", text(&events));
    assert_eq!(proxy.count(), 3, "one attempt and two retries");
    let flaky = r.status().into_iter().find(|s| s.name == "flaky").unwrap();
    assert_eq!(
        (flaky.state, flaky.calls, flaky.failures),
        (BreakerState::Closed, 1, 1),
        "one failed request"
    );

    // Five failed requests (every one of them) open the breaker.
    for _ in 0..4 {
        let (events, _) = drain(r.stream(question(8)).await.unwrap()).await;
        assert_eq!(served(&events), Some("steady"));
    }
    assert_eq!(proxy.count(), 15);
    let flaky = r.status().into_iter().find(|s| s.name == "flaky").unwrap();
    assert_eq!(flaky.state, BreakerState::Open, "{flaky:?}");

    // While open, the primary is not even tried.
    let (events, _) = drain(r.stream(question(8)).await.unwrap()).await;
    assert_eq!(served(&events), Some("steady"));
    assert_eq!(proxy.count(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_a_429_is_honoured() {
    let (server, proxy) = start([Fault::status_retry_after(429, RetryAfter::Seconds(1))]).await;
    let r = router(&proxy, &server, RetryPolicy::default());
    let started = std::time::Instant::now();
    let (events, err) = drain(r.stream(question(8)).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served(&events), Some("flaky"));
    assert!(started.elapsed() >= Duration::from_secs(1), "the retry waited for Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_and_garbage_fall_over_without_a_retry() {
    for fault in [Fault::Refuse, Fault::Garbage] {
        let (server, proxy) = start([]).await;
        proxy.set_default(fault.clone());
        let r = router(&proxy, &server, RetryPolicy { retries: 0, ..RetryPolicy::default() });
        let (events, err) = drain(r.stream(question(8)).await.unwrap()).await;
        assert!(err.is_none(), "{fault:?}: {err:?}");
        assert_eq!(served(&events), Some("steady"), "{fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_primary_is_abandoned_at_the_first_token_timeout() {
    let (server, proxy) = start([Fault::stall(Duration::from_secs(60))]).await;
    let r = router(&proxy, &server, RetryPolicy::default());
    let (events, err) = drain(r.stream(question(8)).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served(&events), Some("steady"));
    assert_eq!(proxy.count(), 1, "not retried: it would stall again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_after_it_began_is_an_error_with_the_partial_text_and_no_fallback() {
    let (server, proxy) = start([Fault::DropAfter { bytes: 900 }]).await;
    let r = router(&proxy, &server, RetryPolicy::default());
    let (events, err) = drain(r.stream(question(64)).await.unwrap()).await;
    assert_eq!(served(&events), Some("flaky"));
    assert!(!text(&events).is_empty(), "some text arrived before the cut");
    let err = err.expect("the cut ends the stream with an error");
    assert!(matches!(err.kind, ErrorKind::Connect | ErrorKind::Protocol), "{err:?}");
    assert_eq!(proxy.count(), 1);
}
