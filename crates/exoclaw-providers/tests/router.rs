//! The router's decisions against scripted in-process providers, on paused virtual time: routing,
//! transparent fallback before the first event, errors after it, retries and Retry-After, the
//! circuit breaker, the deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::{ErrorKind, Provider, ProviderError};
use exoclaw_providers::router::{BreakerState, RetryPolicy, Router, Routes};
use exoclaw_testkit::provider::{Outcome, ScriptedProvider};
use exoclaw_types::{ChatRequest, Message, StreamEvent};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A router over `primary` and `backup`, routing `m` to `primary/m` with `backup/b` as fallback.
fn router(primary: &Arc<ScriptedProvider>, backup: &Arc<ScriptedProvider>, retry: RetryPolicy) -> Router {
    let builder = Router::builder("router")
        .retry(retry)
        .seed(7)
        .first_token_timeout(Duration::from_millis(500))
        .provider(primary.clone(), false)
        .provider(backup.clone(), false);
    let routes =
        Routes::new(builder.provider_names()).alias("m", "primary/m").fallbacks("m", &["backup/b"]).unwrap();
    builder.build(routes)
}

fn request() -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("hi")])
}

/// Every event of the answer, or where it failed.
async fn answer(router: &Router) -> Result<(Vec<StreamEvent>, Option<ProviderError>), ProviderError> {
    let mut stream = router.stream(request()).await?;
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(err) => return Ok((events, Some(err))),
        }
    }
    Ok((events, None))
}

use exoclaw_testkit::conformance::text_of as text;

fn served(events: &[StreamEvent]) -> Option<String> {
    events.iter().find_map(|e| match e {
        StreamEvent::Served { provider, model } => Some(format!("{provider}/{model}")),
        _ => None,
    })
}

fn scripted(name: &str, script: impl IntoIterator<Item = Outcome>) -> Arc<ScriptedProvider> {
    Arc::new(ScriptedProvider::new(name, script))
}

#[tokio::test(start_paused = true)]
async fn a_failing_primary_is_retried_then_the_fallback_answers_transparently() {
    let primary =
        Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(ErrorKind::Server)));
    let backup = scripted("backup", [Outcome::Text("from the backup".into())]);
    let r = router(&primary, &backup, RetryPolicy { retries: 2, ..RetryPolicy::default() });
    let (events, err) = answer(&r).await.unwrap();
    assert!(err.is_none());
    assert_eq!(text(&events), "from the backup");
    assert_eq!(served(&events).as_deref(), Some("backup/b"), "the answer names who served it");
    assert!(matches!(events[0], StreamEvent::Served { .. }), "Served comes first");
    assert_eq!(primary.calls(), 3, "the first attempt and two retries");
    assert_eq!(primary.models(), ["m", "m", "m"]);
    assert_eq!(backup.models(), ["b"], "the fallback gets its own model name");
}

#[tokio::test(start_paused = true)]
async fn an_error_as_the_first_stream_item_also_falls_over() {
    let primary = scripted("primary", [Outcome::FailFirst(ErrorKind::Protocol)]);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::none());
    let (events, err) = answer(&r).await.unwrap();
    assert!(err.is_none());
    assert_eq!(served(&events).as_deref(), Some("backup/b"));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_primary_falls_over_after_the_first_token_timeout_without_a_retry() {
    let primary = scripted("primary", [Outcome::Stall, Outcome::Stall, Outcome::Stall]);
    let backup = scripted("backup", [Outcome::Text("quick".into())]);
    let r = router(&primary, &backup, RetryPolicy::default());
    let started = Instant::now();
    let (events, _) = answer(&r).await.unwrap();
    assert_eq!(text(&events), "quick");
    assert_eq!(started.elapsed(), Duration::from_millis(500), "exactly the first-token timeout");
    assert_eq!(primary.calls(), 1, "a stalled provider is not asked again while a fallback exists");
}

#[tokio::test(start_paused = true)]
async fn after_the_first_event_an_error_reaches_the_caller_with_the_partial_text_once() {
    let primary = scripted("primary", [Outcome::TextThenFail("half an answer".into(), ErrorKind::Connect)]);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let (events, err) = answer(&r).await.unwrap();
    assert_eq!(text(&events), "half an answer", "never duplicated, never replaced");
    assert_eq!(err.unwrap().kind, ErrorKind::Connect);
    assert_eq!(backup.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_bad_request_is_neither_retried_nor_sent_elsewhere() {
    let primary = scripted("primary", [Outcome::FailOpen(ErrorKind::InvalidRequest)]);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let err = answer(&r).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert_eq!((primary.calls(), backup.calls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_falls_back_at_once_and_does_not_count_against_the_breaker() {
    let primary = scripted("primary", [Outcome::FailOpen(ErrorKind::Auth)]);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let (events, _) = answer(&r).await.unwrap();
    assert_eq!(served(&events).as_deref(), Some("backup/b"));
    assert_eq!(primary.calls(), 1);
    assert_eq!(r.status()[1].failures, 0, "{:?}", r.status());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_for_and_a_too_long_one_sends_the_request_elsewhere() {
    let limited =
        |secs| Outcome::FailOpen(ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(secs)) });
    let primary = scripted("primary", [limited(2), Outcome::Text("after the wait".into())]);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let started = Instant::now();
    let (events, _) = answer(&r).await.unwrap();
    assert_eq!(text(&events), "after the wait");
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    let primary = scripted("primary", [limited(600)]);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let started = Instant::now();
    let (events, _) = answer(&r).await.unwrap();
    assert_eq!(served(&events).as_deref(), Some("backup/b"));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_skipped_at_once_and_half_open_admits_one_probe() {
    let primary =
        Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(ErrorKind::Connect)));
    let backup = scripted("backup", []);
    let r = Arc::new(router(&primary, &backup, RetryPolicy::none()));
    for _ in 0..5 {
        answer(&r).await.unwrap();
    }
    assert_eq!(primary.calls(), 5);
    let status = r.status();
    let primary_status = status.iter().find(|s| s.name == "primary").unwrap();
    assert_eq!(primary_status.state, BreakerState::Open, "five failed requests, all of them");
    assert_eq!((primary_status.calls, primary_status.failures), (5, 5));
    assert!(primary_status.last_error.as_deref().unwrap().contains("connect"), "{primary_status:?}");

    let started = Instant::now();
    answer(&r).await.unwrap();
    assert_eq!(primary.calls(), 5, "skipped without a call");
    assert_eq!(started.elapsed(), Duration::ZERO, "skipped at once");

    // After the cool-down, many concurrent requests: exactly one probes the primary.
    tokio::time::advance(Duration::from_secs(31)).await;
    let answers = futures::future::join_all((0..10).map(|_| answer(&r))).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(primary.calls(), 6, "one probe");
    assert_eq!(r.status().iter().find(|s| s.name == "primary").unwrap().state, BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_successful_probe_closes_the_breaker() {
    let primary = scripted("primary", (0..5).map(|_| Outcome::FailOpen(ErrorKind::Server)));
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::none());
    for _ in 0..5 {
        answer(&r).await.unwrap();
    }
    assert_eq!(r.status().iter().find(|s| s.name == "primary").unwrap().state, BreakerState::Open);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (events, _) = answer(&r).await.unwrap();
    assert_eq!(served(&events).as_deref(), Some("primary/m"), "the probe succeeded");
    assert_eq!(r.status().iter().find(|s| s.name == "primary").unwrap().state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_all_attempts() {
    let primary =
        Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(ErrorKind::Overloaded)));
    let backup =
        Arc::new(ScriptedProvider::new("backup", []).with_default(Outcome::FailOpen(ErrorKind::Overloaded)));
    let policy = RetryPolicy {
        retries: 100,
        base: Duration::from_millis(400),
        cap: Duration::from_secs(2),
        deadline: Duration::from_secs(3),
        ..RetryPolicy::default()
    };
    let r = router(&primary, &backup, policy);
    let started = Instant::now();
    let err = answer(&r).await.unwrap_err();
    assert!(started.elapsed() <= Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert!(err.message.contains("no provider could answer `m`"), "{}", err.message);
    assert!(err.message.contains("primary/m") && err.message.contains("backup/b"), "{}", err.message);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_model_is_a_clear_error() {
    let primary = scripted("primary", []);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let err = r.stream(ChatRequest::new("gpt-9", vec![Message::user("hi")])).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::ModelNotFound);
    assert!(
        err.message.contains("aliases: m") && err.message.contains("providers: backup, primary"),
        "{}",
        err.message
    );
}

/// The resilience target as a count, not a timing: 30% of the primary's calls fail with a
/// 5xx, the fallback is healthy, and at least 999 of 1,000 turns succeed.
#[tokio::test(start_paused = true)]
async fn with_30_percent_failures_on_the_primary_999_of_1000_turns_succeed() {
    let mut rng = fastrand::Rng::with_seed(42);
    let script: Vec<Outcome> =
        (0..4_000)
            .map(|_| {
                if rng.f64() < 0.3 {
                    Outcome::FailOpen(ErrorKind::Server)
                } else {
                    Outcome::Text("ok".into())
                }
            })
            .collect();
    let primary = scripted("primary", script);
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    let mut ok = 0;
    for _ in 0..1_000 {
        if let Ok((events, None)) = answer(&r).await
            && text(&events) == "ok"
        {
            ok += 1;
        }
    }
    assert!(ok >= 999, "{ok} of 1000");
}

#[tokio::test(start_paused = true)]
async fn with_no_fallback_left_a_dropped_connection_is_retried() {
    let only = scripted("only", [Outcome::FailOpen(ErrorKind::Connect), Outcome::Text("second try".into())]);
    let builder = Router::builder("router").seed(3).provider(only.clone(), false);
    let r = builder.build(Routes::new(["only"]));
    let mut stream = r.stream(ChatRequest::new("only/x", vec![Message::user("hi")])).await.unwrap();
    let mut text = String::new();
    while let Some(Ok(event)) = stream.next().await {
        if let StreamEvent::TextDelta { text: t } = event {
            text.push_str(&t);
        }
    }
    assert_eq!(text, "second try");
    assert_eq!(only.calls(), 2);
}

/// A provider whose health check fails while `down` is set.
#[derive(Debug)]
struct Flaky {
    down: std::sync::atomic::AtomicBool,
    checks: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Provider for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<exoclaw_core::EventStream, ProviderError> {
        Err(ProviderError::new(ErrorKind::Server, "flaky", "not used"))
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(ProviderError::new(ErrorKind::Connect, "flaky", "connection refused"))
        } else {
            Ok(())
        }
    }
}

/// The same, under another name, registered without health checks.
#[derive(Debug)]
struct Paid(Flaky);

#[async_trait::async_trait]
impl Provider for Paid {
    fn name(&self) -> &str {
        "paid"
    }

    async fn stream(&self, request: ChatRequest) -> Result<exoclaw_core::EventStream, ProviderError> {
        self.0.stream(request).await
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.0.health().await
    }
}

#[tokio::test(start_paused = true)]
async fn periodic_health_checks_feed_the_breaker_and_stop_when_cancelled() {
    let flaky = Arc::new(Flaky { down: true.into(), checks: 0.into() });
    let paid = Arc::new(Paid(Flaky { down: false.into(), checks: 0.into() }));
    let r = Arc::new(
        Router::builder("router")
            .breaker(2, Duration::from_secs(30))
            .provider(flaky.clone(), true)
            .provider(paid.clone(), false)
            .build(Routes::new(["flaky", "paid"])),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let (rounds, mut reported) = tokio::sync::mpsc::unbounded_channel();
    let task = r.spawn_health_checks(Duration::from_secs(10), cancel.clone(), move |round| {
        let _ = rounds.send(round);
    });
    let state = |r: &Router| r.status().into_iter().find(|s| s.name == "flaky").unwrap().state;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(state(&r), BreakerState::Open, "two failed checks (at 0 s and 10 s) open it");
    let first = reported.recv().await.unwrap();
    assert_eq!(first.len(), 1, "only the provider with health checks on is checked: {first:?}");
    assert_eq!(first[0].provider, "flaky");
    assert!(first[0].error.as_deref().is_some_and(|e| e.contains("connection refused")), "{first:?}");
    flaky.down.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(state(&r), BreakerState::Closed, "a good check closes it");
    let last = std::iter::from_fn(|| reported.try_recv().ok()).last().unwrap();
    assert_eq!(last[0].error, None, "the good check is reported as such: {last:?}");
    assert_eq!(paid.0.checks.load(std::sync::atomic::Ordering::SeqCst), 0, "paid APIs are left alone");
    cancel.cancel();
    task.await.unwrap();
    let checks = flaky.checks.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(flaky.checks.load(std::sync::atomic::Ordering::SeqCst), checks, "no checks after cancel");
}

/// Answers only whole (`complete`); a stream request is refused, so a test sees which was asked.
#[derive(Debug)]
struct WholeOnly;

#[async_trait::async_trait]
impl Provider for WholeOnly {
    fn name(&self) -> &str {
        "backup"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<exoclaw_core::EventStream, ProviderError> {
        Err(ProviderError::new(ErrorKind::InvalidRequest, "backup", "asked for a stream"))
    }

    async fn complete(&self, request: ChatRequest) -> Result<exoclaw_types::ChatResponse, ProviderError> {
        Ok(exoclaw_types::ChatResponse {
            message: Message::assistant(format!("whole answer from {}", request.model.0)),
            stop_reason: exoclaw_types::StopReason::EndTurn,
            usage: exoclaw_types::Usage::default(),
            served: None,
        })
    }
}

#[tokio::test]
async fn a_whole_answer_is_asked_for_whole_and_falls_over_like_a_stream() {
    let primary = scripted("primary", [Outcome::FailOpen(ErrorKind::Overloaded)]);
    let builder = Router::builder("router")
        .retry(RetryPolicy::none())
        .provider(primary.clone(), false)
        .provider(Arc::new(WholeOnly), false);
    let routes =
        Routes::new(builder.provider_names()).alias("m", "primary/m").fallbacks("m", &["backup/b"]).unwrap();
    let response = builder.build(routes).complete(request()).await.unwrap();
    assert_eq!(response.message.text(), "whole answer from b");
    assert_eq!(response.served.map(|s| s.to_string()).as_deref(), Some("backup/b"), "it names who served");
}

/// The partial outage, in process: the primary and its fallback each fail 30 % of
/// attempts at random (seeded), two retries, 8 requests at a time. A request is lost only when all
/// six of its attempts fail (0.3^6 ≈ 0.07 %); before, three failures in a row opened a breaker,
/// and once both were open every request failed at once.
#[tokio::test(start_paused = true)]
async fn thirty_percent_failures_on_every_provider_keep_both_breakers_closed() {
    let flaky = |name: &str, seed: u64| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let script: Vec<Outcome> = (0..4_000)
            .map(|_| {
                if rng.f64() < 0.3 {
                    Outcome::FailOpen(ErrorKind::Server)
                } else {
                    Outcome::Text("ok".into())
                }
            })
            .collect();
        scripted(name, script)
    };
    let (primary, backup) = (flaky("primary", 11), flaky("backup", 12));
    let r = router(&primary, &backup, RetryPolicy::default());
    let results: Vec<bool> = futures::stream::iter(0..1_000)
        .map(|_| async { matches!(answer(&r).await, Ok((events, None)) if text(&events) == "ok") })
        .buffer_unordered(8)
        .collect()
        .await;
    let ok = results.iter().filter(|ok| **ok).count();
    assert!(ok >= 999, "{ok} of 1000 succeeded: {:?}", r.status());
    for status in r.status() {
        assert_eq!(status.state, BreakerState::Closed, "{status:?}");
    }
    assert!(primary.calls() > 1_200 && backup.calls() > 0, "both were failing: {}", primary.calls());
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_is_down_opens_quickly_and_the_fallback_serves_without_trying_it() {
    let primary =
        Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(ErrorKind::Server)));
    let backup = scripted("backup", []);
    let r = router(&primary, &backup, RetryPolicy::default());
    for _ in 0..100 {
        let (events, _) = answer(&r).await.unwrap();
        assert_eq!(served(&events).as_deref(), Some("backup/b"));
    }
    assert_eq!(primary.calls(), 15, "five requests of three attempts each, then no more");
    let status = r.status().into_iter().find(|s| s.name == "primary").unwrap();
    assert_eq!(status.state, BreakerState::Open, "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn when_every_provider_on_the_route_is_open_each_is_tried_anyway_in_order() {
    let primary =
        Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(ErrorKind::Server)));
    let backup = scripted("backup", (0..6).map(|_| Outcome::FailOpen(ErrorKind::Server)));
    let r = router(&primary, &backup, RetryPolicy::none());
    for _ in 0..5 {
        assert!(answer(&r).await.is_err());
    }
    assert!(r.status().iter().all(|s| s.state == BreakerState::Open), "{:?}", r.status());

    // Both still down: each is tried once more, in order, and the error says so.
    let err = answer(&r).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server, "the last provider's failure, not a refusal: {err}");
    assert!(err.message.contains("primary/m, tried though its breaker is open"), "{}", err.message);
    assert_eq!((primary.calls(), backup.calls()), (6, 6));

    // The backup is back (its script is spent): with both breakers still open, the next request
    // tries the primary first, then gets the backup's answer, which closes the backup's breaker.
    let (events, err) = answer(&r).await.unwrap();
    assert!(err.is_none());
    assert_eq!(served(&events).as_deref(), Some("backup/b"));
    assert_eq!((primary.calls(), backup.calls()), (7, 7));
    let state = |name: &str| r.status().into_iter().find(|s| s.name == name).unwrap().state;
    assert_eq!((state("primary"), state("backup")), (BreakerState::Open, BreakerState::Closed));
    // From now on the backup serves without the primary being asked.
    answer(&r).await.unwrap();
    assert_eq!((primary.calls(), backup.calls()), (7, 8));
}

#[tokio::test(start_paused = true)]
async fn failures_that_say_nothing_about_the_server_never_count_against_its_breaker() {
    for kind in [
        ErrorKind::Auth,
        ErrorKind::Permission,
        ErrorKind::ModelNotFound,
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLength,
        ErrorKind::Cancelled,
    ] {
        let primary = Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(kind)));
        let backup = scripted("backup", []);
        let r = router(&primary, &backup, RetryPolicy::default());
        for _ in 0..50 {
            let _ = answer(&r).await;
        }
        assert_eq!(primary.calls(), 50, "{kind}: never skipped");
        let status = r.status().into_iter().find(|s| s.name == "primary").unwrap();
        assert_eq!((status.state, status.calls, status.failures), (BreakerState::Closed, 0, 0), "{kind}");
    }
    // The same run with server failures opens it: the loop above could have seen it open.
    let primary =
        Arc::new(ScriptedProvider::new("primary", []).with_default(Outcome::FailOpen(ErrorKind::Overloaded)));
    let r = router(&primary, &scripted("backup", []), RetryPolicy::default());
    for _ in 0..50 {
        let _ = answer(&r).await;
    }
    assert_eq!(r.status().into_iter().find(|s| s.name == "primary").unwrap().state, BreakerState::Open);
}
