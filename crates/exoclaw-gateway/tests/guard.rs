//! What a web page gets from the gateway: a page that rebinds its own name to 127.0.0.1 (DNS
//! rebinding) is refused on every route of a gateway that needs no token, a page from another
//! site on every gateway, while programs (no `Origin`) and this machine's names are served. Plus
//! the bearer scheme in any case, and `/readyz` saying why it is not ready. Over real HTTP
//! against the app bound on `127.0.0.1:0`.

#![allow(clippy::unwrap_used, clippy::panic)]

use exoclaw_core::Provider;
use exoclaw_gateway::webhook::{SharedSecret, Webhooks};
use exoclaw_gateway::{Gateway, ModelFailure, ModelSource, NotReady, StaticModels, TokenSet, app};
use exoclaw_testkit::provider::{Outcome, ScriptedProvider};
use serde_json::{Value, json};
use std::sync::Arc;

struct Server {
    base: String,
    port: u16,
    client: reqwest::Client,
    provider: Arc<ScriptedProvider>,
}

/// A gateway serving `fast` (always "hello"), `/webhook/x`, with `tokens` and `origins`.
async fn start(tokens: TokenSet, origins: &[&str]) -> Server {
    let provider = Arc::new(ScriptedProvider::new("s", []).with_default(Outcome::Text("hello".into())));
    let shared: Arc<dyn Provider> = provider.clone();
    let webhooks = Webhooks::new().with("x", Arc::new(SharedSecret::new("s3cret", |_| json!({"ok": true}))));
    let gateway = Gateway::builder(Arc::new(StaticModels::new().with("fast", shared, "m")))
        .tokens(tokens)
        .webhooks(webhooks)
        .allowed_origins(origins.iter().map(|o| (*o).to_owned()).collect())
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app(Arc::new(gateway))).await });
    Server { base: format!("http://127.0.0.1:{port}"), port, client: reqwest::Client::new(), provider }
}

/// Each route, as a request a page could make.
fn routes(s: &Server) -> Vec<reqwest::RequestBuilder> {
    let chat = json!({"model": "fast", "messages": [{"role": "user", "content": "spend their keys"}]});
    let body = br#"{"event":"x"}"#.to_vec();
    vec![
        s.client.post(format!("{}/v1/chat/completions", s.base)).json(&chat),
        s.client.get(format!("{}/v1/models", s.base)),
        s.client.get(format!("{}/metrics", s.base)),
        s.client
            .post(format!("{}/webhook/x", s.base))
            .header(SharedSecret::HEADER, SharedSecret::sign(b"s3cret", &body))
            .body(body),
        s.client.get(format!("{}/healthz", s.base)),
    ]
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_rebinding_page_is_refused_on_every_route_of_an_open_gateway() {
    let s = start(TokenSet::open(), &[]).await;
    let evil = format!("evil.example:{}", s.port);
    // What the browser sends for a page on evil.example whose name now points at 127.0.0.1.
    for request in routes(&s) {
        let request = request.header("host", &evil).header("origin", format!("http://{evil}"));
        let (status, body) = send(request).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden_origin", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("allowed_origins") && message.contains(&evil), "says how: {message}");
    }
    // The same page's requests that carry no Origin (a plain navigation, an image) are refused by
    // their Host alone.
    for request in routes(&s) {
        let (status, body) = send(request.header("host", &evil)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden_host")), "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("127.0.0.1") && message.contains("token"), "says what to do: {message}");
    }
    assert_eq!(s.provider.calls(), 0, "no refused request reached the provider");

    // This machine's names are served, with or without a local page's Origin.
    for host in [format!("127.0.0.1:{}", s.port), format!("localhost:{}", s.port), "[::1]".to_owned()] {
        for request in routes(&s) {
            let (status, body) = send(request.header("host", &host)).await;
            assert_eq!(status, 200, "{host}: {body}");
        }
    }
    let local_page = s.client.get(format!("{}/v1/models", s.base)).header("origin", "http://localhost:5173");
    assert_eq!(send(local_page).await.0, 200);
    assert_eq!(s.provider.calls(), 3);
}

#[tokio::test]
async fn an_allowed_origins_host_is_served_on_an_open_gateway() {
    let s = start(TokenSet::open(), &["http://devbox.lan:3000"]).await;
    let page = s
        .client
        .get(format!("{}/v1/models", s.base))
        .header("host", format!("devbox.lan:{}", s.port))
        .header("origin", "http://devbox.lan:3000");
    assert_eq!(send(page).await.0, 200);
    let other = s.client.get(format!("{}/v1/models", s.base)).header("host", "evil.example");
    assert_eq!(send(other).await.0, 403);
}

#[tokio::test]
async fn with_a_token_any_name_is_served_but_a_foreign_page_is_not() {
    let s = start(TokenSet::from_tokens(["sk-test"]), &["https://app.example.com"]).await;
    let models = || s.client.get(format!("{}/v1/models", s.base)).bearer_auth("sk-test");
    // A gateway reached by another name (a proxy, a DNS name): the token is what counts.
    let (status, body) = send(models().header("host", "gw.example.com")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(models().header("origin", "https://evil.example.com")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden_origin")), "{body}");
    assert_eq!(send(models().header("origin", "https://app.example.com")).await.0, 200);
    // Without the token, still 401.
    assert_eq!(send(s.client.get(format!("{}/v1/models", s.base))).await.0, 401);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = start(TokenSet::from_tokens(["sk-test"]), &[]).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let request = s
            .client
            .get(format!("{}/v1/models", s.base))
            .header("authorization", format!("{scheme} sk-test"));
        let (status, body) = send(request).await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let basic = s.client.get(format!("{}/v1/models", s.base)).header("authorization", "Basic c2stdGVzdA==");
    assert_eq!(send(basic).await.0, 401);
}

/// Lists a model it cannot open.
struct Broken;

#[async_trait::async_trait]
impl ModelSource for Broken {
    fn provider_for(
        &self,
        model: &str,
    ) -> Result<(Arc<dyn Provider>, String), exoclaw_gateway::GatewayError> {
        Err(exoclaw_gateway::GatewayError::ModelNotFound { model: model.into(), available: self.models() })
    }

    fn models(&self) -> Vec<String> {
        vec!["local/smollm2".into()]
    }

    async fn ready(&self) -> Result<(), NotReady> {
        Err(NotReady::NoModelOpens {
            failures: vec![ModelFailure::new(
                "local/smollm2",
                "the model file is not in ~/.cache; run it once online",
            )],
        })
    }
}

#[tokio::test]
async fn readyz_is_503_with_the_reason_while_no_listed_model_can_be_opened() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gateway = Arc::new(Gateway::new(Arc::new(Broken), TokenSet::open()));
    tokio::spawn(async move { axum::serve(listener, app(gateway)).await });
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(response.status(), 503);
    let text = response.text().await.unwrap();
    assert!(text.contains("local/smollm2: the model file is not in ~/.cache"), "{text}");
    // Liveness is another matter.
    assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
}
