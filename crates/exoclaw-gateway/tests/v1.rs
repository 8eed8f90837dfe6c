//! The `/v1` API driven over real HTTP (reqwest against the app bound on `127.0.0.1:0`), with
//! scripted providers behind it.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw_core::{Embedder, ErrorKind, EventStream, Provider, ProviderError};
use exoclaw_gateway::{
    EmbeddingModel, Gateway, GatewayError, StaticModels, TokenSet, app, check_bind, hash_token,
};
use exoclaw_local::{LocalModel, LocalOptions, LocalProvider};
use exoclaw_testkit::provider::{Outcome, ScriptedProvider};
use exoclaw_types::{
    ChatRequest, EmbeddingRequest, Embeddings, Part, ResponseFormat, Role, StopReason, StreamEvent, ToolCall,
    ToolChoice, Usage,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The embedded model's name (the default model, SmolLM2).
const LOCAL_MODEL: &str = exoclaw_local::fetch::SMOLLM2_135M.name;

/// Records every request whole and streams a fixed list of events.
#[derive(Debug)]
struct Recorder {
    events: Vec<StreamEvent>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl Recorder {
    fn new(events: Vec<StreamEvent>) -> Arc<Self> {
        Arc::new(Self { events, requests: Mutex::new(Vec::new()) })
    }
}

#[async_trait]
impl Provider for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.requests.lock().unwrap().push(request);
        Ok(Box::pin(futures::stream::iter(self.events.clone().into_iter().map(Ok))))
    }
}

/// Embeds text number `i` as `[i + 0.5, -1.25, its length]`, two tokens a text: vectors whose
/// floats survive any encoding exactly.
#[derive(Debug)]
struct Counting;

#[async_trait]
impl Embedder for Counting {
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        let vectors = request
            .inputs
            .iter()
            .enumerate()
            .map(|(i, text)| vec![i as f32 + 0.5, -1.25, text.chars().count() as f32])
            .collect();
        Ok(Embeddings { vectors, input_tokens: Some(2 * request.inputs.len() as u64) })
    }
}

fn tool_call_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::ToolCallStart { index: 0, id: "call_1".into(), name: "get_weather".into() },
        StreamEvent::ToolCallArgsDelta { index: 0, fragment: "{\"city\":".into() },
        StreamEvent::ToolCallArgsDelta { index: 0, fragment: "\"Oslo\"}".into() },
        StreamEvent::ToolCall {
            index: 0,
            call: ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Oslo"}),
            },
        },
        StreamEvent::Usage(Usage { input_tokens: Some(5), output_tokens: Some(7), ..Usage::default() }),
        StreamEvent::Finish { reason: StopReason::ToolUse },
    ]
}

struct Server {
    base: String,
    client: reqwest::Client,
}

async fn start(source: StaticModels, tokens: TokenSet) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Arc::new(Gateway::new(Arc::new(source), tokens));
    tokio::spawn(async move { axum::serve(listener, app(gateway)).await });
    Server { base: format!("http://{addr}"), client: reqwest::Client::new() }
}

impl Server {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    async fn chat(&self, body: Value) -> reqwest::Response {
        self.post("/v1/chat/completions").json(&body).send().await.unwrap()
    }
}

fn hello(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "hi"}]})
}

/// The JSON of each `data:` frame, `[DONE]` as a string.
async fn frames(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let data = f.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data frame: {f:?}"));
            if data == "[DONE]" { Value::String(data.into()) } else { serde_json::from_str(data).unwrap() }
        })
        .collect()
}

fn scripted(outcomes: impl IntoIterator<Item = Outcome>) -> Arc<ScriptedProvider> {
    Arc::new(ScriptedProvider::new("scripted", outcomes))
}

#[tokio::test]
async fn a_whole_answer_has_openais_shape_and_usage() {
    let provider = scripted([Outcome::Text("hello there world".into())]);
    let server =
        start(StaticModels::new().with("fast", provider.clone(), "upstream-1"), TokenSet::open()).await;
    let response = server.chat(hello("fast", false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"), "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "fast");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello there world");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(body["usage"], json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}));
    assert_eq!(provider.models(), vec!["upstream-1".to_owned()]);
}

#[tokio::test]
async fn a_stream_opens_with_the_role_and_ends_with_usage_then_done() {
    let provider = scripted([Outcome::Text("hello there world".into())]);
    let server = start(StaticModels::new().with("fast", provider, "m"), TokenSet::open()).await;
    let response = server.chat(hello("fast", true)).await;
    assert_eq!(response.status(), 200);
    let frames = frames(response).await;
    assert_eq!(frames[0]["object"], "chat.completion.chunk");
    assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = frames.iter().filter_map(|f| f["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "hello there world");
    let n = frames.len();
    assert_eq!(frames[n - 3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(frames[n - 2]["choices"], json!([]));
    assert_eq!(frames[n - 2]["usage"]["total_tokens"], 13);
    assert_eq!(frames[n - 1], "[DONE]");
    let id = &frames[0]["id"];
    assert!(frames[..n - 1].iter().all(|f| &f["id"] == id), "one id for the whole stream");
}

#[tokio::test]
async fn without_include_usage_no_usage_chunk_is_sent() {
    let server = start(StaticModels::new().with("fast", scripted([]), "m"), TokenSet::open()).await;
    let frames = frames(
        server
            .chat(json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .await,
    )
    .await;
    assert!(frames.iter().all(|f| f.get("usage").is_none()), "{frames:?}");
    assert_eq!(frames.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn tool_calls_reach_the_provider_and_come_back_in_both_modes() {
    let recorder = Recorder::new(tool_call_events());
    let server = start(StaticModels::new().with("tools", recorder.clone(), "up"), TokenSet::open()).await;
    let body = json!({
        "model": "tools",
        "messages": [
            {"role": "system", "content": "you check weather"},
            {"role": "user", "content": [{"type": "text", "text": "weather in Oslo and Bergen?"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "rain"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather now",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 64, "stop": ["END", "STOP"], "temperature": 0.2,
    });

    let response = server.chat(body.clone()).await;
    assert_eq!(response.status(), 200);
    let whole: Value = response.json().await.unwrap();
    let message = &whole["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}])
    );
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");

    let request = recorder.requests.lock().unwrap()[0].clone();
    assert_eq!(request.model.as_str(), "up");
    assert_eq!(request.system.as_deref(), Some("you check weather"));
    assert_eq!(request.messages.len(), 3);
    assert_eq!(request.messages[0].text(), "weather in Oslo and Bergen?");
    assert_eq!(request.messages[1].role, Role::Assistant);
    let call = request.messages[1].tool_calls().next().unwrap();
    assert_eq!((call.id.as_str(), call.name.as_str()), ("call_0", "get_weather"));
    assert_eq!(call.arguments, json!({"city": "Bergen"}));
    assert_eq!(request.messages[2].role, Role::Tool);
    assert!(
        matches!(&request.messages[2].parts[0], Part::ToolResult(r) if r.call_id == "call_0" && r.content == "rain")
    );
    assert_eq!(request.tools[0].name, "get_weather");
    assert_eq!(request.tools[0].input_schema["properties"]["city"]["type"], "string");
    assert_eq!(request.tool_choice, Some(ToolChoice::Tool { name: "get_weather".into() }));
    assert_eq!(request.params.max_tokens, Some(64));
    assert_eq!(request.params.stop, vec!["END".to_owned(), "STOP".to_owned()]);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let frames = frames(server.chat(streamed).await).await;
    let calls: Vec<&Value> =
        frames.iter().filter_map(|f| f["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(calls[0]["id"], "call_1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    assert_eq!(args, "{\"city\":\"Oslo\"}", "the assembled call is not sent twice");
    assert!(calls.iter().all(|c| c["index"] == 0));
    assert_eq!(frames[frames.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn malformed_bodies_are_400_in_openais_error_shape() {
    let server = start(StaticModels::new().with("fast", scripted([]), "m"), TokenSet::open()).await;
    let response = server
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON"), "{body}");
    assert!(body["error"].get("param").is_some() && body["error"].get("code").is_some());

    let response = server.chat(json!({"model": "fast"})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("messages"), "{body}");

    let response =
        server.chat(json!({"model": "fast", "messages": [{"role": "wizard", "content": "x"}]})).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn unknown_models_are_404_naming_what_is_served() {
    let server = start(StaticModels::new().with("fast", scripted([]), "m"), TokenSet::open()).await;
    let response = server.chat(hello("nope", false)).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    assert!(body["error"]["message"].as_str().unwrap().contains("fast"), "{body}");
}

#[tokio::test]
async fn provider_failures_map_to_statuses_with_retry_after() {
    let provider = scripted([
        Outcome::FailOpen(ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(3)) }),
        Outcome::FailFirst(ErrorKind::Overloaded),
        Outcome::FailOpen(ErrorKind::Timeout),
    ]);
    let server = start(StaticModels::new().with("fast", provider, "m"), TokenSet::open()).await;

    let response = server.chat(hello("fast", false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // A failure before the first event of a stream is still an HTTP error.
    let response = server.chat(hello("fast", true)).await;
    assert_eq!(response.status(), 503);

    let response = server.chat(hello("fast", false)).await;
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn a_failure_mid_stream_ends_with_an_error_frame_and_no_done() {
    let provider = scripted([Outcome::TextThenFail("partial answer".into(), ErrorKind::Connect)]);
    let server = start(StaticModels::new().with("fast", provider, "m"), TokenSet::open()).await;
    let response = server.chat(hello("fast", true)).await;
    assert_eq!(response.status(), 200);
    let frames = frames(response).await;
    let last = frames.last().unwrap();
    assert_eq!(last["error"]["code"], "upstream_unreachable", "{frames:?}");
    assert!(frames.iter().all(|f| f != "[DONE]"));
    let text: String = frames.iter().filter_map(|f| f["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "partial answer");
}

#[tokio::test]
async fn tokens_guard_v1_but_not_the_probes() {
    let tokens = TokenSet::from_hashes([hash_token("sk-right")]).unwrap();
    let server = start(StaticModels::new().with("fast", scripted([]), "m"), tokens).await;

    let response = server.chat(hello("fast", false)).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let response = server
        .post("/v1/chat/completions")
        .bearer_auth("sk-wrong")
        .json(&hello("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    assert!(!text.contains("sk-wrong"), "the token is not echoed: {text}");

    let response = server
        .post("/v1/chat/completions")
        .bearer_auth("sk-right")
        .json(&hello("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(server.get("/v1/models").send().await.unwrap().status(), 401);
    assert_eq!(server.get("/v1/models").bearer_auth("sk-right").send().await.unwrap().status(), 200);
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn models_and_probes() {
    let server = start(
        StaticModels::new().with("b-model", scripted([]), "m").with("a-model", scripted([]), "m"),
        TokenSet::open(),
    )
    .await;
    let body: Value = server.get("/v1/models").send().await.unwrap().json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a-model", "b-model"]);
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["owned_by"], "exoclaw");
    assert!(body["data"][0]["created"].is_u64());

    let health = server.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    assert_eq!(server.get("/readyz").send().await.unwrap().status(), 200);
    assert_eq!(server.get("/v2/nothing").send().await.unwrap().status(), 404);

    let empty = start(StaticModels::new(), TokenSet::open()).await;
    assert_eq!(empty.get("/readyz").send().await.unwrap().status(), 503);
}

#[test]
fn binding_beyond_loopback_needs_a_token() {
    let open = "0.0.0.0:8080".parse().unwrap();
    let err = check_bind(open, false).unwrap_err();
    assert!(matches!(err, GatewayError::InsecureBind { .. }));
    let text = err.to_string();
    assert!(text.starts_with("refusing to listen on 0.0.0.0:8080 without a token"), "{text}");
    assert!(text.contains("configure a token") && text.contains("sha256sum"), "says how to add one: {text}");
    assert!(check_bind(open, true).is_ok());
    assert!(check_bind("127.0.0.1:8080".parse().unwrap(), false).is_ok());
    assert!(check_bind("[::1]:8080".parse().unwrap(), false).is_ok());
}

/// The official `openai` Python SDK against the gateway (chat completions, structured outputs,
/// embeddings in base64 and as floats, typed errors), installed (pinned, cached) by
/// `scripts/peers/openai-sdk.sh`. Never skipped: without the SDK the test fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_talks_to_the_gateway() {
    let python =
        tokio::task::spawn_blocking(|| exoclaw_testkit::peers::obtain("openai-sdk.sh")).await.unwrap();
    let capital = Recorder::new(vec![
        StreamEvent::TextDelta { text: r#"{"city": "Paris", "country": "France"}"#.into() },
        StreamEvent::Finish { reason: StopReason::EndTurn },
    ]);
    let local = tokio::task::spawn_blocking(|| {
        let model = LocalModel::load(&exoclaw_testkit::peers::smollm2_gguf()).unwrap();
        LocalProvider::with_model(LocalOptions::default(), Arc::new(model))
    })
    .await
    .unwrap();
    let limited = ScriptedProvider::new("s", []).with_default(Outcome::FailOpen(ErrorKind::RateLimited {
        retry_after: Some(Duration::from_secs(3)),
    }));
    let source = StaticModels::new()
        .with(
            "fast",
            Arc::new(ScriptedProvider::new("s", []).with_default(Outcome::Text("hello there world".into()))),
            "m",
        )
        .with("tools", Recorder::new(tool_call_events()), "m")
        .with("limited", Arc::new(limited), "m")
        .with("capital", capital.clone(), "m")
        .with("local", Arc::new(local), LOCAL_MODEL)
        .with_embedder("embed", EmbeddingModel::new(Arc::new(Counting), "counting", "c"));
    let server = start(source, TokenSet::from_tokens(["sk-test"])).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_sdk.py");
    let output = tokio::process::Command::new(&python)
        .args([script, &format!("{}/v1", server.base), "sk-test"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The schema reached the provider as the SDK sent it: strict, named after the model class.
    let requests = capital.requests.lock().unwrap();
    let Some(ResponseFormat::JsonSchema(format)) = &requests[0].params.response_format else {
        panic!("{:?}", requests[0].params)
    };
    assert_eq!((format.name.as_str(), format.strict), ("Capital", true));
    assert_eq!(format.schema["required"], json!(["city", "country"]));
}
