//! Google's Gemini API (Generative Language API, `generativelanguage.googleapis.com`).
//!
//! Wire format: <https://ai.google.dev/api/generate-content> (`generateContent`,
//! `streamGenerateContent`, `GenerateContentResponse`), function declarations
//! <https://ai.google.dev/api/caching#FunctionDeclaration>, errors
//! <https://ai.google.dev/gemini-api/docs/troubleshooting> (bodies are `google.rpc.Status`).
//!
//! Streaming uses `streamGenerateContent?alt=sse`: every `data:` payload is a whole
//! `GenerateContentResponse` holding the next piece of the answer. There is no end marker; the
//! answer ends when the server closes the body, and a `finishReason` must have been seen by then.
//! Function calls arrive whole (never in fragments), and without an id on the Gemini API, so ids
//! are generated per answer. `usageMetadata` is cumulative and may repeat in every chunk. Tool
//! results are keyed by the function's *name*, so the encoder looks the name up from the call.
//!
//! The key goes in the `x-goog-api-key` header, never in the `?key=` query parameter: URLs end up
//! in logs.
//!
//! Structured outputs: `generationConfig.responseMimeType = "application/json"`, with the schema
//! in `responseJsonSchema`, which takes JSON Schema (a documented subset of keywords), unlike the
//! older `responseSchema`, which takes an OpenAPI-style `Schema` object; the two are exclusive
//! (<https://googleapis.github.io/java-genai/javadoc/google-genai/com.google.genai.types/-generate-content-config/response-json-schema.html>).

use crate::ProviderOptions;
use crate::model_name;
use crate::options::{KeyedHeaders, keyed_transport, process_env};
use crate::transport::{Outgoing, Transport};
use crate::wire::{
    StreamDecoder, WireError, check_vector_count, kind_for_status, preview, retry_after, unexpected,
    whole_tool_call,
};
use async_trait::async_trait;
use exoclaw_core::{Capabilities, Embedder, ErrorKind, EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_types::{
    ChatRequest, ChatResponse, EmbeddingRequest, Embeddings, ImageSource, ModelId, Part, ResponseFormat,
    Role, StopReason, StreamEvent, ToolChoice, Usage,
};
use http::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Where the API lives when neither config nor environment says otherwise.
const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// Variables holding a base URL, first set one wins.
const BASE_URL_ENV: &[&str] = &["GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"];
/// Variables holding an API key, first set one wins (Google's SDKs read the same two).
const API_KEY_ENV: &[&str] = &["GEMINI_API_KEY", "GOOGLE_API_KEY"];
/// The key goes in `x-goog-api-key` (not in the URL, where it would reach logs).
const HEADERS: KeyedHeaders = KeyedHeaders { key: "x-goog-api-key", fixed: &[] };
/// `@type` of the `google.rpc.RetryInfo` error detail.
const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// `@type` of the `google.rpc.ErrorInfo` error detail.
const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// Most pages of the model list followed before giving up on a server that never stops paging.
const MAX_MODEL_PAGES: usize = 20;

/// A provider for Google's Gemini API.
#[derive(Debug)]
pub struct Gemini {
    base_url: String,
    transport: Transport,
}

impl Gemini {
    /// A Gemini provider with these options. The instance name defaults to `gemini` and the base
    /// URL to `https://generativelanguage.googleapis.com/v1beta`. Fails when no key is given.
    pub fn new(options: ProviderOptions) -> Result<Self, ProviderError> {
        let (base_url, transport) =
            keyed_transport(options, "gemini", DEFAULT_BASE_URL, API_KEY_ENV, HEADERS, classify_error)?;
        Ok(Self { base_url, transport })
    }

    /// A Gemini provider configured from `GEMINI_BASE_URL` / `GOOGLE_GEMINI_BASE_URL` and
    /// `GEMINI_API_KEY` / `GOOGLE_API_KEY`.
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::new(ProviderOptions::default().with_env(BASE_URL_ENV, API_KEY_ENV, process_env))
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `{base}/models/{model}:{method}`; a model given as `models/…` (the API's resource name) is
    /// accepted too. The name is caller text in a URL path: it must be one segment (no further
    /// `/`, no `..`) and is percent-encoded, so it can never add a query (`?key=…`), a fragment or
    /// another method; anything else is refused as an invalid request.
    fn method_url(&self, model: &ModelId, method: &str) -> Result<String, ProviderError> {
        let model = model.as_str();
        let model = model.strip_prefix("models/").unwrap_or(model);
        let segment = model_name::path_segment(self.transport.name(), model)?;
        Ok(format!("{}/models/{segment}:{method}", self.base_url))
    }

    fn post(&self, url: String, body: &Value) -> Result<Outgoing, ProviderError> {
        self.transport.post_json(self.transport.uri(url)?, body)
    }
}

/// Most texts one `batchEmbedContents` call takes (the API's limit is 100).
const EMBEDDING_BATCH: usize = 100;

#[async_trait]
impl Embedder for Gemini {
    /// `POST {base}/models/{model}:batchEmbedContents`
    /// (<https://ai.google.dev/api/embeddings#method:-models.batchembedcontents>) per batch of 100.
    /// The API reports no token counts for embeddings.
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        let url = self.method_url(&request.model, "batchEmbedContents")?;
        let mut vectors = Vec::with_capacity(request.inputs.len());
        for batch in request.inputs.chunks(EMBEDDING_BATCH) {
            let body = encode_embeddings(&request, batch);
            let json = self.transport.json(self.post(url.clone(), &body)?, "embeddings").await?;
            vectors.extend(decode_embeddings(&json, batch.len()).map_err(|e| self.transport.error(e))?);
        }
        Ok(Embeddings { vectors, input_tokens: None })
    }
}

/// The `batchEmbedContents` body for `batch` (inputs of `request`).
fn encode_embeddings(request: &EmbeddingRequest, batch: &[String]) -> Value {
    let model = request.model.as_str();
    let model = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
    let requests: Vec<Value> = batch
        .iter()
        .map(|text| {
            let mut one = json!({"model": model, "content": {"parts": [{"text": text}]}});
            if let Some(dimensions) = request.dimensions {
                one["outputDimensionality"] = json!(dimensions);
            }
            one
        })
        .collect();
    json!({"requests": requests})
}

/// The vectors of a `batchEmbedContents` answer, one per text of the batch, in order.
fn decode_embeddings(json: &Value, expected: usize) -> Result<Vec<Vec<f32>>, WireError> {
    #[derive(Deserialize)]
    struct Embedding {
        values: Vec<f32>,
    }
    let vectors = Vec::<Embedding>::deserialize(&json["embeddings"])
        .map_err(|_| unexpected("embeddings answer", &json.to_string()))?;
    check_vector_count(vectors.len(), expected)?;
    Ok(vectors.into_iter().map(|e| e.values).collect())
}

#[async_trait]
impl Provider for Gemini {
    fn name(&self) -> &str {
        self.transport.name()
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let body = encode_request(&request);
        let url = format!("{}?alt=sse", self.method_url(&request.model, "streamGenerateContent")?);
        let (response, started) = self.transport.send(self.post(url, &body)?).await?;
        Ok(self.transport.sse(response, GeminiDecoder::default(), started))
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = encode_request(&request);
        let url = self.method_url(&request.model, "generateContent")?;
        self.transport.whole_answer(self.post(url, &body)?, "generateContent response", decode_response).await
    }

    fn capabilities(&self, _model: &ModelId) -> Capabilities {
        Capabilities { images: true, thinking: true, ..Capabilities::default() }
    }

    /// `GET {base}/models` (<https://ai.google.dev/api/models#method:-models.list>), following
    /// `nextPageToken`. Models that list their methods and cannot `generateContent` (embedding
    /// models, …) are left out.
    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut models = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let mut url = format!("{}/models?pageSize=1000", self.base_url);
            if let Some(token) = &page_token {
                url.push_str("&pageToken=");
                url.push_str(&model_name::percent_encode(token));
            }
            let json = self.transport.json(self.transport.get(url)?, "model list").await?;
            let list = match json.get("models") {
                Some(Value::Array(list)) => list.as_slice(),
                // An account with no models answers `{}`.
                None | Some(Value::Null) => &[],
                Some(_) => return Err(self.transport.error(unexpected("model list", &json.to_string()))),
            };
            models.extend(list.iter().filter(|m| can_generate(m)).filter_map(|m| {
                let name = m["name"].as_str()?;
                Some(ModelInfo {
                    id: ModelId::from(name.strip_prefix("models/").unwrap_or(name)),
                    display_name: m["displayName"].as_str().map(str::to_owned),
                })
            }));
            match json["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(next) if page_token.as_deref() != Some(next) => page_token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(models)
    }
}

/// Whether a listed model can answer chats: true unless it lists its methods without
/// `generateContent`.
fn can_generate(model: &Value) -> bool {
    match model["supportedGenerationMethods"].as_array() {
        Some(methods) => methods.iter().any(|m| m == "generateContent"),
        None => true,
    }
}

/// The request body for `request`; the same for streamed and whole answers (the endpoint decides).
///
/// Not sent, because the API has no field for them: `request.user` (Gemini takes no end-user
/// identifier) and `params.parallel_tool_calls` (`functionCallingConfig` has only a mode and
/// allowed names, no switch for several calls per answer, so `Some(false)` cannot be asked for).
pub(crate) fn encode_request(request: &ChatRequest) -> Value {
    let mut system = Vec::new();
    if let Some(text) = request.system.as_deref().filter(|t| !t.is_empty()) {
        system.push(json!({"text": text}));
    }
    let mut contents: Vec<Value> = Vec::with_capacity(request.messages.len());
    for (position, message) in request.messages.iter().enumerate() {
        if message.role == Role::System {
            // Gemini has no system turns: system messages join the system instruction.
            system.extend(message.parts.iter().filter_map(|p| match p {
                Part::Text { text } if !text.is_empty() => Some(json!({"text": text})),
                _ => None,
            }));
            continue;
        }
        let role = if message.role == Role::Assistant { "model" } else { "user" };
        for part in &message.parts {
            let (role, part) = match part {
                Part::Text { text } if text.is_empty() => continue, // an empty text part is a 400
                Part::Text { text } => (role, json!({"text": text})),
                Part::Image { source: ImageSource::Base64 { media_type, data } } => {
                    (role, json!({"inlineData": {"mimeType": media_type, "data": data}}))
                }
                Part::Image { source: ImageSource::Url { url } } => {
                    (role, json!({"fileData": {"fileUri": url}}))
                }
                Part::ToolCall(call) => {
                    (role, json!({"functionCall": {"name": call.name, "args": args_object(&call.arguments)}}))
                }
                Part::ToolResult(result) => {
                    let name = tool_name(request, position, &result.call_id);
                    let response = if result.is_error {
                        json!({"error": result.content})
                    } else {
                        json!({"content": result.content})
                    };
                    // Function responses are the user's turn, whichever message carries them.
                    ("user", json!({"functionResponse": {"name": name, "response": response}}))
                }
                // Thought summaries are not sent back; the API does not take them as input.
                Part::Thinking { .. } => continue,
            };
            push_part(&mut contents, role, part);
        }
    }

    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !request.tools.is_empty() {
        // `parametersJsonSchema` takes full JSON Schema; `parameters` only an OpenAPI subset
        // (https://ai.google.dev/api/caching#FunctionDeclaration).
        let declarations = request.tools.iter().map(
            |t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": t.input_schema}),
        );
        body.insert("tools".into(), json!([{"functionDeclarations": declarations.collect::<Vec<_>>()}]));
    }
    if let Some(choice) = &request.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool { name } => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }
    let p = &request.params;
    let mut generation = Map::new();
    if let Some(t) = p.temperature {
        generation.insert("temperature".into(), json!(t));
    }
    if let Some(n) = p.max_tokens {
        generation.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(top_p) = p.top_p {
        generation.insert("topP".into(), json!(top_p));
    }
    if !p.stop.is_empty() {
        generation.insert("stopSequences".into(), json!(p.stop));
    }
    if let Some(seed) = p.seed {
        // The API's seed is an int32: keep the low 32 bits, so a seed still means one sampling.
        generation.insert("seed".into(), json!(seed as u32 as i32));
    }
    match &p.response_format {
        // Free text is the default: nothing to ask for.
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            generation.insert("responseMimeType".into(), json!("application/json"));
        }
        // Gemini always holds the answer to the schema, strict or not; the format's name and
        // description have no field.
        Some(ResponseFormat::JsonSchema(format)) => {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseJsonSchema".into(), format.schema.clone());
        }
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Value::Object(body)
}

/// Appends `part` to the last content when it has the same role (Gemini wants turns to
/// alternate), else starts a new content.
fn push_part(contents: &mut Vec<Value>, role: &str, part: Value) {
    if let Some(last) = contents.last_mut().filter(|c| c["role"] == role)
        && let Some(parts) = last["parts"].as_array_mut()
    {
        parts.push(part);
        return;
    }
    contents.push(json!({"role": role, "parts": [part]}));
}

/// The function a tool result answers. Generated call ids (`call_0`, …) restart with every answer,
/// so the nearest earlier call with the id wins; then any call in the request; then, as a last
/// resort, the id itself (Gemini needs some name).
fn tool_name<'a>(request: &'a ChatRequest, position: usize, call_id: &'a str) -> &'a str {
    request.messages[..position]
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls())
        .find(|c| c.id == call_id)
        .map(|c| c.name.as_str())
        .or_else(|| request.tool_name_for_call(call_id))
        .unwrap_or(call_id)
}

/// A call's arguments as the JSON object `functionCall.args` must be. Arguments kept verbatim as
/// text (another vendor's malformed call) are parsed if they are an object after all, else dropped.
fn args_object(arguments: &Value) -> Value {
    match arguments {
        Value::Object(_) => arguments.clone(),
        Value::String(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => json!({}),
        },
        _ => json!({}),
    }
}

/// One `GenerateContentResponse`: a streamed chunk or a whole answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    /// A failure reported inside a 200 stream.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Option<Vec<WirePart>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    /// Set on reasoning parts (with `thinkingConfig.includeThoughts`).
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    /// Optional; the Gemini API usually leaves it out.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

/// `usageMetadata` (<https://ai.google.dev/api/generate-content#UsageMetadata>).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    /// Includes cached tokens.
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
    /// Reasoning tokens, not counted in `candidatesTokenCount`.
    #[serde(default)]
    thoughts_token_count: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        let output_tokens = match (u.candidates_token_count, u.thoughts_token_count) {
            (None, None) => None,
            (candidates, thoughts) => Some(candidates.unwrap_or(0) + thoughts.unwrap_or(0)),
        };
        Usage {
            input_tokens: u.prompt_token_count,
            output_tokens,
            cache_read_tokens: u.cached_content_token_count,
            cache_write_tokens: None,
        }
    }
}

/// Decodes `streamGenerateContent?alt=sse` chunks.
#[derive(Debug, Default)]
pub(crate) struct GeminiDecoder {
    /// Function calls emitted so far; the next one's index.
    calls: u32,
    /// The first candidate's `finishReason`, verbatim.
    finish_reason: Option<String>,
    /// The prompt was blocked (`promptFeedback.blockReason`): no candidates will come.
    blocked: bool,
    /// The latest cumulative usage.
    usage: Option<Usage>,
}

impl GeminiDecoder {
    fn response(&mut self, response: WireResponse, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if let Some(error) = response.error {
            return Err(error_from_body(None, None, &error));
        }
        if let Some(usage) = response.usage_metadata {
            let usage = Usage::from(usage);
            if !usage.is_unreported() {
                // Cumulative: later counts replace earlier ones, field by field.
                self.usage.get_or_insert_default().update(usage);
            }
        }
        if response.prompt_feedback.is_some_and(|f| f.block_reason.is_some()) {
            self.blocked = true;
        }
        for candidate in response.candidates.unwrap_or_default() {
            if candidate.index.unwrap_or(0) != 0 {
                continue; // only the first of `candidateCount` answers is used
            }
            let parts = candidate.content.and_then(|c| c.parts).unwrap_or_default();
            for part in parts {
                if let Some(call) = part.function_call {
                    let index = self.calls;
                    self.calls += 1;
                    let id = call.id.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("call_{index}"));
                    let arguments = call.args.unwrap_or_else(|| json!({}));
                    whole_tool_call(index, id, call.name.unwrap_or_default(), arguments, out);
                } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    out.push(if part.thought == Some(true) {
                        StreamEvent::ThinkingDelta { text }
                    } else {
                        StreamEvent::TextDelta { text }
                    });
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }
}

impl StreamDecoder for GeminiDecoder {
    fn event(&mut self, _event: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if data.trim().is_empty() {
            return Ok(());
        }
        let response: WireResponse =
            serde_json::from_str(data).map_err(|e| WireError::bad_json("stream chunk", data, &e))?;
        self.response(response, out)
    }

    fn is_done(&self) -> bool {
        false // no end marker: the answer ends with the body
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        let reason = match &self.finish_reason {
            Some(reason) => stop_reason(reason, self.calls > 0),
            None if self.blocked => StopReason::ContentFilter,
            None => {
                return Err(WireError::protocol(
                    "the stream ended before the answer finished (no finishReason): the connection was cut",
                ));
            }
        };
        if let Some(usage) = self.usage.take() {
            out.push(StreamEvent::Usage(usage));
        }
        out.push(StreamEvent::Finish { reason });
        Ok(())
    }
}

/// The events a whole `generateContent` answer amounts to.
pub(crate) fn decode_response(body: &Value) -> Result<Vec<StreamEvent>, WireError> {
    let response = WireResponse::deserialize(body)
        .map_err(|e| WireError::bad_json("generateContent response", &body.to_string(), &e))?;
    let has_candidates = response.candidates.as_ref().is_some_and(|c| !c.is_empty());
    let blocked = response.prompt_feedback.as_ref().is_some_and(|f| f.block_reason.is_some());
    if !has_candidates && !blocked && response.error.is_none() {
        return Err(unexpected("generateContent response (no candidates)", &body.to_string()));
    }
    let mut decoder = GeminiDecoder::default();
    let mut out = Vec::new();
    decoder.response(response, &mut out)?;
    if decoder.finish_reason.is_none() && !decoder.blocked {
        decoder.finish_reason = Some("STOP".to_owned()); // a whole answer is finished by definition
    }
    decoder.end(&mut out)?;
    Ok(out)
}

/// Gemini's `finishReason` (<https://ai.google.dev/api/generate-content#FinishReason>). A model
/// that called functions says `STOP`; the caller still has tools to run, so that is a tool-use stop.
fn stop_reason(reason: &str, has_tool_calls: bool) -> StopReason {
    match reason {
        "STOP" if has_tool_calls => StopReason::ToolUse,
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            StopReason::ContentFilter
        }
        other => StopReason::Other(other.to_owned()),
    }
}

/// Reads an error response: a `google.rpc.Status` wrapped as `{"error": {"code", "message",
/// "status", "details": [...]}}` (<https://ai.google.dev/gemini-api/docs/troubleshooting>).
pub(crate) fn classify_error(status: u16, headers: &HeaderMap, body: &str) -> WireError {
    let retry = retry_after(headers);
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        // `streamGenerateContent` without `alt=sse` answers a JSON array, errors included.
        let json = match &json {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            other => other,
        };
        if let Some(error) = json.get("error").filter(|e| e.is_object() || e.is_string()) {
            return error_from_body(Some(status), retry, error);
        }
    }
    let text = if body.trim().is_empty() { "(empty body)".to_owned() } else { preview(body.trim()) };
    WireError::new(kind_for_status(status, retry), text)
}

/// The error a `google.rpc.Status` object means. `status` is the HTTP status (`None` inside a
/// stream); `header_retry` the delay the headers asked for.
fn error_from_body(status: Option<u16>, header_retry: Option<Duration>, error: &Value) -> WireError {
    let message = error["message"].as_str().or(error.as_str()).unwrap_or("(no message)");
    let code = error["status"].as_str().unwrap_or_default();
    let details = error["details"].as_array().map(Vec::as_slice).unwrap_or_default();
    let detail = |kind: &str, field: &str| {
        details.iter().filter(|d| d["@type"] == kind).find_map(|d| d[field].as_str())
    };
    let reason = detail(ERROR_INFO, "reason");
    let retry = detail(RETRY_INFO, "retryDelay").and_then(proto_duration).or(header_retry);
    let kind = match (code, reason) {
        // Google answers a bad key with 400 INVALID_ARGUMENT; only the ErrorInfo reason says why.
        (_, Some("API_KEY_INVALID")) | ("UNAUTHENTICATED", _) => ErrorKind::Auth,
        ("PERMISSION_DENIED", _) => ErrorKind::Permission,
        ("NOT_FOUND", _) => ErrorKind::ModelNotFound,
        ("RESOURCE_EXHAUSTED", _) => ErrorKind::RateLimited { retry_after: retry },
        ("UNAVAILABLE", _) => ErrorKind::Overloaded,
        ("INTERNAL", _) => ErrorKind::Server,
        ("DEADLINE_EXCEEDED", _) => ErrorKind::Timeout,
        ("INVALID_ARGUMENT" | "FAILED_PRECONDITION", _) if exceeds_context(message) => {
            ErrorKind::ContextLength
        }
        ("INVALID_ARGUMENT" | "FAILED_PRECONDITION", _) => ErrorKind::InvalidRequest,
        _ => match status {
            Some(status) => kind_for_status(status, retry),
            None => ErrorKind::Server, // an error inside a 200 stream
        },
    };
    let message = match (code, reason) {
        ("", None) => message.to_owned(),
        (code, None) => format!("{message} [{code}]"),
        ("", Some(reason)) => format!("{message} [{reason}]"),
        (code, Some(reason)) => format!("{message} [{code}: {reason}]"),
    };
    WireError::new(kind, message)
}

/// Whether an INVALID_ARGUMENT message says the prompt is too long for the model. Google gives no
/// structured code or detail for this, only the text "The input token count (N) exceeds the
/// maximum number of tokens allowed (M)." — the one place an error is recognised by its words.
fn exceeds_context(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("input token count") && message.contains("exceeds the maximum")
}

/// A `google.protobuf.Duration` in its JSON form: seconds with an `s` suffix (`"7s"`, `"1.5s"`).
fn proto_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::{GenerationParams, JsonSchemaFormat, Message, ToolCall, ToolResult, ToolSpec};
    use http::header::HeaderValue;
    use pretty_assertions::assert_eq;

    fn call(id: &str, name: &str, arguments: Value) -> Part {
        Part::ToolCall(ToolCall { id: id.into(), name: name.into(), arguments })
    }

    fn result(call_id: &str, content: &str, is_error: bool) -> ToolResult {
        ToolResult { call_id: call_id.into(), content: content.into(), is_error }
    }

    fn decode(chunks: &[Value]) -> (Vec<StreamEvent>, Result<(), WireError>) {
        let mut decoder = GeminiDecoder::default();
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = decoder.event("message", &chunk.to_string(), &mut out) {
                return (out, Err(e));
            }
        }
        let end = decoder.end(&mut out);
        (out, end)
    }

    fn text_chunk(text: &str, finish: Option<&str>, usage: Option<Value>) -> Value {
        let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut chunk = json!({"candidates": [candidate], "modelVersion": "gemini-2.5-flash"});
        if let Some(usage) = usage {
            chunk["usageMetadata"] = usage;
        }
        chunk
    }

    #[test]
    fn request_carries_system_tools_config_and_params() {
        let request = ChatRequest::new("gemini-2.5-flash", vec![Message::user("Hi")])
            .with_system("Be brief.")
            .with_tools(vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather".into(),
                input_schema: json!({"type": "object", "additionalProperties": false}),
            }])
            .with_params(GenerationParams {
                temperature: Some(0.5),
                max_tokens: Some(64),
                top_p: Some(0.5),
                stop: vec!["END".into()],
                seed: Some(3),
                ..GenerationParams::default()
            });
        let mut request = request;
        request.tool_choice = Some(ToolChoice::Tool { name: "get_weather".into() });
        let body = encode_request(&request);
        assert_eq!(body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        assert_eq!(body["contents"], json!([{"role": "user", "parts": [{"text": "Hi"}]}]));
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                "parametersJsonSchema": {"type": "object", "additionalProperties": false}}]}])
        );
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        );
        assert_eq!(
            body["generationConfig"],
            json!({"temperature": 0.5, "maxOutputTokens": 64, "topP": 0.5, "stopSequences": ["END"], "seed": 3})
        );
        let bare = encode_request(&ChatRequest::new("m", vec![Message::user("Hi")]));
        assert!(bare.get("generationConfig").is_none() && bare.get("systemInstruction").is_none(), "{bare}");
        assert!(bare.get("tools").is_none() && bare.get("toolConfig").is_none(), "{bare}");
    }

    fn with_params(params: GenerationParams) -> ChatRequest {
        ChatRequest::new("gemini-2.5-flash", vec![Message::user("Capital of France?")]).with_params(params)
    }

    fn with_format(format: ResponseFormat) -> Value {
        encode_request(&with_params(GenerationParams {
            response_format: Some(format),
            ..GenerationParams::default()
        }))
    }

    #[test]
    fn a_json_object_format_asks_for_json() {
        assert_eq!(
            with_format(ResponseFormat::JsonObject)["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        assert!(with_format(ResponseFormat::Text).get("generationConfig").is_none());
    }

    #[test]
    fn a_json_schema_format_goes_in_response_json_schema() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false});
        let body = with_format(ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "place".into(),
            description: Some("Where it is.".into()),
            schema: schema.clone(),
            strict: true,
        }));
        assert_eq!(
            body["generationConfig"],
            json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
        );
    }

    #[test]
    fn parallel_tool_calls_and_the_end_user_are_not_sent() {
        let tool =
            ToolSpec { name: "f".into(), description: "F".into(), input_schema: json!({"type": "object"}) };
        let mut request =
            with_params(GenerationParams { parallel_tool_calls: Some(false), ..GenerationParams::default() })
                .with_tools(vec![tool]);
        request.user = Some("user-7f3a".into());
        let body = encode_request(&request);
        assert!(body.get("toolConfig").is_none() && body.get("generationConfig").is_none(), "{body}");
        assert!(!body.to_string().contains("user-7f3a"), "{body}");
    }

    #[test]
    fn tool_results_are_user_function_responses_named_after_their_call() {
        let request = ChatRequest::new(
            "m",
            vec![
                Message::user("Weather and time?"),
                Message::new(
                    Role::Assistant,
                    vec![
                        Part::Thinking { text: "hmm".into(), signature: None },
                        Part::text("Checking."),
                        call("call_1", "get_weather", json!({"city": "Paris"})),
                        call("call_2", "get_time", json!({"timezone": "Mars"})),
                    ],
                ),
                Message::tool_results([
                    result("call_1", "sunny", false),
                    result("call_2", "no such zone", true),
                ]),
                Message::user("Thanks."),
            ],
        );
        let body = encode_request(&request);
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather and time?"}]},
                {"role": "model", "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {"timezone": "Mars"}}},
                ]},
                // The results and the next user message merge into one user turn.
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
                    {"functionResponse": {"name": "get_time", "response": {"error": "no such zone"}}},
                    {"text": "Thanks."},
                ]},
            ])
        );
    }

    #[test]
    fn generated_ids_reused_across_answers_resolve_to_the_nearest_call() {
        let request = ChatRequest::new(
            "m",
            vec![
                Message::new(Role::Assistant, vec![call("call_0", "get_weather", json!({}))]),
                Message::tool_results([result("call_0", "sunny", false)]),
                Message::new(Role::Assistant, vec![call("call_0", "get_time", json!({}))]),
                Message::tool_results([result("call_0", "noon", false)]),
            ],
        );
        let body = encode_request(&request);
        assert_eq!(body["contents"][1]["parts"][0]["functionResponse"]["name"], "get_weather");
        assert_eq!(body["contents"][3]["parts"][0]["functionResponse"]["name"], "get_time");
    }

    #[test]
    fn images_system_messages_and_odd_arguments() {
        let request = ChatRequest::new(
            "m",
            vec![
                Message::new(Role::System, vec![Part::text("Also be kind.")]),
                Message::new(
                    Role::User,
                    vec![
                        Part::text("What is this?"),
                        Part::Image {
                            source: ImageSource::Base64 {
                                media_type: "image/png".into(),
                                data: "AAA".into(),
                            },
                        },
                        Part::Image { source: ImageSource::Url { url: "gs://bucket/cat.jpg".into() } },
                    ],
                ),
                Message::new(Role::Assistant, vec![call("c", "f", Value::String("{\"a\":".into()))]),
            ],
        )
        .with_system("Be brief.");
        let body = encode_request(&request);
        assert_eq!(
            body["systemInstruction"]["parts"],
            json!([{"text": "Be brief."}, {"text": "Also be kind."}])
        );
        assert_eq!(
            body["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "AAA"}})
        );
        assert_eq!(body["contents"][0]["parts"][2], json!({"fileData": {"fileUri": "gs://bucket/cat.jpg"}}));
        assert_eq!(body["contents"][1]["parts"][0]["functionCall"]["args"], json!({}));
    }

    #[test]
    fn repeated_cumulative_usage_is_reported_once_before_finish() {
        let (events, end) = decode(&[
            text_chunk("Hel", None, Some(json!({"promptTokenCount": 10, "totalTokenCount": 10}))),
            text_chunk(
                "lo",
                None,
                Some(json!({"promptTokenCount": 10, "candidatesTokenCount": 1, "totalTokenCount": 11})),
            ),
            text_chunk(
                "",
                Some("STOP"),
                Some(json!({"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 5,
                            "cachedContentTokenCount": 4, "totalTokenCount": 17})),
            ),
        ]);
        end.unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta { text: "Hel".into() },
                StreamEvent::TextDelta { text: "lo".into() },
                StreamEvent::Usage(Usage {
                    input_tokens: Some(10),
                    output_tokens: Some(7),
                    cache_read_tokens: Some(4),
                    cache_write_tokens: None,
                }),
                StreamEvent::Finish { reason: StopReason::EndTurn },
            ]
        );
    }

    #[test]
    fn thought_parts_are_thinking_and_no_usage_means_none() {
        let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": true},
            {"text": "Hi", "thoughtSignature": "c2ln"},
        ]}, "finishReason": "STOP"}]});
        let (events, end) = decode(&[chunk]);
        end.unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::ThinkingDelta { text: "Let me think.".into() },
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::Finish { reason: StopReason::EndTurn },
            ]
        );
    }

    #[test]
    fn a_stream_without_finish_reason_is_cut_off() {
        let (events, end) = decode(&[text_chunk("Hel", None, Some(json!({"promptTokenCount": 3})))]);
        assert_eq!(events, vec![StreamEvent::TextDelta { text: "Hel".into() }]);
        assert_eq!(end.unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn function_calls_arrive_whole_with_indexes_across_chunks() {
        let part = |name: &str, args: Value| json!({"functionCall": {"name": name, "args": args}});
        let (events, end) = decode(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [part("get_weather", json!({"city": "Paris"}))]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"id": "fc-7", "name": "get_time", "args": {"timezone": "Europe/Paris"}}}
            ]}, "finishReason": "STOP"}]}),
        ]);
        end.unwrap();
        let calls: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall { index, call } => Some((*index, call.id.as_str(), call.name.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(calls, vec![(0, "call_0", "get_weather"), (1, "fc-7", "get_time")]);
        assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));
        assert!(
            events.contains(&StreamEvent::ToolCallArgsDelta {
                index: 0,
                fragment: "{\"city\":\"Paris\"}".into()
            })
        );
    }

    #[test]
    fn finish_reasons_and_blocked_prompts() {
        assert_eq!(stop_reason("MAX_TOKENS", false), StopReason::MaxTokens);
        assert_eq!(stop_reason("RECITATION", false), StopReason::ContentFilter);
        assert_eq!(
            stop_reason("MALFORMED_FUNCTION_CALL", false),
            StopReason::Other("MALFORMED_FUNCTION_CALL".into())
        );
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}});
        let (events, end) = decode(std::slice::from_ref(&blocked));
        end.unwrap();
        assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::ContentFilter }));
        assert_eq!(decode_response(&blocked).unwrap(), events);
    }

    #[test]
    fn in_stream_errors_are_typed() {
        let error =
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}});
        let (events, end) = decode(&[text_chunk("Hel", None, None), error]);
        assert_eq!(events.len(), 1);
        let err = end.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded);
        assert_eq!(err.message, "The model is overloaded. [UNAVAILABLE]");
    }

    #[test]
    fn whole_answers_decode_like_streams() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello, world!"}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9},
        });
        assert_eq!(
            decode_response(&body).unwrap(),
            vec![
                StreamEvent::TextDelta { text: "Hello, world!".into() },
                StreamEvent::Usage(Usage {
                    input_tokens: Some(5),
                    output_tokens: Some(4),
                    ..Usage::default()
                }),
                StreamEvent::Finish { reason: StopReason::EndTurn },
            ]
        );
        assert_eq!(decode_response(&json!({"modelVersion": "x"})).unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn errors_read_status_reason_and_retry_info() {
        let headers = HeaderMap::new();
        let body = |status: &str, message: &str, details: Value| {
            json!({"error": {"code": 400, "message": message, "status": status, "details": details}})
                .to_string()
        };
        let bad_key = body(
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([{"@type": ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]),
        );
        let e = classify_error(400, &headers, &bad_key);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert_eq!(
            e.message,
            "API key not valid. Please pass a valid API key. [INVALID_ARGUMENT: API_KEY_INVALID]"
        );

        let limited =
            body("RESOURCE_EXHAUSTED", "quota", json!([{"@type": RETRY_INFO, "retryDelay": "1.5s"}]));
        let mut with_header = HeaderMap::new();
        with_header.insert("retry-after", HeaderValue::from_static("30"));
        let retry_after = Some(Duration::from_millis(1500));
        assert_eq!(classify_error(429, &with_header, &limited).kind, ErrorKind::RateLimited { retry_after });
        let no_info = body("RESOURCE_EXHAUSTED", "quota", json!([]));
        let retry_after = Some(Duration::from_secs(30));
        assert_eq!(classify_error(429, &with_header, &no_info).kind, ErrorKind::RateLimited { retry_after });

        let long = body(
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            json!([]),
        );
        assert_eq!(classify_error(400, &headers, &long).kind, ErrorKind::ContextLength);
        let invalid = body("INVALID_ARGUMENT", "Invalid JSON payload received.", json!([]));
        assert_eq!(classify_error(400, &headers, &invalid).kind, ErrorKind::InvalidRequest);
        for (status, kind) in [
            ("PERMISSION_DENIED", ErrorKind::Permission),
            ("NOT_FOUND", ErrorKind::ModelNotFound),
            ("UNAVAILABLE", ErrorKind::Overloaded),
            ("INTERNAL", ErrorKind::Server),
            ("DEADLINE_EXCEEDED", ErrorKind::Timeout),
            ("UNAUTHENTICATED", ErrorKind::Auth),
        ] {
            assert_eq!(classify_error(400, &headers, &body(status, "x", json!([]))).kind, kind, "{status}");
        }
        // Wrapped in an array, as the non-SSE stream endpoint does.
        assert_eq!(classify_error(400, &headers, &format!("[{bad_key}]")).kind, ErrorKind::Auth);
        let plain = classify_error(502, &headers, "<html>Bad Gateway</html>");
        assert_eq!((plain.kind, plain.message.as_str()), (ErrorKind::Server, "<html>Bad Gateway</html>"));
    }

    #[test]
    fn durations() {
        assert_eq!(proto_duration("7s"), Some(Duration::from_secs(7)));
        assert_eq!(proto_duration("0.25s"), Some(Duration::from_millis(250)));
        assert_eq!(proto_duration("7"), None);
    }

    #[test]
    fn a_key_is_required_and_the_defaults_apply() {
        let err = Gemini::new(ProviderOptions::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.message.contains("GEMINI_API_KEY"), "{}", err.message);
        let gemini = Gemini::new(ProviderOptions::default().api_key("k")).unwrap();
        assert_eq!(gemini.name(), "gemini");
        assert_eq!(gemini.base_url(), DEFAULT_BASE_URL);
        assert_eq!(
            gemini.method_url(&ModelId::from("models/gemini-2.5-flash"), "generateContent").unwrap(),
            format!("{DEFAULT_BASE_URL}/models/gemini-2.5-flash:generateContent")
        );
        let env = |var: &str| match var {
            "GOOGLE_GEMINI_BASE_URL" => Some("http://proxy/v1beta/".to_owned()),
            "GOOGLE_API_KEY" => Some("g".to_owned()),
            _ => None,
        };
        let options = ProviderOptions::default().with_env(BASE_URL_ENV, API_KEY_ENV, env);
        assert_eq!(Gemini::new(options).unwrap().base_url(), "http://proxy/v1beta");
    }

    #[test]
    fn embeddings_are_a_batch_of_requests_naming_the_model_and_come_back_in_order() {
        let mut request = EmbeddingRequest::new("gemini-embedding-001", vec!["a".into(), "b".into()]);
        request.dimensions = Some(768);
        let body = encode_embeddings(&request, &request.inputs);
        assert_eq!(
            body["requests"][1],
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 768})
        );
        let answer = json!({"embeddings": [{"values": [1.0, 0.0]}, {"values": [0.0, 1.0]}]});
        assert_eq!(decode_embeddings(&answer, 2).unwrap(), vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert!(decode_embeddings(&answer, 3).is_err());
    }
}
