//! `POST /v1/embeddings` over real HTTP: reqwest against the gateway, whose embedding models are
//! exoclaw's OpenAI-compatible and Gemini clients calling scripted servers (the testkit's) over
//! real HTTP too, and a real llama.cpp `llama-server` started with `--embeddings`.

#![allow(clippy::unwrap_used, clippy::panic)]

use exoclaw_core::{
    Budgets, KeyStore, Metering, NewApiKey, Price, PriceTable, Provider, SystemClock, UsageStore,
};
use exoclaw_gateway::keys::generate_key;
use exoclaw_gateway::{EmbeddingModel, Gateway, GatewayError, ModelSource, StaticModels, TokenSet, app};
use exoclaw_providers::presets::{LLAMACPP, OPENAI};
use exoclaw_providers::{Gemini, OpenAiCompatible, ProviderOptions};
use exoclaw_store::Store;
use exoclaw_testkit::provider::{Outcome, ScriptedProvider};
use exoclaw_testkit::server::{Reply, ScriptedServer};
use exoclaw_types::UsageRecord;
use serde_json::{Value, json};
use std::sync::Arc;

/// The upstream model the tests' embedding model is sent as.
const UPSTREAM: &str = "text-embedding-3-small";

/// exoclaw's OpenAI client for the server at `url`, as provider instance `name`.
fn openai(name: &str, url: &str) -> Arc<OpenAiCompatible> {
    let options = ProviderOptions::default().name(name).base_url(format!("{url}/v1")).api_key("sk-test");
    Arc::new(OpenAiCompatible::new(&OPENAI, options).unwrap())
}

/// An OpenAI `/embeddings` answer with these vectors and prompt tokens.
fn answer(vectors: &[&[f32]], tokens: u64) -> Reply {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| json!({"object": "embedding", "index": index, "embedding": v}))
        .collect();
    Reply::json(
        200,
        &json!({"object": "list", "data": data, "model": UPSTREAM,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// `embed` (OpenAI's `text-embedding-3-small` on provider `up`, at `url`; takes `dimensions`)
/// and the chat model `chat`.
fn models(url: &str) -> StaticModels {
    let chat: Arc<dyn Provider> = Arc::new(ScriptedProvider::new("chatty", [Outcome::Text("hi".into())]));
    StaticModels::new()
        .with_embedder("embed", EmbeddingModel::new(openai("up", url), "up", UPSTREAM).with_dimensions(true))
        .with("chat", chat, "m")
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    store: Store,
    gateway: Arc<Gateway>,
}

/// A gateway over `source` with an in-memory store and these prices; with `keys`, every caller
/// needs a key or the operator token `op`.
async fn start(source: impl ModelSource + 'static, prices: PriceTable, keys: bool) -> Fixture {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let shared = Arc::new(store.clone());
    let metering = Arc::new(Metering::new(prices, Budgets::new(Vec::new(), Arc::new(SystemClock))));
    let mut builder =
        Gateway::builder(Arc::new(source)).store(shared.clone(), shared.clone()).metering(metering);
    if keys {
        builder = builder.tokens(TokenSet::from_tokens(["op"])).keys(shared);
    }
    let gateway = Arc::new(builder.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = gateway.clone();
    tokio::spawn(async move { axum::serve(listener, app(serving)).await });
    Fixture { base, client: reqwest::Client::new(), store, gateway }
}

impl Fixture {
    /// The status and JSON body of a request to `path` with `token` (none: no header).
    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn embed(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.post("/v1/embeddings", token, body).await
    }

    async fn key(&self, name: &str, models: &[&str], budget_usd: Option<f64>) -> String {
        let key = generate_key().unwrap();
        self.store
            .create_key(NewApiKey {
                name: name.into(),
                hash: key.hash,
                prefix: key.prefix,
                models: models.iter().map(|m| (*m).to_owned()).collect(),
                budget_usd,
                rpm: None,
            })
            .await
            .unwrap();
        key.secret
    }

    async fn ledger(&self) -> Vec<UsageRecord> {
        self.gateway.flush_usage().await;
        self.store.usage_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap()
    }

    async fn spent(&self, name: &str) -> f64 {
        self.gateway.flush_usage().await;
        self.store.list_keys().await.unwrap().into_iter().find(|k| k.name == name).unwrap().spent_usd
    }
}

/// The floats of a base64 `embedding`: little-endian `f32`s, as OpenAI's SDKs read them.
fn floats_of_base64(text: &str) -> Vec<f32> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let sextets: Vec<u32> = chunk
            .iter()
            .filter(|c| **c != b'=')
            .map(|c| u32::try_from(ALPHABET.find(char::from(*c)).unwrap()).unwrap())
            .collect();
        let n = sextets.iter().enumerate().fold(0u32, |n, (i, s)| n | s << (18 - 6 * i));
        let kept = sextets.len() * 6 / 8;
        bytes.extend(n.to_be_bytes()[1..=kept].iter());
    }
    bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

#[tokio::test]
async fn embeddings_reach_the_upstream_and_come_back_as_floats_or_base64() {
    let upstream =
        ScriptedServer::start([answer(&[&[0.5, -1.25], &[0.1, 3.0e-7]], 5), answer(&[&[1.0, -2.5, 0.1]], 1)])
            .await;
    let f = start(models(&upstream.url()), PriceTable::shipped(), false).await;

    let (status, body) = f
        .embed(
            None,
            &json!({"model": "embed", "input": ["hello", "world"], "dimensions": 2, "user": "alice"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "embed");
    assert_eq!(body["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(
            (item["object"].as_str(), item["index"].as_u64()),
            (Some("embedding"), Some(index as u64))
        );
    }
    // Floats as f32 prints them, so they parse back to the very same f32.
    assert_eq!(data[0]["embedding"], json!([0.5, -1.25]));
    let second: Vec<f32> = serde_json::from_value(data[1]["embedding"].clone()).unwrap();
    assert_eq!(second, [0.1f32, 3.0e-7]);

    let sent = upstream.request();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/embeddings"));
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(
        sent.body,
        json!({"model": UPSTREAM, "input": ["hello", "world"], "encoding_format": "float", "dimensions": 2})
    );

    let (status, body) =
        f.embed(None, &json!({"model": "embed", "input": "one", "encoding_format": "base64"})).await;
    assert_eq!(status, 200, "{body}");
    let text = body["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(text, "AACAPwAAIMDNzMw9");
    assert_eq!(floats_of_base64(text), [1.0, -2.5, 0.1]);
    assert_eq!(upstream.requests()[1].body["input"], json!(["one"]));

    // Anyone's usage is recorded, priced at the shipped price of text-embedding-3-small.
    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 2);
    let record = ledger.iter().find(|r| r.usage.input_tokens == Some(5)).unwrap();
    assert_eq!(
        (record.agent.as_str(), record.provider.as_str(), record.model.as_str()),
        ("api:anyone", "up", UPSTREAM)
    );
    assert_eq!((record.usage.input_tokens, record.usage.output_tokens), (Some(5), Some(0)));
    assert!((record.cost_usd.unwrap() - 5.0 * 0.02 / 1e6).abs() < 1e-15, "{record:?}");
    assert!(!record.estimated && record.ttft_ms.is_none(), "{record:?}");

    let metrics = f.gateway.metrics().render(&[]);
    for line in [
        r#"exoclaw_gateway_requests_total{endpoint="/v1/embeddings",status="200"} 2"#,
        r#"exoclaw_gateway_tokens_total{provider="up",model="text-embedding-3-small",direction="input"} 6"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

#[tokio::test]
async fn what_cannot_be_carried_out_is_refused_naming_the_field_or_the_model() {
    let upstream = ScriptedServer::start([]).await;
    let mut source = models(&upstream.url());
    // A compatible server not known to take `dimensions`.
    source = source
        .with_embedder("plain", EmbeddingModel::new(openai("llama", &upstream.url()), "llama", "nomic"));
    let f = start(source, PriceTable::shipped(), false).await;

    for (body, param, needle) in [
        (json!({"model": "embed", "input": "x", "truncate": true}), "truncate", "embeddings API"),
        (json!({"model": "embed", "input": "x", "encoding_format": "int8"}), "encoding_format", "base64"),
        (json!({"model": "plain", "input": "x", "dimensions": 8}), "dimensions", "`plain`"),
        (json!({"model": "embed", "input": "x", "dimensions": 0}), "dimensions", "at least 1"),
        (json!({"model": "embed", "input": [[1, 2], [3]]}), "input", "token arrays"),
        (json!({"model": "embed", "input": [1, 2, 3]}), "input", "token arrays"),
        (json!({"model": "embed", "input": []}), "input", "at least one"),
        (json!({"model": "embed", "input": ["a", ""]}), "input[1]", "empty"),
        (json!({"model": "embed", "input": vec!["x"; 2049]}), "input", "2048"),
        (json!({"model": "chat", "input": "x"}), "model", "chat model"),
    ] {
        let (status, answer) = f.embed(None, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
        assert_eq!(answer["error"]["param"], param, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    let (status, answer) = f.embed(None, &json!({"model": "chat", "input": "x"})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("model_not_supported")));

    let (status, answer) = f.embed(None, &json!({"model": "nope", "input": "x"})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("model_not_found")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("embed"), "{answer}");
    let (status, answer) = f.embed(None, &json!({"input": "x"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("model"), "{answer}");

    // The embedding model on the chat endpoint says where to send it.
    let (status, answer) = f
        .post(
            "/v1/chat/completions",
            None,
            &json!({"model": "embed", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("/v1/embeddings"), "{answer}");
    assert!(upstream.requests().is_empty(), "no refused request reached the model");

    // `GET /v1/models` lists embedding models with the chat models.
    let listed: Value =
        f.client.get(format!("{}/v1/models", f.base)).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["chat", "embed", "plain"]);
}

/// A source of chat models only, as every source was before embeddings: it keeps the default.
struct ChatOnly(StaticModels);

impl ModelSource for ChatOnly {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        self.0.provider_for(model)
    }

    fn models(&self) -> Vec<String> {
        self.0.models()
    }
}

#[tokio::test]
async fn a_source_without_embeddings_says_so() {
    let f = start(ChatOnly(models("http://127.0.0.1:9")), PriceTable::shipped(), false).await;
    let (status, answer) = f.embed(None, &json!({"model": "chat", "input": "x"})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("model_not_supported")), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`chat` cannot make embeddings") && message.contains("no embedding models"),
        "{message}"
    );
}

#[tokio::test]
async fn keys_embed_only_the_models_they_may_use_within_their_budgets_and_are_charged_their_tokens() {
    let upstream = ScriptedServer::start([answer(&[&[0.5, 0.5]], 7)]).await;
    // A tenth of a cent an input token; `free` has no price.
    let mut prices = PriceTable::empty();
    prices.set(format!("up/{UPSTREAM}"), Price::new(1000.0, 0.0));
    let source = models(&upstream.url())
        .with_embedder("free", EmbeddingModel::new(openai("unpriced", &upstream.url()), "unpriced", "x"));
    let f = start(source, prices, true).await;
    // 40 characters: 10 tokens reserved, $0.010.
    let text = "x".repeat(40);
    let body = json!({"model": "embed", "input": text});

    let (status, answer) = f.embed(None, &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("invalid_api_key")), "{answer}");

    let narrow = f.key("narrow", &["chat"], None).await;
    let (status, answer) = f.embed(Some(&narrow), &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("model_not_allowed")), "{answer}");

    let poor = f.key("poor", &[], Some(0.005)).await;
    let (status, answer) = f.embed(Some(&poor), &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (429, Some("budget_exceeded")), "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("$0.0100") && message.contains("its input at four characters a token"),
        "{message}"
    );
    assert!(!message.contains("max_tokens"), "embeddings have no max_tokens: {message}");
    let (status, answer) = f.embed(Some(&poor), &json!({"model": "free", "input": "x"})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("budget_unpriced")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("`unpriced/x`"), "{answer}");
    assert!(upstream.requests().is_empty(), "no refused request reached the model");

    let rich = f.key("rich", &["embed"], Some(1.0)).await;
    let (status, answer) = f.embed(Some(&rich), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["prompt_tokens"], 7);
    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 1, "refused requests leave no record: {ledger:?}");
    let record = &ledger[0];
    assert_eq!((record.agent.as_str(), record.provider.as_str()), ("api:rich", "up"));
    assert_eq!((record.usage.input_tokens, record.usage.output_tokens), (Some(7), Some(0)));
    // Charged the 7 tokens the upstream counted, not the 10 reserved.
    assert!((record.cost_usd.unwrap() - 0.007).abs() < 1e-12, "{record:?}");
    assert!((f.spent("rich").await - 0.007).abs() < 1e-12);
    assert_eq!(f.spent("poor").await, 0.0);

    let metrics = f.gateway.metrics().render(&[]);
    for line in [
        r#"exoclaw_gateway_requests_total{endpoint="/v1/embeddings",status="429"} 1"#,
        r#"exoclaw_gateway_errors_total{kind="model_not_allowed"} 1"#,
        r#"exoclaw_gateway_errors_total{kind="budget_unpriced"} 1"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

#[tokio::test]
async fn gemini_embeds_through_batch_embed_contents_and_its_uncounted_tokens_are_estimated() {
    let upstream = ScriptedServer::start([Reply::json(
        200,
        &json!({"embeddings": [{"values": [0.25, 0.75]}, {"values": [-0.5, 1.0]}]}),
    )])
    .await;
    let options = ProviderOptions::default()
        .name("gem")
        .base_url(format!("{}/v1beta", upstream.url()))
        .api_key("g-test");
    let gemini = Arc::new(Gemini::new(options).unwrap());
    let source = StaticModels::new().with_embedder(
        "gemini-embed",
        EmbeddingModel::new(gemini, "gem", "gemini-embedding-001").with_dimensions(true),
    );
    let f = start(source, PriceTable::shipped(), false).await;

    // 8 + 4 characters: 3 tokens estimated.
    let (status, answer) = f
        .embed(None, &json!({"model": "gemini-embed", "input": ["abcdefgh", "ijkl"], "dimensions": 2}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"][1]["embedding"], json!([-0.5, 1.0]));
    assert_eq!(answer["usage"]["prompt_tokens"], 3);
    let sent = upstream.request();
    assert_eq!(sent.path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(sent.body["requests"][0]["outputDimensionality"], 2);
    assert_eq!(sent.body["requests"][1]["content"]["parts"][0]["text"], "ijkl");

    let ledger = f.ledger().await;
    let record = &ledger[0];
    assert!(record.estimated, "Gemini does not count embedding tokens: {record:?}");
    assert_eq!((record.usage.input_tokens, record.usage.output_tokens), (Some(3), Some(0)));
    assert!((record.cost_usd.unwrap() - 3.0 * 0.15 / 1e6).abs() < 1e-15, "{record:?}");
}

/// A real `llama-server` (SmolLM2, `--embeddings --pooling mean`) behind the gateway, as
/// provider kind `llamacpp` serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_llama_server_embeds_behind_the_gateway() {
    let server = tokio::task::spawn_blocking(|| {
        exoclaw_testkit::peers::LlamaServer::start_with(&["--embeddings", "--pooling", "mean"])
    })
    .await
    .unwrap();
    let options = ProviderOptions::default().name("llamacpp").base_url(format!("{}/v1", server.url()));
    let llama = Arc::new(OpenAiCompatible::new(&LLAMACPP, options).unwrap());
    let source = StaticModels::new().with_embedder("smol", EmbeddingModel::new(llama, "llamacpp", "smollm2"));
    let f = start(source, PriceTable::shipped(), false).await;

    let texts = ["The capital of France is Paris.", "Bananas are yellow."];
    let (status, floats) = f.embed(None, &json!({"model": "smol", "input": texts})).await;
    assert_eq!(status, 200, "{floats}");
    let vectors: Vec<Vec<f32>> = floats["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    assert_eq!(vectors.len(), 2);
    // SmolLM2-135M's width.
    assert!(vectors.iter().all(|v| v.len() == 576), "{}", vectors[0].len());
    assert_ne!(vectors[0], vectors[1]);
    assert!(floats["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{floats}");

    // The same texts in base64: the same vectors, bit for bit.
    let (status, packed) =
        f.embed(None, &json!({"model": "smol", "input": texts, "encoding_format": "base64"})).await;
    assert_eq!(status, 200, "{packed}");
    for (item, vector) in packed["data"].as_array().unwrap().iter().zip(&vectors) {
        assert_eq!(&floats_of_base64(item["embedding"].as_str().unwrap()), vector);
    }
    // Local servers cost nothing.
    let ledger = f.ledger().await;
    assert_eq!(ledger.len(), 2);
    assert!(ledger.iter().all(|r| r.cost_usd == Some(0.0) && r.provider == "llamacpp"), "{ledger:?}");
}
