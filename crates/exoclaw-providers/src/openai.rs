//! OpenAI Chat Completions (`POST {base}/chat/completions`) and every server that speaks it.
//!
//! Wire format: <https://platform.openai.com/docs/api-reference/chat/create> (request, response)
//! and <https://platform.openai.com/docs/api-reference/chat-streaming> (chunks). Streamed tool calls
//! arrive as `delta.tool_calls[]` keyed by `index`: the first fragment of a call carries its `id`
//! and `function.name`, later ones only `function.arguments` pieces — except on servers such as
//! llama-cpp-python, which repeat `id` and `name` in every chunk; those repeats are ignored.
//! With `stream_options.include_usage`, usage arrives in a last chunk whose `choices` is empty,
//! after the chunk carrying `finish_reason`, and before `data: [DONE]`.
//!
//! Structured outputs go as `response_format` (<https://platform.openai.com/docs/guides/structured-outputs>),
//! which the compatible servers in [`crate::presets`] read in the same shape (llama-server and
//! Ollama turn the schema into a grammar). Fields a server does not know (`parallel_tool_calls` and
//! `user` at Ollama, `user` at llama-server) are ignored by it, not rejected, so every preset sends
//! the same fields.

use crate::ProviderOptions;
use crate::model_name;
use crate::options::{missing_key, process_env, trim_base};
use crate::presets::{ModelListing, Preset};
use crate::transport::{Outgoing, Transport, secret_header};
use crate::wire::{
    Count, StreamDecoder, WireError, check_vector_count, kind_for_status, parse_arguments, preview,
    retry_after, unexpected, whole_tool_call,
};
use async_trait::async_trait;
use exoclaw_core::{Capabilities, Embedder, ErrorKind, EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_types::{
    ChatRequest, ChatResponse, EmbeddingRequest, Embeddings, ImageSource, Message, ModelId, Part,
    ResponseFormat, Role, StopReason, StreamEvent, ToolCall, ToolChoice, Usage,
};
use http::Uri;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;

/// A provider for OpenAI's API or any member of the compatible family, chosen by [`Preset`].
#[derive(Debug)]
pub struct OpenAiCompatible {
    preset: &'static Preset,
    base_url: String,
    /// `{base_url}/chat/completions`, parsed once.
    completions: Uri,
    transport: Transport,
}

impl OpenAiCompatible {
    /// A provider for `preset` with these options; unset options take the preset's defaults.
    /// Fails when the preset needs a key and none is given, or no base URL is known.
    pub fn new(preset: &'static Preset, options: ProviderOptions) -> Result<Self, ProviderError> {
        let name = options.name.unwrap_or_else(|| preset.name.to_owned());
        let Some(base_url) = options.base_url.or(preset.default_base_url.map(str::to_owned)) else {
            let var = preset.base_url_env.first().copied().unwrap_or("the provider's base URL variable");
            return Err(ProviderError::new(
                ErrorKind::InvalidRequest,
                &name,
                format!("no base URL configured: set `base_url` in the provider's config or {var}"),
            ));
        };
        if preset.key_required && options.api_key.is_none() {
            return Err(missing_key(&name, preset.api_key_env));
        }
        let base_url = trim_base(&base_url);
        let mut headers = HeaderMap::new();
        if let Some(key) = &options.api_key {
            headers.insert(AUTHORIZATION, secret_header(&name, &format!("Bearer {}", key.expose_secret()))?);
        }
        for (header, value) in preset.headers {
            headers.insert(*header, HeaderValue::from_static(value));
        }
        let transport = Transport::new(&name, options.timeouts, options.api_key, headers, classify_error)?;
        let completions = transport.uri(format!("{base_url}/chat/completions"))?;
        Ok(Self { preset, base_url, completions, transport })
    }

    /// A provider for `preset` configured from the vendor's environment variables.
    pub fn from_env(preset: &'static Preset) -> Result<Self, ProviderError> {
        let options =
            ProviderOptions::default().with_env(preset.base_url_env, preset.api_key_env, process_env);
        Self::new(preset, options)
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn post(&self, body: &WireRequest<'_>) -> Result<Outgoing, ProviderError> {
        self.transport.post_json(self.completions.clone(), body)
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn name(&self) -> &str {
        self.transport.name()
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        model_name::check(self.name(), request.model.as_str())?;
        let body = WireRequest::new(&request, self.preset, true);
        let (response, started) = self.transport.send(self.post(&body)?).await?;
        Ok(self.transport.sse(response, OpenAiDecoder::default(), started))
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        model_name::check(self.name(), request.model.as_str())?;
        let body = WireRequest::new(&request, self.preset, false);
        self.transport.whole_answer_from_bytes(self.post(&body)?, decode_response_bytes).await
    }

    fn capabilities(&self, _model: &ModelId) -> Capabilities {
        Capabilities { images: true, ..Capabilities::default() }
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let url = match self.preset.models {
            ModelListing::OpenAi => format!("{}/models", self.base_url),
            ModelListing::OllamaTags => {
                format!("{}/api/tags", self.base_url.strip_suffix("/v1").unwrap_or(&self.base_url))
            }
        };
        let json = self.transport.json(self.transport.get(url)?, "model list").await?;
        let (list, field) = match self.preset.models {
            ModelListing::OpenAi => (&json["data"], "id"),
            ModelListing::OllamaTags => (&json["models"], "name"),
        };
        let Some(list) = list.as_array() else {
            return Err(self.transport.error(unexpected("model list", &json.to_string())));
        };
        Ok(list
            .iter()
            .filter_map(|m| m[field].as_str())
            .map(|id| ModelInfo { id: ModelId::from(id), display_name: None })
            .collect())
    }
}

/// Most inputs one `/embeddings` call carries (OpenAI takes 2,048; llama.cpp's server works through
/// a batch in one go, so smaller batches keep each call short); longer lists go in several calls.
pub const EMBEDDING_BATCH: usize = 256;

#[async_trait]
impl Embedder for OpenAiCompatible {
    /// `POST {base_url}/embeddings` per batch of [`EMBEDDING_BATCH`] inputs, floats requested.
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        model_name::check(self.transport.name(), request.model.as_str())?;
        let uri = self.transport.uri(format!("{}/embeddings", self.base_url))?;
        let mut vectors = Vec::with_capacity(request.inputs.len());
        let mut tokens = Some(0u64);
        for batch in request.inputs.chunks(EMBEDDING_BATCH) {
            let mut body =
                json!({"model": request.model.as_str(), "input": batch, "encoding_format": "float"});
            if let Some(dimensions) = request.dimensions {
                body["dimensions"] = json!(dimensions);
            }
            let json =
                self.transport.json(self.transport.post_json(uri.clone(), &body)?, "embeddings").await?;
            let (batch_vectors, batch_tokens) =
                decode_embeddings(&json, batch.len()).map_err(|e| self.transport.error(e))?;
            vectors.extend(batch_vectors);
            tokens = tokens.zip(batch_tokens).map(|(a, b)| a + b);
        }
        Ok(Embeddings { vectors, input_tokens: tokens })
    }
}

/// The vectors of an `/embeddings` answer in input order (the API numbers them by `index`), and
/// its prompt tokens; an answer with another number of vectors than `expected` is a protocol error.
pub(crate) fn decode_embeddings(
    json: &Value,
    expected: usize,
) -> Result<(Vec<Vec<f32>>, Option<u64>), WireError> {
    #[derive(Deserialize)]
    struct Item {
        #[serde(default)]
        index: Option<usize>,
        embedding: Vec<f32>,
    }
    let bad = || unexpected("embeddings answer", &json.to_string());
    let items = Vec::<Item>::deserialize(&json["data"]).map_err(|_| bad())?;
    check_vector_count(items.len(), expected)?;
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in items.into_iter().enumerate() {
        let at = item.index.unwrap_or(position);
        match slots.get_mut(at) {
            Some(slot @ None) => *slot = Some(item.embedding),
            _ => {
                return Err(WireError::protocol(format!(
                    "the embeddings answer repeats or misplaces index {at}"
                )));
            }
        }
    }
    let vectors = slots.into_iter().flatten().collect();
    Ok((vectors, json["usage"]["prompt_tokens"].as_u64()))
}

/// The request body for `request`, streamed or not, as JSON (for [`crate::WireFormat`]).
pub(crate) fn encode_request(request: &ChatRequest, preset: &Preset, stream: bool) -> Value {
    serde_json::to_value(WireRequest::new(request, preset, stream)).unwrap_or_default()
}

/// A chat completions request body, borrowing from the [`ChatRequest`]: serialized straight to
/// bytes on the way out, without an intermediate JSON tree.
#[derive(Serialize)]
pub(crate) struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<OutStreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<OutTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<OutToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<OutResponseFormat<'a>>,
    /// Only with tools: OpenAI rejects the field in a request without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    /// The end user, for the vendor's abuse monitoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

impl<'a> WireRequest<'a> {
    pub(crate) fn new(request: &'a ChatRequest, preset: &Preset, stream: bool) -> Self {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system {
            messages.push(OutMessage::new("system", Some(OutContent::Text(Cow::Borrowed(system)))));
        }
        for message in &request.messages {
            encode_message(message, &mut messages);
        }
        let tools = request
            .tools
            .iter()
            .map(|t| OutTool {
                kind: "function",
                function: OutFunction {
                    name: &t.name,
                    description: &t.description,
                    parameters: &t.input_schema,
                },
            })
            .collect();
        let tool_choice = request.tool_choice.as_ref().map(|choice| match choice {
            ToolChoice::Auto => OutToolChoice::Mode("auto"),
            ToolChoice::None => OutToolChoice::Mode("none"),
            ToolChoice::Required => OutToolChoice::Mode("required"),
            ToolChoice::Tool { name } => {
                OutToolChoice::Function { kind: "function", function: OutName { name } }
            }
        });
        let p = &request.params;
        let completion_field = preset.max_tokens_field == "max_completion_tokens";
        Self {
            model: request.model.as_str(),
            messages,
            stream,
            stream_options: stream.then_some(OutStreamOptions { include_usage: true }),
            tools,
            tool_choice,
            temperature: p.temperature,
            max_tokens: p.max_tokens.filter(|_| !completion_field),
            max_completion_tokens: p.max_tokens.filter(|_| completion_field),
            top_p: p.top_p,
            stop: &p.stop,
            seed: p.seed,
            response_format: p.response_format.as_ref().map(OutResponseFormat::new),
            parallel_tool_calls: p.parallel_tool_calls.filter(|_| !request.tools.is_empty()),
            user: request.user.as_deref(),
        }
    }
}

/// `response_format`: `{"type": "text" | "json_object"}`, or `{"type": "json_schema",
/// "json_schema": {"name", "description"?, "schema", "strict"}}`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutResponseFormat<'a> {
    Text,
    JsonObject,
    JsonSchema { json_schema: OutJsonSchema<'a> },
}

impl<'a> OutResponseFormat<'a> {
    fn new(format: &'a ResponseFormat) -> Self {
        match format {
            ResponseFormat::Text => Self::Text,
            ResponseFormat::JsonObject => Self::JsonObject,
            ResponseFormat::JsonSchema(f) => Self::JsonSchema {
                json_schema: OutJsonSchema {
                    name: &f.name,
                    description: f.description.as_deref(),
                    schema: &f.schema,
                    strict: f.strict,
                },
            },
        }
    }
}

#[derive(Serialize)]
struct OutJsonSchema<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    schema: &'a Value,
    strict: bool,
}

#[derive(Serialize)]
struct OutStreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    /// `null` for an assistant message that only calls tools.
    content: Option<OutContent<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> OutMessage<'a> {
    fn new(role: &'static str, content: Option<OutContent<'a>>) -> Self {
        Self { role, content, tool_calls: Vec::new(), tool_call_id: None }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<OutPart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: OutImageUrl<'a> },
}

#[derive(Serialize)]
struct OutImageUrl<'a> {
    url: Cow<'a, str>,
}

#[derive(Serialize)]
struct OutCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutCallFunction<'a>,
}

#[derive(Serialize)]
struct OutCallFunction<'a> {
    name: &'a str,
    arguments: String,
}

#[derive(Serialize)]
struct OutTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutToolChoice<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: OutName<'a>,
    },
}

#[derive(Serialize)]
struct OutName<'a> {
    name: &'a str,
}

/// Appends `message` in OpenAI's shape. Tool results become one `tool` message each, wherever they
/// sit; thinking is not sent back (the API has no field for it).
fn encode_message<'a>(message: &'a Message, out: &mut Vec<OutMessage<'a>>) {
    let mut content: Vec<OutPart<'a>> = Vec::new();
    let mut calls = Vec::new();
    for part in &message.parts {
        match part {
            Part::Text { text } => content.push(OutPart::Text { text }),
            Part::Image { source } => {
                let url = match source {
                    ImageSource::Base64 { media_type, data } => {
                        Cow::Owned(format!("data:{media_type};base64,{data}"))
                    }
                    ImageSource::Url { url } => Cow::Borrowed(url.as_str()),
                };
                content.push(OutPart::ImageUrl { image_url: OutImageUrl { url } });
            }
            Part::ToolCall(call) => calls.push(OutCall {
                id: &call.id,
                kind: "function",
                function: OutCallFunction { name: &call.name, arguments: call.arguments.to_string() },
            }),
            Part::ToolResult(result) => {
                let text = if result.is_error {
                    Cow::Owned(format!("Error: {}", result.content))
                } else {
                    Cow::Borrowed(result.content.as_str())
                };
                let mut tool = OutMessage::new("tool", Some(OutContent::Text(text)));
                tool.tool_call_id = Some(&result.call_id);
                out.push(tool);
            }
            Part::Thinking { .. } => {}
        }
    }
    if content.is_empty() && calls.is_empty() {
        return;
    }
    let role = match message.role {
        Role::System => "system",
        Role::User | Role::Tool => "user",
        Role::Assistant => "assistant",
    };
    // Plain text goes as a string: older compatible servers reject the array form.
    let all_text = content.iter().all(|c| matches!(c, OutPart::Text { .. }));
    let content = if all_text {
        let mut texts = content.iter().filter_map(|c| match c {
            OutPart::Text { text } => Some(*text),
            OutPart::ImageUrl { .. } => None,
        });
        let text = match (texts.next(), texts.next()) {
            (None, _) => Cow::Borrowed(""),
            (Some(only), None) => Cow::Borrowed(only),
            (Some(first), Some(second)) => {
                let mut joined = format!("{first}{second}");
                texts.for_each(|t| joined.push_str(t));
                Cow::Owned(joined)
            }
        };
        if text.is_empty() && !calls.is_empty() { None } else { Some(OutContent::Text(text)) }
    } else {
        Some(OutContent::Parts(content))
    };
    let mut m = OutMessage::new(role, content);
    m.tool_calls = calls;
    out.push(m);
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek, llama.cpp, vLLM.
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Count,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens.0,
            output_tokens: u.completion_tokens.0,
            cache_read_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens.0),
            cache_write_tokens: None,
        }
    }
}

#[derive(Debug)]
struct PartialCall {
    vendor_index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Decodes OpenAI chat-completion chunks.
#[derive(Debug, Default)]
pub(crate) struct OpenAiDecoder {
    calls: Vec<PartialCall>,
    calls_emitted: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl OpenAiDecoder {
    fn tool_delta(&mut self, delta: ToolCallDelta, out: &mut Vec<StreamEvent>) {
        let vendor_index = delta.index.unwrap_or(0);
        let (name, fragment) = match delta.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let position = match self.calls.iter().position(|c| c.vendor_index == vendor_index) {
            Some(i) => i,
            None => {
                let index = self.calls.len();
                let id = delta.id.filter(|s| !s.is_empty()).unwrap_or_else(|| format!("call_{index}"));
                let name = name.unwrap_or_default();
                out.push(StreamEvent::ToolCallStart {
                    index: index as u32,
                    id: id.clone(),
                    name: name.clone(),
                });
                self.calls.push(PartialCall { vendor_index, id, name, arguments: String::new() });
                index
            }
        };
        if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
            self.calls[position].arguments.push_str(&fragment);
            out.push(StreamEvent::ToolCallArgsDelta { index: position as u32, fragment });
        }
    }

    fn emit_calls(&mut self, out: &mut Vec<StreamEvent>) {
        if self.calls_emitted {
            return;
        }
        self.calls_emitted = true;
        for (index, call) in self.calls.iter().enumerate() {
            out.push(StreamEvent::ToolCall {
                index: index as u32,
                call: ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: parse_arguments(&call.arguments),
                },
            });
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.emit_calls(out);
        if let Some(usage) = self.usage.take() {
            out.push(StreamEvent::Usage(usage));
        }
        let reason = self.finish_reason.as_deref().unwrap_or("stop");
        out.push(StreamEvent::Finish { reason: stop_reason(reason, !self.calls.is_empty()) });
    }
}

impl StreamDecoder for OpenAiDecoder {
    fn event(&mut self, _event: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|e| WireError::bad_json("stream chunk", data, &e))?;
        if let Some(error) = chunk.error {
            return Err(error_from_body(None, None, &json!({ "error": error })));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices.unwrap_or_default() {
            if choice.index != 0 {
                continue; // only the first of `n` choices is an answer we use
            }
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.reasoning_content.or(delta.reasoning).filter(|t| !t.is_empty()) {
                out.push(StreamEvent::ThinkingDelta { text });
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta { text });
            }
            for call in delta.tool_calls.unwrap_or_default() {
                self.tool_delta(call, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
                // Assembled calls go out as soon as the model is done with them; usage may follow.
                self.emit_calls(out);
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(WireError::protocol(
                "the stream ended before the answer finished (no finish_reason, no [DONE])",
            ));
        }
        self.finish(out);
        Ok(())
    }
}

/// A whole (non-streamed) chat completion, as far as exoclaw reads it. As lenient as the JSON
/// lookups it replaced: any field may be missing, and text fields of another type are ignored.
#[derive(Deserialize)]
struct WireCompletion {
    #[serde(default)]
    choices: Vec<WholeChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WholeChoice {
    #[serde(default)]
    message: Option<WholeMessage>,
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct WholeMessage {
    #[serde(default)]
    content: Option<Value>,
    /// DeepSeek, llama.cpp, vLLM.
    #[serde(default)]
    reasoning_content: Option<Value>,
    /// OpenRouter.
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WholeCall>>,
}

#[derive(Deserialize)]
struct WholeCall {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    function: Option<WholeFunction>,
}

#[derive(Deserialize)]
struct WholeFunction {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    arguments: Option<Value>,
}

fn text(value: &Option<Value>) -> Option<&str> {
    value.as_ref().and_then(Value::as_str)
}

/// The events a whole (non-streamed) chat completion amounts to.
pub(crate) fn decode_response(body: &Value) -> Result<Vec<StreamEvent>, WireError> {
    let completion = WireCompletion::deserialize(body)
        .map_err(|e| unexpected(&format!("chat completion ({e})"), &body.to_string()))?;
    completion_events(completion, || body.to_string())
}

/// [`decode_response`] straight from the body's bytes, without a JSON tree in between.
pub(crate) fn decode_response_bytes(bytes: &[u8]) -> Result<Vec<StreamEvent>, WireError> {
    let completion: WireCompletion = serde_json::from_slice(bytes)
        .map_err(|e| WireError::bad_json("chat completion", &String::from_utf8_lossy(bytes), &e))?;
    completion_events(completion, || String::from_utf8_lossy(bytes).into_owned())
}

fn completion_events(
    completion: WireCompletion,
    body_text: impl FnOnce() -> String,
) -> Result<Vec<StreamEvent>, WireError> {
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(unexpected("chat completion (no choices)", &body_text()));
    };
    let mut out = Vec::new();
    let mut has_calls = false;
    if let Some(message) = choice.message {
        let thinking = text(&message.reasoning_content).or(text(&message.reasoning));
        if let Some(text) = thinking.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::ThinkingDelta { text: text.to_owned() });
        }
        if let Some(Value::String(content)) = message.content
            && !content.is_empty()
        {
            out.push(StreamEvent::TextDelta { text: content });
        }
        let calls = message.tool_calls.unwrap_or_default();
        has_calls = !calls.is_empty();
        for (index, call) in calls.into_iter().enumerate() {
            let (name, arguments) = match call.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            let arguments = match arguments {
                Some(Value::String(raw)) => parse_arguments(&raw),
                Some(other) => other, // some servers send an object
                None => Value::Null,
            };
            let id = text(&call.id).map_or_else(|| format!("call_{index}"), str::to_owned);
            let name = text(&name).unwrap_or_default().to_owned();
            whole_tool_call(index as u32, id, name, arguments, &mut out);
        }
    }
    if let Some(usage) = completion.usage {
        out.push(StreamEvent::Usage(usage.into()));
    }
    let reason = text(&choice.finish_reason).unwrap_or("stop");
    out.push(StreamEvent::Finish { reason: stop_reason(reason, has_calls) });
    Ok(out)
}

/// OpenAI's `finish_reason`. Some compatible servers say `stop` after tool calls; the caller still
/// has tools to run, so that is a tool-use stop.
fn stop_reason(reason: &str, has_tool_calls: bool) -> StopReason {
    match reason {
        "tool_calls" | "function_call" => StopReason::ToolUse,
        _ if has_tool_calls => StopReason::ToolUse,
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

/// Reads an error response: `{"error": {"message", "type", "param", "code"}}`
/// (<https://platform.openai.com/docs/guides/error-codes>).
pub(crate) fn classify_error(status: u16, headers: &HeaderMap, body: &str) -> WireError {
    match serde_json::from_str::<Value>(body) {
        Ok(json) if json.get("error").is_some() => error_from_body(Some(status), retry_after(headers), &json),
        _ => {
            let text = if body.trim().is_empty() { "(empty body)".to_owned() } else { preview(body.trim()) };
            WireError::new(kind_for_status(status, retry_after(headers)), text)
        }
    }
}

fn error_from_body(status: Option<u16>, retry: Option<std::time::Duration>, json: &Value) -> WireError {
    let error = &json["error"];
    let message = error["message"].as_str().or(error.as_str()).unwrap_or("(no message)").to_owned();
    let code = error["code"].as_str().unwrap_or_default();
    let kind_text = error["type"].as_str().unwrap_or_default();
    let by_code = match (code, kind_text) {
        ("invalid_api_key", _) | (_, "authentication_error") => Some(ErrorKind::Auth),
        ("model_not_found", _) => Some(ErrorKind::ModelNotFound),
        // OpenAI's code; llama-server's type.
        ("context_length_exceeded", _) | (_, "exceed_context_size_error") => Some(ErrorKind::ContextLength),
        // Out of credit: waiting does not help, unlike a rate limit.
        ("insufficient_quota", _) | (_, "insufficient_quota") => Some(ErrorKind::Permission),
        ("rate_limit_exceeded", _) => Some(ErrorKind::RateLimited { retry_after: retry }),
        ("server_error", _) | (_, "server_error") if status.is_none() => Some(ErrorKind::Server),
        _ => None,
    };
    let kind = by_code.unwrap_or_else(|| match status {
        Some(status) => kind_for_status(status, retry),
        None => ErrorKind::Server, // an error event inside a 200 stream
    });
    let detail = [code, kind_text].into_iter().find(|s| !s.is_empty());
    let message = match detail {
        Some(d) => format!("{message} [{d}]"),
        None => message,
    };
    WireError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::{LLAMACPP, OPENAI};
    use exoclaw_types::{GenerationParams, JsonSchemaFormat, ToolResult, ToolSpec};

    #[test]
    fn request_carries_system_tools_params_and_tool_round_trip() {
        let call =
            ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) };
        let request = ChatRequest::new(
            "gpt-4o-mini",
            vec![
                Message::user("Weather?"),
                Message::new(Role::Assistant, vec![Part::ToolCall(call)]),
                Message::tool_results([ToolResult {
                    call_id: "call_1".into(),
                    content: "sunny".into(),
                    is_error: false,
                }]),
            ],
        )
        .with_system("Be brief.")
        .with_tools(vec![ToolSpec {
            name: "get_weather".into(),
            description: "Weather".into(),
            input_schema: json!({"type": "object"}),
        }])
        .with_params(GenerationParams {
            temperature: Some(0.5),
            max_tokens: Some(64),
            top_p: Some(0.9),
            stop: vec!["END".into()],
            seed: Some(3),
            ..GenerationParams::default()
        });
        let body = encode_request(&request, &OPENAI, true);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            json!("{\"city\":\"Paris\"}")
        );
        assert_eq!(
            body["messages"][3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
        );
        assert_eq!(body["tools"][0]["function"]["parameters"], json!({"type": "object"}));
        assert_eq!(body["max_completion_tokens"], json!(64));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!((body["seed"].clone(), body["stop"].clone()), (json!(3), json!(["END"])));
        let compat = encode_request(&request, &LLAMACPP, false);
        assert_eq!(compat["max_tokens"], json!(64));
        assert!(compat.get("stream_options").is_none());
        for absent in ["response_format", "parallel_tool_calls", "user"] {
            assert!(body.get(absent).is_none(), "{absent} is only sent when set");
        }
    }

    fn with_format(format: ResponseFormat) -> Value {
        let params = GenerationParams { response_format: Some(format), ..GenerationParams::default() };
        encode_request(&ChatRequest::new("m", vec![Message::user("x")]).with_params(params), &OPENAI, false)
    }

    #[test]
    fn text_and_json_object_formats_are_bare_types() {
        assert_eq!(with_format(ResponseFormat::Text)["response_format"], json!({"type": "text"}));
        assert_eq!(
            with_format(ResponseFormat::JsonObject)["response_format"],
            json!({"type": "json_object"})
        );
    }

    #[test]
    fn a_json_schema_format_carries_name_description_schema_and_strict() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let format = |description: Option<&str>, strict| {
            ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: "place".into(),
                description: description.map(str::to_owned),
                schema: schema.clone(),
                strict,
            })
        };
        assert_eq!(
            with_format(format(Some("Where it is."), true))["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "place", "description": "Where it is.", "schema": schema, "strict": true}})
        );
        assert_eq!(
            with_format(format(None, false))["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": false}})
        );
    }

    #[test]
    fn parallel_tool_calls_is_sent_only_with_tools() {
        let params = GenerationParams { parallel_tool_calls: Some(false), ..GenerationParams::default() };
        let bare = ChatRequest::new("m", vec![Message::user("x")]).with_params(params);
        assert!(encode_request(&bare, &OPENAI, false).get("parallel_tool_calls").is_none());
        let tool =
            ToolSpec { name: "f".into(), description: "F".into(), input_schema: json!({"type": "object"}) };
        let with_tools = bare.with_tools(vec![tool]);
        assert_eq!(encode_request(&with_tools, &OPENAI, false)["parallel_tool_calls"], json!(false));
    }

    #[test]
    fn the_end_user_is_sent_as_user() {
        let mut request = ChatRequest::new("m", vec![Message::user("x")]);
        request.user = Some("user-7f3a".into());
        assert_eq!(encode_request(&request, &OPENAI, false)["user"], json!("user-7f3a"));
        assert_eq!(encode_request(&request, &LLAMACPP, true)["user"], json!("user-7f3a"));
    }

    #[test]
    fn images_use_the_content_array_with_data_urls() {
        let message = Message::new(
            Role::User,
            vec![
                Part::text("What is this?"),
                Part::Image {
                    source: ImageSource::Base64 { media_type: "image/png".into(), data: "AAA".into() },
                },
            ],
        );
        let body = encode_request(&ChatRequest::new("m", vec![message]), &OPENAI, false);
        assert_eq!(
            body["messages"][0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}})
        );
    }

    #[test]
    fn repeated_ids_and_names_in_every_chunk_do_not_start_new_calls() {
        let mut d = OpenAiDecoder::default();
        let mut out = Vec::new();
        for args in ["{\"a\"", ":1}"] {
            let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_x", "type": "function", "function": {"name": "f", "arguments": args}}]}}]});
            d.event("message", &chunk.to_string(), &mut out).unwrap();
        }
        d.event(
            "message",
            &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
            &mut out,
        )
        .unwrap();
        d.event("message", "[DONE]", &mut out).unwrap();
        d.end(&mut out).unwrap();
        let starts = out.iter().filter(|e| matches!(e, StreamEvent::ToolCallStart { .. })).count();
        assert_eq!(starts, 1);
        assert!(out.contains(&StreamEvent::ToolCall {
            index: 0,
            call: ToolCall { id: "call_x".into(), name: "f".into(), arguments: json!({"a": 1}) }
        }));
    }

    #[test]
    fn embeddings_come_back_in_input_order_with_their_tokens() {
        let answer = json!({"data": [
            {"object": "embedding", "index": 1, "embedding": [0.5, 0.5]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
        ], "usage": {"prompt_tokens": 7, "total_tokens": 7}});
        let (vectors, tokens) = decode_embeddings(&answer, 2).unwrap();
        assert_eq!(vectors, vec![vec![1.0, 0.0], vec![0.5, 0.5]]);
        assert_eq!(tokens, Some(7));
    }

    #[test]
    fn an_embeddings_answer_of_the_wrong_size_or_shape_is_a_protocol_error() {
        let one = json!({"data": [{"index": 0, "embedding": [1.0]}]});
        assert!(format!("{:?}", decode_embeddings(&one, 2).unwrap_err()).contains("1 vectors for 2 inputs"));
        let twice = json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]});
        assert!(decode_embeddings(&twice, 2).is_err());
        assert!(decode_embeddings(&json!({"error": "nope"}), 1).is_err());
    }
}
