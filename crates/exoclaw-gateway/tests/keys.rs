//! Virtual keys, metrics, webhooks and shutdown, driven over real HTTP against the app with an
//! in-memory store: what an operator and a key holder see.

#![allow(clippy::unwrap_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw_core::{EventStream, KeyStore, Metering, NewApiKey, Provider, ProviderError, UsageStore};
use exoclaw_gateway::keys::generate_key;
use exoclaw_gateway::webhook::{SharedSecret, Webhooks};
use exoclaw_gateway::{Gateway, GatewayError, ModelSource, StaticModels, TokenSet, app, serve};
use exoclaw_store::Store;
use exoclaw_types::{ChatRequest, StopReason, StreamEvent, Usage};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Answers "ok" with 1,000 input and 1,000 output tokens: $0.00075 at gpt-4o-mini's price.
#[derive(Debug)]
struct Thousand;

#[async_trait]
impl Provider for Thousand {
    fn name(&self) -> &str {
        "thousand"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, ProviderError> {
        let events = vec![
            StreamEvent::TextDelta { text: "ok".into() },
            StreamEvent::Usage(Usage {
                input_tokens: Some(1000),
                output_tokens: Some(1000),
                ..Usage::default()
            }),
            StreamEvent::Finish { reason: StopReason::EndTurn },
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

/// Two models, both priced as `openai/gpt-4o-mini`.
struct Priced(StaticModels);

impl ModelSource for Priced {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        self.0.provider_for(model)
    }

    fn models(&self) -> Vec<String> {
        self.0.models()
    }

    fn billed_as(&self, _model: &str) -> Option<(String, String)> {
        Some(("openai".into(), "gpt-4o-mini".into()))
    }
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    store: Store,
    gateway: Arc<Gateway>,
}

async fn start(tokens: TokenSet, webhooks: Webhooks) -> Fixture {
    start_keys(tokens, webhooks, true).await
}

/// A gateway whose keys are required from the start, or (`required` false) once one is made.
async fn start_keys(tokens: TokenSet, webhooks: Webhooks, required: bool) -> Fixture {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let provider: Arc<dyn Provider> = Arc::new(Thousand);
    let source = StaticModels::new().with("fast", provider.clone(), "m").with("smart", provider, "m");
    let shared = Arc::new(store.clone());
    let builder = Gateway::builder(Arc::new(Priced(source))).tokens(tokens);
    let builder =
        if required { builder.keys(shared.clone()) } else { builder.keys_once_made(shared.clone()) };
    let gateway = Arc::new(
        builder
            .store(shared.clone(), shared)
            .metering(Arc::new(Metering::new(Default::default(), Default::default())))
            .webhooks(webhooks)
            .build(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = gateway.clone();
    tokio::spawn(async move { axum::serve(listener, app(serving)).await });
    Fixture { base, client: reqwest::Client::new(), store, gateway }
}

impl Fixture {
    async fn key(&self, name: &str, models: &[&str], budget_usd: Option<f64>, rpm: Option<u32>) -> String {
        let key = generate_key().unwrap();
        self.store
            .create_key(NewApiKey {
                name: name.into(),
                hash: key.hash,
                prefix: key.prefix,
                models: models.iter().map(|m| (*m).to_owned()).collect(),
                budget_usd,
                rpm,
            })
            .await
            .unwrap();
        key.secret
    }

    async fn chat(&self, token: Option<&str>, model: &str) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

#[tokio::test]
async fn an_open_gateway_requires_keys_soon_after_the_first_is_made() {
    let f = start_keys(TokenSet::open(), Webhooks::new(), false).await;
    assert!(!f.gateway.requires_auth());
    let (status, body) = f.chat(None, "fast").await;
    assert_eq!(status, 200, "no key made yet, so none is needed: {body}");
    let key = f.key("first", &["fast"], None, None).await;
    tokio::time::sleep(exoclaw_gateway::KEY_CHECK_INTERVAL + Duration::from_millis(100)).await;
    let (status, body) = f.chat(None, "fast").await;
    assert_eq!(status, 401, "a key exists now, so a request without one is refused: {body}");
    assert!(f.gateway.requires_auth());
    let (status, body) = f.chat(Some(&key), "fast").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_key_reaches_only_its_models_and_lists_only_those() {
    let f = start(TokenSet::open(), Webhooks::new()).await;
    let key = f.key("ci", &["fast"], None, None).await;
    let (status, body) = f.chat(Some(&key), "fast").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "ok");
    let (status, body) = f.chat(Some(&key), "smart").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert!(body["error"]["message"].as_str().unwrap().contains("may use: fast"));
    let models: Value = f
        .client
        .get(format!("{}/v1/models", f.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["fast"]);
}

#[tokio::test]
async fn with_keys_a_token_is_required_and_wrong_or_revoked_ones_are_refused() {
    let f = start(TokenSet::open(), Webhooks::new()).await;
    let key = f.key("temp", &[], None, None).await;
    let (status, body) = f.chat(None, "fast").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let (status, _) = f.chat(Some("exo-not-a-key"), "fast").await;
    assert_eq!(status, 401);
    assert_eq!(f.chat(Some(&key), "fast").await.0, 200);
    assert!(f.store.revoke_key("temp").await.unwrap());
    // The gateway trusts what it read for at most a second.
    tokio::time::sleep(exoclaw_gateway::keys::KEY_CACHE_TTL + Duration::from_millis(100)).await;
    let (status, body) = f.chat(Some(&key), "fast").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("key_revoked")));
    assert!(!body.to_string().contains(&key), "the key never appears in an error");
}

#[tokio::test]
async fn a_budget_refuses_what_it_cannot_cover_and_the_spend_is_stored() {
    let f = start(TokenSet::open(), Webhooks::new()).await;
    // Each request reserves "hi" (1 token) plus max_tokens 1,000 at gpt-4o-mini's price,
    // $0.00060015, and costs $0.00075: after two, $0.0015 is spent and a third no longer fits.
    let key = f.key("budgeted", &[], Some(0.002), None).await;
    let chat = || {
        f.client
            .post(format!("{}/v1/chat/completions", f.base))
            .bearer_auth(&key)
            .json(&json!({"model": "fast", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(chat().await.unwrap().status(), 200);
    assert_eq!(chat().await.unwrap().status(), 200);
    let response = chat().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("cannot cover this request"), "{body}");
    f.gateway.flush_usage().await;
    let stored = f.store.list_keys().await.unwrap();
    assert!((stored[0].spent_usd - 0.0015).abs() < 1e-9, "{stored:?}");
    let ledger = f.store.usage_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].agent, "api:budgeted");
    assert_eq!(ledger[0].usage.output_tokens, Some(1000));

    // Without max_tokens a request reserves 4,096 answer tokens, more than the key has left.
    let (status, body) = f.chat(Some(&key), "fast").await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("budget_exceeded")), "{body}");
}

#[tokio::test]
async fn a_key_over_its_rate_is_told_when_to_retry() {
    let f = start(TokenSet::open(), Webhooks::new()).await;
    let key = f.key("slow", &[], None, Some(2)).await;
    assert_eq!(f.chat(Some(&key), "fast").await.0, 200);
    assert_eq!(f.chat(Some(&key), "fast").await.0, 200);
    let response = f
        .client
        .post(format!("{}/v1/chat/completions", f.base))
        .bearer_auth(&key)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test]
async fn metrics_count_requests_and_tokens_and_are_for_operators() {
    let f = start(TokenSet::from_tokens(["op"]), Webhooks::new()).await;
    let key = f.key("user", &[], None, None).await;
    assert_eq!(f.chat(Some("op"), "fast").await.0, 200);
    assert_eq!(f.chat(Some(&key), "fast").await.0, 200);
    let get = |token: &str| f.client.get(format!("{}/metrics", f.base)).bearer_auth(token.to_owned()).send();
    assert_eq!(get(&key).await.unwrap().status(), 401);
    let text = get("op").await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"exoclaw_gateway_requests_total{endpoint="/v1/chat/completions",status="200"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"exoclaw_gateway_tokens_total{provider="openai",model="gpt-4o-mini",direction="output"} 2000"#
        ),
        "{text}"
    );
    assert!(text.contains("exoclaw_gateway_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn webhooks_are_404_for_unknown_channels_and_401_unverified() {
    let hooks = Webhooks::new()
        .with("mine", Arc::new(SharedSecret::new("s3cret", |body| json!({"got": body.len()}))));
    let f = start(TokenSet::open(), hooks).await;
    let post = |channel: &str, signature: Option<String>| {
        let mut request = f.client.post(format!("{}/webhook/{channel}", f.base)).body("{\"event\":1}");
        if let Some(signature) = signature {
            request = request.header(SharedSecret::HEADER, signature);
        }
        request.send()
    };
    let unknown = post("slack", None).await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("channels with one: mine"));
    assert_eq!(post("mine", None).await.unwrap().status(), 401);
    assert_eq!(
        post("mine", Some(SharedSecret::sign(b"wrong", b"{\"event\":1}"))).await.unwrap().status(),
        401
    );
    let ok = post("mine", Some(SharedSecret::sign(b"s3cret", b"{\"event\":1}"))).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!({"got": 11}));
}

#[tokio::test]
async fn shutdown_lets_a_running_stream_finish_and_writes_its_usage() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let shared = Arc::new(store.clone());
    let provider: Arc<dyn Provider> = Arc::new(exoclaw_testkit::provider::ScriptedProvider::new(
        "slow",
        [exoclaw_testkit::provider::Outcome::Text("one two three four".into())],
    ));
    let gateway = Arc::new(
        Gateway::builder(Arc::new(StaticModels::new().with("fast", provider, "m")))
            .store(shared.clone(), shared)
            .build(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, gateway.clone(), async move {
        let _ = stopped.await;
    }));
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stop.send(()).unwrap();
    // The stream begun before the signal still completes.
    let text = response.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    server.await.unwrap().unwrap();
    // New connections are refused once it has stopped.
    assert!(reqwest::Client::new().get(format!("{base}/healthz")).send().await.is_err());
    let ledger = store.usage_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(ledger.len(), 1, "the stream's usage was written before serve returned");
}

#[tokio::test]
async fn serve_tells_websocket_clients_it_is_shutting_down() {
    use futures::StreamExt;
    let gateway = Arc::new(Gateway::builder(Arc::new(StaticModels::new())).build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, gateway, async move {
        let _ = stopped.await;
    }));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
    stop.send(()).unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    let note: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(note["method"], "gateway.shutdown", "{note}");
    // And serve returns once the connection is gone, well within the grace period.
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}
