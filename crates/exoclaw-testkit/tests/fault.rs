//! The fault-injection proxy, seen from a reqwest client (what exoclaw's providers use), in front of
//! a scripted upstream — and once in front of a real llama.cpp `llama-server`.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use exoclaw_testkit::{
    fault::{Fault, FaultProxy, GARBAGE, Handled, RetryAfter},
    peers::LlamaServer,
    server::{Ending, Reply, ScriptedServer},
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// Bounds every exchange, so that a proxy bug fails a test instead of hanging it.
const BOUND: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(BOUND).build().unwrap()
}

fn ok(n: usize) -> Vec<Reply> {
    (0..n).map(|_| Reply::text(200, "ok")).collect()
}

/// Reads a body chunk by chunk until it ends or fails: what arrived, and the error if any.
async fn read_all(mut response: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut got = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

#[tokio::test]
async fn pass_forwards_the_request_and_relays_the_reply() {
    let upstream =
        ScriptedServer::start([Reply::json(201, &json!({"ok": true})).header("x-upstream", "yes")]).await;
    let proxy = FaultProxy::start(&upstream.url(), []).await;
    let response = client()
        .post(format!("{}/v1/chat/completions?alt=sse", proxy.url()))
        .bearer_auth("sk-test")
        .header("x-custom", "1")
        .json(&json!({"model": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-upstream"], "yes");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"ok": true}));

    let seen = upstream.request();
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    assert_eq!(seen.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(seen.header("x-custom"), Some("1"));
    assert_eq!(seen.body, json!({"model": "x"}));
    // The upstream sees itself as the host, not the proxy.
    assert_eq!(seen.header("host"), upstream.url().strip_prefix("http://"));
    assert_eq!(
        proxy.requests(),
        [Handled {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            query: Some("alt=sse".into()),
            fault: Fault::Pass,
        }]
    );
}

#[tokio::test]
async fn pass_streams_a_chunk_before_the_upstream_has_finished() {
    // The upstream sends one event and then never ends its body: a buffering proxy would deliver
    // nothing at all.
    let upstream = ScriptedServer::start([Reply::sse(["data: 1\n\n"]).ending(Ending::Hang)]).await;
    let proxy = FaultProxy::start(&upstream.url(), []).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut response = client.get(format!("{}/events", proxy.url())).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let first =
        tokio::time::timeout(BOUND, response.chunk()).await.expect("first chunk while upstream is open");
    assert_eq!(first.unwrap(), Some(Bytes::from_static(b"data: 1\n\n")));
    // Hanging up on the proxy hangs up on the upstream.
    drop(response);
    assert!(upstream.hung_up(BOUND).await, "the proxy kept the upstream stream open");
}

#[tokio::test]
async fn pass_relays_a_paced_event_stream_whole_and_in_pieces() {
    let events = ["data: {\"n\":1}\n\n", "data: {\"n\":2}\n\n", "data: {\"n\":3}\n\n", "data: [DONE]\n\n"];
    let upstream = ScriptedServer::start([Reply::sse(events).paced(Duration::from_millis(100))]).await;
    let proxy = FaultProxy::start(&upstream.url(), []).await;
    let mut response = client().get(format!("{}/events", proxy.url())).send().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks.push(chunk);
    }
    assert_eq!(chunks.concat(), events.concat().as_bytes());
    assert!(chunks.len() > 1, "the stream arrived as one piece: {chunks:?}");
}

#[tokio::test]
async fn status_faults_answer_at_once_with_retry_after() {
    let date = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let upstream = ScriptedServer::start(ok(1)).await;
    let proxy = FaultProxy::start(
        &upstream.url(),
        [
            Fault::status_retry_after(503, RetryAfter::Seconds(7)),
            Fault::status_retry_after(429, RetryAfter::Date(date)),
            Fault::status(500),
        ],
    )
    .await;
    let client = client();
    let url = format!("{}/v1/chat/completions", proxy.url());

    let response = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("overloaded"), "{body}");

    let response = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "Sun, 06 Nov 1994 08:49:37 GMT");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let response = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.headers().get("retry-after").is_none());

    assert!(upstream.requests().is_empty(), "an injected status must not reach the upstream");
}

#[tokio::test]
async fn refuse_fails_the_request_with_a_connection_error() {
    let upstream = ScriptedServer::start(ok(1)).await;
    let proxy = FaultProxy::start(&upstream.url(), [Fault::Refuse]).await;
    let client = client();
    let url = format!("{}/v1/chat/completions", proxy.url());

    let error = client.post(&url).body("{}").send().await.unwrap_err();
    // The TCP connect succeeded, so reqwest reports a failed request, not a failed connect; the
    // cause is the reset.
    assert!(error.is_request(), "{error:?}");
    assert!(!error.is_connect() && !error.is_timeout(), "{error:?}");
    assert!(format!("{error:?}").to_lowercase().contains("reset"), "{error:?}");
    assert!(upstream.requests().is_empty());

    // The proxy itself is fine: the next request passes.
    let response = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(proxy.faults(), [Fault::Refuse, Fault::Pass]);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn stall_sends_nothing_until_the_client_times_out() {
    let upstream = ScriptedServer::start(ok(1)).await;
    let proxy = FaultProxy::start(&upstream.url(), [Fault::stall(Duration::MAX)]).await;
    let impatient =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    let error = impatient.get(format!("{}/v1/models", proxy.url())).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn stall_then_passes_through() {
    let upstream = ScriptedServer::start([Reply::text(200, "late")]).await;
    let proxy = FaultProxy::start(&upstream.url(), [Fault::stall(Duration::from_millis(200))]).await;
    let response = client().get(format!("{}/v1/models", proxy.url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "late");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn drop_after_cuts_the_body_after_so_many_bytes() {
    let events = ["data: one\n\n", "data: two\n\n", "data: three\n\n"];
    let whole = events.concat();
    let upstream = ScriptedServer::start([Reply::sse(events), Reply::sse(events)]).await;
    let proxy = FaultProxy::start(
        &upstream.url(),
        [Fault::DropAfter { bytes: 15 }, Fault::DropAfter { bytes: 1000 }],
    )
    .await;
    let client = client();

    let response = client.get(format!("{}/events", proxy.url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (got, error) = read_all(response).await;
    assert_eq!(got, &whole.as_bytes()[..15]);
    assert_cut(&error.expect("the body must fail, not end"));

    // Asking for more than the upstream sends: all of it arrives, and the body still fails; the
    // same through `bytes_stream`, as exoclaw's providers read.
    let response = client.get(format!("{}/events", proxy.url())).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let mut got = Vec::new();
    let error = loop {
        match stream.next().await {
            Some(Ok(chunk)) => got.extend_from_slice(&chunk),
            Some(Err(e)) => break e,
            None => panic!("the body must fail, not end"),
        }
    };
    assert_eq!(got, whole.as_bytes());
    assert_cut(&error);
}

/// A cut body, as reqwest reports it (`chunk` and `bytes_stream` alike): a decode error whose
/// source is a body error, itself hyper's "unexpected EOF during chunk size line".
fn assert_cut(error: &reqwest::Error) {
    assert!(error.is_decode(), "{error:?}");
    let source = std::error::Error::source(error).and_then(|s| s.downcast_ref::<reqwest::Error>());
    assert!(source.is_some_and(reqwest::Error::is_body), "{error:?}");
    assert!(format!("{error:?}").contains("unexpected EOF"), "{error:?}");
}

#[tokio::test]
async fn garbage_is_a_200_event_stream_that_is_not_one() {
    let upstream = ScriptedServer::start(ok(1)).await;
    let proxy = FaultProxy::start(&upstream.url(), [Fault::Garbage]).await;
    let response =
        client().post(format!("{}/v1/chat/completions", proxy.url())).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.bytes().await.unwrap();
    assert_eq!(body, GARBAGE);
    assert!(std::str::from_utf8(&body).is_err());
    assert!(!body.split(|b| *b == b'\n').any(|line| line.starts_with(b"data:")));
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn the_script_runs_in_order_then_the_default() {
    let upstream = ScriptedServer::start(ok(10)).await;
    let proxy =
        FaultProxy::start(&upstream.url(), [Fault::status(500), Fault::Pass, Fault::status(429)]).await;
    let client = client();
    let mut n = 0;
    let mut next = async || {
        n += 1;
        client.get(format!("{}/r{n}", proxy.url())).send().await.unwrap().status().as_u16()
    };
    assert_eq!([next().await, next().await, next().await, next().await], [500, 200, 429, 200]);
    proxy.set_default(Fault::status(503));
    assert_eq!(next().await, 503);
    proxy.push(Fault::Garbage);
    proxy.push(Fault::Pass);
    assert_eq!([next().await, next().await, next().await], [200, 200, 503]);

    let s = Fault::status;
    assert_eq!(
        proxy.faults(),
        [s(500), Fault::Pass, s(429), Fault::Pass, s(503), Fault::Garbage, Fault::Pass, s(503)]
    );
    let paths: Vec<String> = proxy.requests().into_iter().map(|h| h.path).collect();
    assert_eq!(paths, (1..=8).map(|i| format!("/r{i}")).collect::<Vec<_>>());
    assert_eq!(proxy.count(), 8);
    let upstream_paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(upstream_paths, ["/r2", "/r4", "/r7"]);
}

/// `n` sequential requests through a 30 %-failing proxy: the recorded faults and the statuses seen.
async fn failing_run(seed: u64, n: usize) -> (Vec<Fault>, Vec<u16>) {
    let upstream = ScriptedServer::start(ok(n)).await;
    let proxy = FaultProxy::with_failure_rate(&upstream.url(), 0.3, Fault::status(503), seed).await;
    let client = client();
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses
            .push(client.get(format!("{}/v1/models", proxy.url())).send().await.unwrap().status().as_u16());
    }
    (proxy.faults(), statuses)
}

#[tokio::test]
async fn a_failure_rate_is_reproducible_and_close_to_the_rate() {
    let (faults, statuses) = failing_run(42, 1000).await;
    assert_eq!(faults.len(), 1000);
    let failed = faults.iter().filter(|f| **f == Fault::status(503)).count();
    assert_eq!(failed + faults.iter().filter(|f| **f == Fault::Pass).count(), 1000);
    assert!((250..=350).contains(&failed), "{failed} of 1000 failed, asked for 30 %");
    // What the client saw is what was recorded.
    let expected: Vec<u16> = faults.iter().map(|f| if *f == Fault::Pass { 200 } else { 503 }).collect();
    assert_eq!(statuses, expected);

    assert_eq!(failing_run(42, 1000).await.0, faults, "the same seed must give the same sequence");
    assert_ne!(failing_run(43, 100).await.0, faults[..100], "another seed should differ");
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections_and_closes_its_port() {
    let upstream = ScriptedServer::start(ok(1)).await;
    let proxy = FaultProxy::start(&upstream.url(), [Fault::Pass, Fault::stall(Duration::MAX)]).await;
    let url = format!("{}/v1/models", proxy.url());
    let client = client();
    // Leaves an idle keep-alive connection in the client's pool.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let stalled = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await }
    });
    tokio::time::timeout(BOUND, async {
        while proxy.count() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second request reaches the proxy");
    drop(proxy);
    let error = stalled.await.unwrap().unwrap_err();
    assert!(
        !error.is_timeout(),
        "the stalled request should fail when the proxy goes, not time out: {error:?}"
    );
    let error = client.get(&url).send().await.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    let fresh = reqwest::Client::builder().no_proxy().timeout(BOUND).build().unwrap();
    assert!(fresh.get(&url).send().await.unwrap_err().is_connect());
}

#[tokio::test]
async fn a_real_llama_server_streams_through_after_a_503() {
    let llama = LlamaServer::start();
    let proxy = FaultProxy::start(&llama.url(), [Fault::status(503)]).await;
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().unwrap();
    let url = format!("{}/v1/chat/completions", proxy.url());
    let body = json!({"model": "x", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8,
                      "stream": true});

    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 503);

    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let (got, error) = read_all(response).await;
    assert!(error.is_none(), "{error:?}");
    let text = String::from_utf8(got).unwrap();
    let data: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data.iter().filter_map(|d| serde_json::from_str(d).ok()).collect();
    assert!(chunks.len() >= 2, "{text}");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"), "{text}");
    assert!(chunks.iter().any(|c| c["choices"][0]["delta"]["content"].is_string()), "{text}");
    assert_eq!(proxy.faults(), [Fault::status(503), Fault::Pass]);
}
