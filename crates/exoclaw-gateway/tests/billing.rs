//! Exact billing on `/v1`: a request reserves what it may cost against its key's budget and the
//! `[budgets]` before anything goes upstream, and settles what it really used after. Driven over
//! real HTTP: reqwest against the gateway, whose models sit behind exoclaw's router and OpenAI
//! provider, which call scripted model servers (the testkit's) over real HTTP too.

#![allow(clippy::unwrap_used, clippy::panic)]

use exoclaw_core::{
    BudgetScope, BudgetSpec, BudgetWindow, Budgets, CallScope, KeyStore, Metering, NewApiKey, Price,
    PriceTable, Provider, SystemClock, UsageStore,
};
use exoclaw_gateway::keys::generate_key;
use exoclaw_gateway::{Gateway, GatewayError, ModelSource, TokenSet, app};
use exoclaw_providers::presets::OPENAI;
use exoclaw_providers::router::{RetryPolicy, Router, Routes};
use exoclaw_providers::{OpenAiCompatible, ProviderOptions};
use exoclaw_store::Store;
use exoclaw_testkit::flaky::FlakyServer;
use exoclaw_testkit::script::Answer;
use exoclaw_testkit::server::{Ending, Reply, ScriptedServer};
use exoclaw_types::UsageRecord;
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// What the tests' models cost: a tenth of a cent a token, prompt or answer alike.
const MILLI: Price = Price::new(1000.0, 1000.0);

/// The gateway's models as `exoclaw gateway` serves them: every name through one router, billed
/// as the route's first target.
struct Routed {
    router: Arc<Router>,
    routes: Routes,
}

impl ModelSource for Routed {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        match self.routes.resolve(model) {
            Ok(_) => Ok((self.router.clone() as Arc<dyn Provider>, model.to_owned())),
            Err(_) => Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() }),
        }
    }

    fn models(&self) -> Vec<String> {
        vec!["fast".into()]
    }

    fn billed_as(&self, model: &str) -> Option<(String, String)> {
        let target = self.routes.resolve(model).ok()?.into_iter().next()?;
        Some((target.provider, target.model))
    }
}

/// `fast` is `primary/m`, falling back to `backup/b` when a backup is given; each provider is
/// exoclaw's OpenAI client for a server at its URL.
fn routed(primary: &str, backup: Option<&str>) -> Routed {
    let openai = |name: &str, url: &str| -> Arc<dyn Provider> {
        let options = ProviderOptions::default().name(name).base_url(format!("{url}/v1")).api_key("sk-test");
        Arc::new(OpenAiCompatible::new(&OPENAI, options).unwrap())
    };
    let mut builder =
        Router::builder("router").retry(RetryPolicy::none()).provider(openai("primary", primary), false);
    if let Some(backup) = backup {
        builder = builder.provider(openai("backup", backup), false);
    }
    let mut routes = Routes::new(builder.provider_names()).alias("fast", "primary/m");
    if backup.is_some() {
        routes = routes.fallbacks("fast", &["backup/b"]).unwrap();
    }
    Routed { router: Arc::new(builder.build(routes.clone())), routes }
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    store: Store,
    gateway: Arc<Gateway>,
    metering: Arc<Metering>,
}

/// A gateway over `models` with an in-memory store, these prices and `[budgets]`, keys required
/// and `op` an operator token.
async fn start(models: Routed, prices: PriceTable, budgets: Vec<BudgetSpec>) -> Fixture {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let shared = Arc::new(store.clone());
    let metering = Arc::new(Metering::new(prices, Budgets::new(budgets, Arc::new(SystemClock))));
    let gateway = Arc::new(
        Gateway::builder(Arc::new(models))
            .tokens(TokenSet::from_tokens(["op"]))
            .keys(shared.clone())
            .store(shared.clone(), shared)
            .metering(metering.clone())
            .build(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = gateway.clone();
    tokio::spawn(async move { axum::serve(listener, app(serving)).await });
    Fixture { base, client: reqwest::Client::new(), store, gateway, metering }
}

fn priced(entries: &[(&str, Price)]) -> PriceTable {
    let mut table = PriceTable::empty();
    for (pattern, price) in entries {
        table.set(*pattern, *price);
    }
    table
}

fn dollars(name: &str, scope: BudgetScope, max_usd: f64) -> BudgetSpec {
    BudgetSpec {
        name: name.into(),
        scope,
        window: BudgetWindow::Total,
        max_tokens: None,
        max_usd: Some(max_usd),
    }
}

impl Fixture {
    async fn key(&self, name: &str, budget_usd: Option<f64>) -> String {
        let key = generate_key().unwrap();
        self.store
            .create_key(NewApiKey {
                name: name.into(),
                hash: key.hash,
                prefix: key.prefix,
                models: Vec::new(),
                budget_usd,
                rpm: None,
            })
            .await
            .unwrap();
        key.secret
    }

    fn post(&self, token: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client.post(format!("{}/v1/chat/completions", self.base)).bearer_auth(token).json(body)
    }

    /// The status and body of a request: a whole answer's JSON, or a stream's text.
    async fn chat(&self, token: &str, body: &Value) -> (u16, Value) {
        let response = self.post(token, body).send().await.unwrap();
        let status = response.status().as_u16();
        let streamed = response.headers().get("content-type").is_some_and(|v| v == "text/event-stream");
        let body = if streamed {
            Value::String(response.text().await.unwrap())
        } else {
            response.json().await.unwrap()
        };
        (status, body)
    }

    /// Everything the usage ledger holds, once what was settled is written.
    async fn ledger(&self) -> Vec<UsageRecord> {
        self.gateway.flush_usage().await;
        self.store.usage_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap()
    }

    async fn spent(&self, name: &str) -> f64 {
        self.gateway.flush_usage().await;
        self.store.list_keys().await.unwrap().into_iter().find(|k| k.name == name).unwrap().spent_usd
    }
}

/// A request whose reservation is known: a prompt of 84 characters (21 tokens) and `max_tokens`
/// 8, so at [`MILLI`] it reserves $0.029. The scripted answers use less: 20 + 7 tokens streamed,
/// 3 + 1 whole.
fn small(i: usize, stream: bool) -> Value {
    let content = format!("{i:04} {}", "x".repeat(79));
    assert_eq!(content.chars().count(), 84);
    json!({"model": "fast", "stream": stream, "stream_options": {"include_usage": true}, "max_tokens": 8,
           "messages": [{"role": "user", "content": content}]})
}

/// Sends 64 requests at once with `token`, half streamed, and returns how many were answered and
/// how many refused for their budget (anything else fails the test).
async fn sixty_four_at_once(f: &Fixture, token: &str) -> (usize, usize) {
    let requests = (0..64).map(|i| {
        let body = small(i, i % 2 == 0);
        async move { f.chat(token, &body).await }
    });
    let answers = futures::future::join_all(requests).await;
    let (mut served, mut refused) = (0, 0);
    for (status, body) in answers {
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (served, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_spend_past_a_keys_budget() {
    let upstream = FlakyServer::start(0.0, 1).await;
    let f = start(routed(&upstream.url(), None), priced(&[("primary/m", MILLI)]), Vec::new()).await;
    // About ten requests' worth.
    let budget = 0.29;
    let key = f.key("tight", Some(budget)).await;

    let (served, refused) = sixty_four_at_once(&f, &key).await;
    assert!(served >= 1, "some requests fit the budget");
    assert_eq!(served + refused, 64);
    assert_eq!(upstream.requests(), served, "a refused request never reaches the model");

    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), served, "one record per answered request");
    let recorded: f64 = ledger.iter().map(|r| r.cost_usd.unwrap()).sum();
    assert!(recorded <= budget + 1e-9, "the ledger records ${recorded} against a ${budget} budget");
    let spent = f.spent("tight").await;
    assert!(spent <= budget + 1e-9, "the key spent ${spent} of ${budget}");
    assert!(
        (spent - recorded).abs() < 1e-9,
        "the key's spend is what the ledger says: {spent} vs {recorded}"
    );
    assert!(ledger.iter().all(|r| r.agent == "api:tight" && r.provider == "primary" && !r.estimated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_spend_past_a_dollar_budget() {
    let upstream = FlakyServer::start(0.0, 2).await;
    let budget = 0.29;
    let specs = vec![dollars("all-v1", BudgetScope::Global, budget)];
    let f = start(routed(&upstream.url(), None), priced(&[("primary/m", MILLI)]), specs).await;

    // An operator token has no budget of its own; the gateway's `[budgets]` still apply.
    let (served, refused) = sixty_four_at_once(&f, "op").await;
    assert!(served >= 1 && refused >= 1, "served {served}, refused {refused}");
    assert_eq!(upstream.requests(), served);
    let recorded: f64 = f.ledger().await.iter().map(|r| r.cost_usd.unwrap()).sum();
    assert!(recorded <= budget + 1e-9, "the ledger records ${recorded} against a ${budget} budget");
    let status = f.metering.budgets.status(&CallScope { session: None, agent: "api:operator" });
    assert!((status[0].spent_usd - recorded).abs() < 1e-9, "{status:?}");
    assert_eq!(status[0].held_usd, 0.0, "every reservation was settled: {status:?}");
}

#[tokio::test]
async fn a_budgeted_caller_is_refused_a_model_without_a_price() {
    let whole = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "free?"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    let upstream = ScriptedServer::start([Reply::json(200, &whole)]).await;
    let specs = vec![dollars("capped-agent", BudgetScope::Agent("api:capped".into()), 5.0)];
    // No price at all: `primary/m` is unpriced.
    let f = start(routed(&upstream.url(), None), PriceTable::empty(), specs).await;
    let hello = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});

    let budgeted = f.key("budgeted", Some(1.0)).await;
    let (status, body) = f.chat(&budgeted, &hello).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "budget_unpriced");
    let message = body["error"]["message"].as_str().unwrap();
    for needle in ["`fast`", "`primary/m`", "[prices]", "the key `budgeted`'s budget"] {
        assert!(message.contains(needle), "{needle} missing from: {message}");
    }

    // A dollar `[budgets]` entry refuses it too, naming itself.
    let capped = f.key("capped", None).await;
    let (status, body) = f.chat(&capped, &hello).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("budget_unpriced")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("budget `capped-agent`"), "{body}");
    assert!(upstream.requests().is_empty(), "neither refusal reached the model");

    // Without a budget the model is served; what it cost is unknown, not $0.
    let free = f.key("unbudgeted", None).await;
    let (status, body) = f.chat(&free, &hello).await;
    assert_eq!(status, 200, "{body}");
    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].agent.as_str(), ledger[0].cost_usd), ("api:unbudgeted", None));
}

#[tokio::test]
async fn a_fallback_is_recorded_and_charged_as_the_model_that_served() {
    let primary = ScriptedServer::start([Reply::json(
        500,
        &json!({"error": {"message": "boom", "type": "server_error", "code": null}}),
    )])
    .await;
    let backup = ScriptedServer::start([Answer::text("from the backup").reply()]).await;
    let prices = priced(&[("primary/m", MILLI), ("backup/b", Price::new(100.0, 200.0))]);
    let f = start(routed(&primary.url(), Some(&backup.url())), prices, Vec::new()).await;
    let key = f.key("fallen", Some(1.0)).await;

    let body = json!({"model": "fast", "stream": true, "max_tokens": 50,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, text) = f.chat(&key, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.as_str().unwrap().contains("backup"), "{text}");
    assert_eq!(primary.requests().len(), 1, "the primary was tried first");

    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 1);
    let record = &ledger[0];
    assert_eq!((record.provider.as_str(), record.model.as_str()), ("backup", "b"), "{record:?}");
    // 20 prompt and 7 answer tokens at the backup's price, not the primary's.
    let expected = (20.0 * 100.0 + 7.0 * 200.0) / 1e6;
    assert!((record.cost_usd.unwrap() - expected).abs() < 1e-12, "{record:?}");
    assert!((f.spent("fallen").await - expected).abs() < 1e-12);
}

#[tokio::test]
async fn a_whole_answer_after_a_fallback_is_recorded_and_charged_as_the_model_that_served() {
    let primary = ScriptedServer::start([Reply::json(
        500,
        &json!({"error": {"message": "boom", "type": "server_error", "code": null}}),
    )])
    .await;
    let whole = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "from the backup"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    let backup = ScriptedServer::start([Reply::json(200, &whole)]).await;
    let prices = priced(&[("primary/m", MILLI), ("backup/b", Price::new(100.0, 200.0))]);
    let f = start(routed(&primary.url(), Some(&backup.url())), prices, Vec::new()).await;
    let key = f.key("fallen-whole", Some(1.0)).await;

    let body = json!({"model": "fast", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let (status, answer) = f.chat(&key, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "from the backup", "{answer}");
    assert_eq!((primary.requests().len(), backup.requests().len()), (1, 1), "the primary was tried first");

    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 1);
    let record = &ledger[0];
    assert_eq!((record.provider.as_str(), record.model.as_str()), ("backup", "b"), "{record:?}");
    // 3 prompt and 2 answer tokens at the backup's price; the primary's would be $0.005.
    let expected = (3.0 * 100.0 + 2.0 * 200.0) / 1e6;
    assert!((record.cost_usd.unwrap() - expected).abs() < 1e-12, "{record:?}");
    assert!((f.spent("fallen-whole").await - expected).abs() < 1e-12);
    let metrics = f.gateway.metrics().render(&[]);
    let served = r#"exoclaw_gateway_tokens_total{provider="backup",model="b",direction="input"} 3"#;
    assert!(metrics.contains(served), "no `{served}` in:\n{metrics}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_pays_for_what_was_generated() {
    // Four words of the answer, then the model goes quiet; a second request is answered whole.
    let chunks = Answer::text("one two three four five six seven eight").chunks();
    let upstream = ScriptedServer::start([
        Reply::sse(&chunks[..5]).ending(Ending::Hang),
        Answer::text("the second answer").reply(),
    ])
    .await;
    let specs = vec![dollars("roomy", BudgetScope::Global, 100.0)];
    let f = start(routed(&upstream.url(), None), priced(&[("primary/m", MILLI)]), specs).await;
    // "hi" and max_tokens 100 reserve 1 + 100 tokens, $0.101: the budget holds one reservation,
    // and a second only if the first was let go.
    let key = f.key("leaver", Some(0.15)).await;
    let body = json!({"model": "fast", "stream": true, "max_tokens": 100,
                      "messages": [{"role": "user", "content": "hi"}]});

    let response = f.post(&key, &body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("four") {
        let chunk = stream.next().await.expect("the stream ends only when the client leaves").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(stream);
    assert!(upstream.hung_up(Duration::from_secs(10)).await, "leaving cancels the upstream request");

    // The bill is settled as the stream is dropped; wait for it to reach the ledger.
    let mut ledger = f.ledger().await;
    for _ in 0..100 {
        if !ledger.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ledger = f.ledger().await;
    }
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let record = &ledger[0];
    assert!(record.estimated, "the usage never came, so it is estimated: {record:?}");
    // "one two three four " streamed: 19 characters, 5 tokens; the prompt "hi", 1.
    assert_eq!((record.usage.input_tokens, record.usage.output_tokens), (Some(1), Some(5)), "{record:?}");
    let cost = record.cost_usd.unwrap();
    assert!((cost - 0.006).abs() < 1e-12, "{record:?}");
    assert!((f.spent("leaver").await - cost).abs() < 1e-12);
    let status = f.metering.budgets.status(&CallScope { session: None, agent: "api:leaver" });
    assert_eq!((status[0].held_usd, status[0].spent_usd), (0.0, cost), "{status:?}");

    // The key's hold was let go: a second reservation fits.
    let (status, text) = f.chat(&key, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.as_str().unwrap().contains("second"), "{text}");
}

#[tokio::test]
async fn a_request_that_cannot_fit_is_refused_before_it_goes_upstream() {
    let upstream = ScriptedServer::start([Answer::text("never sent").reply()]).await;
    let f = start(routed(&upstream.url(), None), priced(&[("primary/m", MILLI)]), Vec::new()).await;
    // Without max_tokens, 4,096 answer tokens are reserved: $4.097, more than the key has.
    let key = f.key("small", Some(1.0)).await;
    let (status, body) =
        f.chat(&key, &json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("$4.0970") && message.contains("max_tokens"), "{message}");
    assert!(upstream.requests().is_empty());
    assert!(f.ledger().await.is_empty(), "a refused request leaves no record");
    assert_eq!(f.spent("small").await, 0.0);
}
