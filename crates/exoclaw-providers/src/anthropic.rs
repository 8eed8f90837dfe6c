//! Anthropic's Messages API (`POST {base}/v1/messages`).
//!
//! Wire format: <https://docs.anthropic.com/en/api/messages> (request, whole response),
//! <https://docs.anthropic.com/en/api/messages-streaming> (events) and
//! <https://docs.anthropic.com/en/api/errors> (error bodies).
//!
//! A streamed answer is a sequence of named events: `message_start` (with the prompt's usage), then
//! for each content block `content_block_start`, `content_block_delta`s and `content_block_stop`,
//! then `message_delta` (stop reason, cumulative output usage) and `message_stop`. `ping`s may come
//! anywhere, an `error` event can replace the rest of the stream, and the API reserves the right to
//! add event types, which are ignored. A tool call's arguments arrive as `input_json_delta`
//! fragments of its `tool_use` block and are complete at that block's `content_block_stop`.
//!
//! Structured outputs (`params.response_format`) take one of two ways, chosen per request by
//! [`OutputPlan`]. A strict JSON schema for a model in [`NATIVE_STRUCTURED_OUTPUTS`] goes as
//! `output_config.format` (<https://platform.claude.com/docs/en/build-with-claude/structured-outputs>),
//! and the answer comes back as ordinary text held to the schema. Everything else — JSON objects,
//! non-strict schemas, and any schema for other models — uses the fallback that works on every
//! Claude model: one more tool (the *answer tool*) whose `input_schema` is the schema, with
//! `tool_choice` forcing a tool call. The decoders turn a call of that tool back into answer text
//! and an `EndTurn` finish, so callers never see the tool. Through the fallback a schema is a
//! strong hint the model fills a tool input against, not a guarantee: the answer is not validated.

mod answer;

use crate::ProviderOptions;
use crate::model_name;
use crate::options::{KeyedHeaders, keyed_transport, process_env};
use crate::transport::{Outgoing, Transport};
use crate::wire::{
    StreamDecoder, WireError, kind_for_status, parse_arguments, preview, retry_after, unexpected,
    whole_tool_call,
};
use answer::{AnswerTool, OutputPlan, StreamedAnswer};
use async_trait::async_trait;
use exoclaw_core::{Capabilities, ErrorKind, EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_types::{
    ChatRequest, ChatResponse, ImageSource, Message, ModelId, Part, Role, StopReason, StreamEvent, ToolCall,
    ToolChoice, Usage,
};
use http::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::time::Duration;

/// Where requests go when neither configuration nor `ANTHROPIC_BASE_URL` says otherwise. Like the
/// official SDKs, the base has no `/v1`: paths are appended as `/v1/messages`.
const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version every request names (<https://docs.anthropic.com/en/api/versioning>).
const API_VERSION: &str = "2023-06-01";
/// The key goes in `x-api-key`; every request names the API version.
const HEADERS: KeyedHeaders = KeyedHeaders { key: "x-api-key", fixed: &[("anthropic-version", API_VERSION)] };
/// `max_tokens` is required by the API; this is sent when the request leaves it unset.
const DEFAULT_MAX_TOKENS: u32 = 4096;
const BASE_URL_ENV: &[&str] = &["ANTHROPIC_BASE_URL"];
const API_KEY_ENV: &[&str] = &["ANTHROPIC_API_KEY"];
/// Most pages of the model list followed before giving up on `has_more`.
const MAX_MODEL_PAGES: usize = 20;
/// A provider for Anthropic's Messages API.
#[derive(Debug)]
pub struct Anthropic {
    base_url: String,
    transport: Transport,
}

impl Anthropic {
    /// A provider with these options: name `anthropic` and base URL `https://api.anthropic.com`
    /// unless set. Fails when no API key is given.
    pub fn new(options: ProviderOptions) -> Result<Self, ProviderError> {
        let (base_url, transport) =
            keyed_transport(options, "anthropic", DEFAULT_BASE_URL, API_KEY_ENV, HEADERS, classify_error)?;
        Ok(Self { base_url, transport })
    }

    /// A provider configured from `ANTHROPIC_BASE_URL` and `ANTHROPIC_API_KEY`.
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::new(ProviderOptions::default().with_env(BASE_URL_ENV, API_KEY_ENV, process_env))
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn post(&self, body: &Value) -> Result<Outgoing, ProviderError> {
        let uri = self.transport.uri(format!("{}/v1/messages", self.base_url))?;
        self.transport.post_json(uri, body)
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        self.transport.name()
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        model_name::check(self.name(), request.model.as_str())?;
        let plan = OutputPlan::new(&request);
        plan.check(&request).map_err(|e| self.transport.error(e))?;
        let body = encode_planned(&request, &plan, true);
        let decoder = AnthropicDecoder::new(plan.answer_tool());
        let (response, started) = self.transport.send(self.post(&body)?).await?;
        Ok(self.transport.sse(response, decoder, started))
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        model_name::check(self.name(), request.model.as_str())?;
        let plan = OutputPlan::new(&request);
        plan.check(&request).map_err(|e| self.transport.error(e))?;
        let body = encode_planned(&request, &plan, false);
        let answer = plan.answer_tool();
        let decode = |json: &Value| decode_message(json, answer.as_ref());
        self.transport.whole_answer(self.post(&body)?, "message", decode).await
    }

    fn capabilities(&self, _model: &ModelId) -> Capabilities {
        Capabilities { images: true, thinking: true, ..Capabilities::default() }
    }

    /// `GET {base}/v1/models` (<https://docs.anthropic.com/en/api/models-list>), following
    /// `has_more` / `last_id` pagination.
    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut models = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let mut url = format!("{}/v1/models?limit=1000", self.base_url);
            if let Some(id) = &after {
                url.push_str("&after_id=");
                // The server's own id, but still text from the network: kept inside its parameter.
                url.push_str(&model_name::percent_encode(id));
            }
            let json = self.transport.json(self.transport.get(url)?, "model list").await?;
            let Some(list) = json["data"].as_array() else {
                return Err(self.transport.error(unexpected("model list", &json.to_string())));
            };
            models.extend(list.iter().filter_map(|m| {
                let id = m["id"].as_str()?;
                let display_name = m["display_name"].as_str().map(str::to_owned);
                Some(ModelInfo { id: ModelId::from(id), display_name })
            }));
            match json["last_id"].as_str() {
                Some(last) if json["has_more"] == true => after = Some(last.to_owned()),
                _ => break,
            }
        }
        Ok(models)
    }
}

/// `tool_choice` for `request`: the answer tool's needs first, then the request's own choice,
/// then `disable_parallel_tool_use` when the request turned parallel calls off.
fn tool_choice(request: &ChatRequest, plan: &OutputPlan<'_>, has_tools: bool) -> Option<Value> {
    let mut choice = match (plan, &request.tool_choice) {
        // A real tool or the answer: the model must call one of them.
        (OutputPlan::Answer { tool, .. }, _) if tool.beside_real_tools => Some(json!({"type": "any"})),
        // The answer tool is the only one the model may call.
        (OutputPlan::Answer { tool, .. }, _) => Some(json!({"type": "tool", "name": tool.name})),
        (OutputPlan::Free | OutputPlan::Native(_), Some(choice)) => Some(match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool { name } => json!({"type": "tool", "name": name}),
        }),
        (OutputPlan::Free | OutputPlan::Native(_), None) => None,
    };
    if request.params.parallel_tool_calls == Some(false) && has_tools {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        // `none` takes no options: without calls there is nothing to run in parallel.
        if let Some(fields) = choice.as_object_mut().filter(|c| c["type"] != "none") {
            fields.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    choice
}

/// The request body for `request`, streamed or not.
///
/// `params.seed` is not sent: the Messages API has no seed parameter.
pub(crate) fn encode_request(request: &ChatRequest, stream: bool) -> Value {
    encode_planned(request, &OutputPlan::new(request), stream)
}

fn encode_planned(request: &ChatRequest, plan: &OutputPlan<'_>, stream: bool) -> Value {
    let mut system: Vec<&str> = request.system.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        if message.role == Role::System {
            // The API has no system role inside `messages`: such instructions join the top-level
            // system prompt.
            system.extend(message.parts.iter().filter_map(|p| match p {
                Part::Text { text } if !text.is_empty() => Some(text.as_str()),
                _ => None,
            }));
            continue;
        }
        encode_message(message, &mut messages);
    }
    for message in &mut messages {
        put_tool_results_first(message);
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    let p = &request.params;
    body.insert("max_tokens".into(), json!(p.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    if stream {
        body.insert("stream".into(), json!(true));
    }
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
        .collect();
    if let OutputPlan::Answer { tool, schema, description } = plan {
        tools.push(json!({"name": tool.name, "description": description, "input_schema": schema}));
    }
    if let Some(choice) = tool_choice(request, plan, !tools.is_empty()) {
        body.insert("tool_choice".into(), choice);
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let OutputPlan::Native(schema) = plan {
        body.insert("output_config".into(), json!({"format": {"type": "json_schema", "schema": schema}}));
    }
    if let Some(user) = &request.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(t) = p.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(top_p) = p.top_p {
        body.insert("top_p".into(), json!(top_p));
    }
    if !p.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(p.stop));
    }
    Value::Object(body)
}

/// Appends `message` as content blocks, merged into the previous message when it has the same
/// role: the API requires user and assistant turns to alternate. Tool results go in user turns.
fn encode_message(message: &Message, out: &mut Vec<Value>) {
    let role = match message.role {
        Role::Assistant => "assistant",
        Role::User | Role::Tool | Role::System => "user",
    };
    let assistant = role == "assistant";
    let mut blocks = Vec::with_capacity(message.parts.len());
    for part in &message.parts {
        match part {
            // The API rejects empty text blocks.
            Part::Text { text } if text.is_empty() => {}
            Part::Text { text } => blocks.push(json!({"type": "text", "text": text})),
            Part::Image { source } => {
                let source = match source {
                    ImageSource::Base64 { media_type, data } => {
                        json!({"type": "base64", "media_type": media_type, "data": data})
                    }
                    ImageSource::Url { url } => json!({"type": "url", "url": url}),
                };
                blocks.push(json!({"type": "image", "source": source}));
            }
            Part::ToolCall(call) => {
                // `input` must be an object. Arguments kept verbatim because they were not valid
                // JSON (see `parse_arguments`) are sent as `{}`: the tool's result already told
                // the model what was wrong, and anything else would make the API refuse the
                // whole conversation.
                let input = if call.arguments.is_object() { call.arguments.clone() } else { json!({}) };
                blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
            }
            Part::ToolResult(result) => blocks.push(json!({
                "type": "tool_result", "tool_use_id": result.call_id,
                "content": result.content, "is_error": result.is_error,
            })),
            // Thinking is only ever the model's own, and only signed thinking may be sent back.
            // A signature without text is how a `redacted_thinking` block was received.
            Part::Thinking { text, signature: Some(signature) } if assistant => {
                if text.is_empty() {
                    blocks.push(json!({"type": "redacted_thinking", "data": signature}));
                } else {
                    blocks.push(json!({"type": "thinking", "thinking": text, "signature": signature}));
                }
            }
            Part::Thinking { .. } => {}
        }
    }
    if blocks.is_empty() {
        return; // the API rejects empty turns
    }
    if let Some(last) = out.last_mut()
        && last["role"] == role
        && let Some(content) = last["content"].as_array_mut()
    {
        content.extend(blocks);
        return;
    }
    out.push(json!({"role": role, "content": blocks}));
}

/// In a user turn, `tool_result` blocks must come before any other content.
fn put_tool_results_first(message: &mut Value) {
    if let Some(content) = message["content"].as_array_mut() {
        let is_result = |b: &Value| b["type"] == "tool_result";
        if content.iter().skip_while(|b| is_result(b)).any(is_result) {
            let (mut results, rest): (Vec<Value>, Vec<Value>) = content.drain(..).partition(is_result);
            results.extend(rest);
            *content = results;
        }
    }
}

/// Anthropic's usage object, as it comes: the three prompt counts are disjoint.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Takes every count `later` reports (`message_delta` counts are cumulative).
    fn update(&mut self, later: WireUsage) {
        fn take(slot: &mut Option<u64>, v: Option<u64>) {
            if v.is_some() {
                *slot = v;
            }
        }
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(&mut self.cache_creation_input_tokens, later.cache_creation_input_tokens);
        take(&mut self.cache_read_input_tokens, later.cache_read_input_tokens);
    }
}

impl From<WireUsage> for Usage {
    /// Our `input_tokens` counts every prompt token, so the cache counts are added to Anthropic's
    /// `input_tokens` (which excludes them).
    fn from(u: WireUsage) -> Self {
        let prompt = [u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens];
        let input_tokens = prompt.iter().any(Option::is_some).then(|| prompt.iter().flatten().sum());
        Usage {
            input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_input_tokens,
            cache_write_tokens: u.cache_creation_input_tokens,
        }
    }
}

/// Every stream event in one flat shape: each kind fills the fields it has.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<u32>,
    /// `message_start`.
    #[serde(default)]
    message: Option<WireMessageStart>,
    /// `content_block_start`.
    #[serde(default)]
    content_block: Option<WireBlock>,
    /// `content_block_delta` (typed delta) and `message_delta` (stop reason).
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
    /// `message_delta`.
    #[serde(default)]
    usage: Option<WireUsage>,
    /// `error`.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessageStart {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    /// `redacted_thinking`.
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

/// A `tool_use` block whose arguments are still arriving.
#[derive(Debug)]
struct OpenCall {
    /// Anthropic's content-block index.
    block: u32,
    /// Our tool-call index.
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Decodes the Messages API's stream events.
#[derive(Debug, Default)]
pub(crate) struct AnthropicDecoder {
    /// Open `tool_use` blocks; the API streams blocks one after another, so this is at most one
    /// long in practice.
    calls: Vec<OpenCall>,
    /// Tool calls started so far, which numbers the next.
    call_count: u32,
    usage: WireUsage,
    stop_reason: Option<String>,
    done: bool,
    /// The structured answer, when the request used the answer tool.
    answer: StreamedAnswer,
}

impl AnthropicDecoder {
    /// A decoder for a request that used `answer` (the answer-tool fallback), if any.
    pub(crate) fn new(answer: Option<AnswerTool>) -> Self {
        Self { answer: StreamedAnswer::new(answer), ..Self::default() }
    }

    fn block_start(&mut self, block_index: u32, block: WireBlock, out: &mut Vec<StreamEvent>) {
        match block.kind.as_str() {
            "text" => {
                if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { text });
                }
            }
            "thinking" => {
                if let Some(text) = block.thinking.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ThinkingDelta { text });
                }
                if let Some(signature) = block.signature.filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::ThinkingSignature { signature });
                }
            }
            "redacted_thinking" => {
                // Encrypted reasoning: nothing to show, but it must be sent back as it came.
                if let Some(signature) = block.data {
                    out.push(StreamEvent::ThinkingSignature { signature });
                }
            }
            "tool_use" if self.answer.is_answer_tool(block.name.as_deref()) => {
                self.answer.start(block_index, block.input, out);
            }
            "tool_use" => {
                let index = self.call_count;
                self.call_count += 1;
                let id = block.id.filter(|s| !s.is_empty()).unwrap_or_else(|| format!("toolu_{index}"));
                let name = block.name.unwrap_or_default();
                out.push(StreamEvent::ToolCallStart { index, id: id.clone(), name: name.clone() });
                // The start carries `input: {}`; should a server send the whole input here instead
                // of as deltas, it counts as the first fragment.
                let mut arguments = String::new();
                if let Some(input) = block.input.filter(|i| i.as_object().is_some_and(|o| !o.is_empty())) {
                    arguments = input.to_string();
                    out.push(StreamEvent::ToolCallArgsDelta { index, fragment: arguments.clone() });
                }
                self.calls.push(OpenCall { block: block_index, index, id, name, arguments });
            }
            // Server tools and block types this version does not know carry nothing we use.
            _ => {}
        }
    }

    fn block_delta(&mut self, block_index: u32, delta: WireDelta<'_>, out: &mut Vec<StreamEvent>) {
        match delta.kind.as_deref() {
            Some("text_delta") => {
                if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { text });
                }
            }
            Some("input_json_delta") => {
                let Some(fragment) = delta.partial_json.filter(|f| !f.is_empty()) else { return };
                let Some(fragment) = self.answer.delta(block_index, fragment, out) else { return };
                // Deltas of blocks that are not client tool calls (server tools) are not ours.
                if let Some(call) = self.calls.iter_mut().find(|c| c.block == block_index) {
                    call.arguments.push_str(&fragment);
                    out.push(StreamEvent::ToolCallArgsDelta { index: call.index, fragment });
                }
            }
            Some("thinking_delta") => {
                if let Some(text) = delta.thinking.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ThinkingDelta { text });
                }
            }
            Some("signature_delta") => {
                if let Some(signature) = delta.signature.filter(|s| !s.is_empty()) {
                    out.push(StreamEvent::ThinkingSignature { signature });
                }
            }
            _ => {}
        }
    }

    fn block_stop(&mut self, block_index: u32, out: &mut Vec<StreamEvent>) {
        self.answer.stop(block_index, out);
        if let Some(position) = self.calls.iter().position(|c| c.block == block_index) {
            let call = self.calls.swap_remove(position);
            let arguments = parse_arguments(&call.arguments);
            out.push(StreamEvent::ToolCall {
                index: call.index,
                call: ToolCall { id: call.id, name: call.name, arguments },
            });
        }
    }

    fn add_usage(&mut self, usage: Option<WireUsage>) {
        if let Some(usage) = usage {
            self.usage.update(usage);
        }
    }

    /// `message_stop`: closes any block left open, then usage and the finish.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let mut open: Vec<u32> = self.calls.iter().map(|c| c.block).collect();
        open.sort_unstable();
        for block in open {
            self.block_stop(block, out);
        }
        self.answer.finish(self.call_count, out);
        let usage = Usage::from(self.usage);
        if !usage.is_unreported() {
            out.push(StreamEvent::Usage(usage));
        }
        let reason = match self.stop_reason.as_deref() {
            // The answer tool was the only call: to the caller, a finished answer.
            Some("tool_use") if self.answer.seen && self.call_count == 0 => StopReason::EndTurn,
            Some(reason) => stop_reason(reason),
            None if self.call_count > 0 => StopReason::ToolUse,
            None => StopReason::EndTurn,
        };
        out.push(StreamEvent::Finish { reason });
        self.done = true;
    }
}

impl StreamDecoder for AnthropicDecoder {
    fn event(&mut self, _event: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        // The payload's `type` repeats the SSE event name; it is used so that proxies which drop
        // `event:` lines do not matter.
        let event: WireEvent<'_> =
            serde_json::from_str(data).map_err(|e| WireError::bad_json("stream event", data, &e))?;
        match &*event.kind {
            "message_start" => self.add_usage(event.message.and_then(|m| m.usage)),
            "content_block_start" => {
                if let Some(block) = event.content_block {
                    self.block_start(event.index.unwrap_or(0), block, out);
                }
            }
            "content_block_delta" => {
                if let Some(delta) = event.delta {
                    self.block_delta(event.index.unwrap_or(0), delta, out);
                }
            }
            "content_block_stop" => self.block_stop(event.index.unwrap_or(0), out),
            "message_delta" => {
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                self.add_usage(event.usage);
            }
            "message_stop" => self.finish(out),
            "error" => {
                let error = event.error.unwrap_or(Value::Null);
                return Err(error_from_body(None, None, &error, None));
            }
            // `ping`, and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn end(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if self.done {
            Ok(()) // everything went out at `message_stop`
        } else {
            Err(WireError::protocol("the stream ended before the answer finished (no message_stop)"))
        }
    }
}

/// The events a whole (non-streamed) message amounts to.
pub(crate) fn decode_response(body: &Value) -> Result<Vec<StreamEvent>, WireError> {
    decode_message(body, None)
}

/// [`decode_response`] for a request that used `answer` (the answer-tool fallback), if any: the
/// first call of that tool is the answer's text, unless a real call came beside it.
fn decode_message(body: &Value, answer: Option<&AnswerTool>) -> Result<Vec<StreamEvent>, WireError> {
    if body["type"] == "error" {
        return Err(error_from_body(None, None, &body["error"], body["request_id"].as_str()));
    }
    let Some(content) = body["content"].as_array() else {
        return Err(unexpected("message (no content)", &body.to_string()));
    };
    let mut out = Vec::with_capacity(content.len() + 2);
    let mut calls = 0u32;
    let is_answer = |block: &Value| {
        answer.is_some_and(|a| block["type"] == "tool_use" && block["name"] == a.name.as_str())
    };
    let real_calls = content.iter().any(|b| b["type"] == "tool_use" && !is_answer(b));
    let mut answered = false;
    for block in content {
        let text = |field: &str| block[field].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        match block["type"].as_str().unwrap_or_default() {
            "text" => {
                if let Some(text) = text("text") {
                    out.push(StreamEvent::TextDelta { text });
                }
            }
            "thinking" => {
                if let Some(text) = text("thinking") {
                    out.push(StreamEvent::ThinkingDelta { text });
                }
                if let Some(signature) = text("signature") {
                    out.push(StreamEvent::ThinkingSignature { signature });
                }
            }
            "redacted_thinking" => {
                if let Some(signature) = text("data") {
                    out.push(StreamEvent::ThinkingSignature { signature });
                }
            }
            "tool_use" if is_answer(block) && !real_calls && !answered => {
                answered = true;
                out.push(StreamEvent::TextDelta { text: tool_input(block).to_string() });
            }
            // A later answer, or one beside a real call (the model is not done): dropped.
            "tool_use" if is_answer(block) => {}
            "tool_use" => {
                let id = text("id").unwrap_or_else(|| format!("toolu_{calls}"));
                let name = text("name").unwrap_or_default();
                whole_tool_call(calls, id, name, tool_input(block), &mut out);
                calls += 1;
            }
            _ => {}
        }
    }
    if let Ok(usage) = WireUsage::deserialize(&body["usage"]) {
        let usage = Usage::from(usage);
        if !usage.is_unreported() {
            out.push(StreamEvent::Usage(usage));
        }
    }
    let reason = match body["stop_reason"].as_str() {
        Some("tool_use") if answered => StopReason::EndTurn,
        Some(reason) => stop_reason(reason),
        None if calls > 0 => StopReason::ToolUse,
        None => StopReason::EndTurn,
    };
    out.push(StreamEvent::Finish { reason });
    Ok(out)
}

/// A `tool_use` block's input; a block without one called the tool with no arguments.
fn tool_input(block: &Value) -> Value {
    match &block["input"] {
        Value::Null => json!({}),
        input => input.clone(),
    }
}

/// Anthropic's `stop_reason`.
fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_owned()),
    }
}

/// Reads an error response: `{"type": "error", "error": {"type", "message"}, "request_id"}`
/// (<https://docs.anthropic.com/en/api/errors>).
pub(crate) fn classify_error(status: u16, headers: &HeaderMap, body: &str) -> WireError {
    let retry = retry_after(headers);
    match serde_json::from_str::<Value>(body) {
        Ok(json) if json["error"].is_object() => {
            error_from_body(Some(status), retry, &json["error"], json["request_id"].as_str())
        }
        _ => {
            let text = if body.trim().is_empty() { "(empty body)".to_owned() } else { preview(body.trim()) };
            WireError::new(kind_for_status(status, retry), text)
        }
    }
}

/// The typed error for Anthropic's `error` object. `status` is `None` for an `error` event inside
/// a 200 stream, where the error's type is all there is to go on.
fn error_from_body(
    status: Option<u16>,
    retry: Option<Duration>,
    error: &Value,
    request_id: Option<&str>,
) -> WireError {
    let message = error["message"].as_str().unwrap_or("(no message)");
    let kind_text = error["type"].as_str().unwrap_or_default();
    let kind = match kind_text {
        // The API has no structured code for an over-long prompt: its message is the only sign,
        // and the one place where exoclaw reads error text.
        "invalid_request_error" if message.contains("prompt is too long") => ErrorKind::ContextLength,
        "invalid_request_error" | "request_too_large" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Auth,
        "permission_error" | "billing_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::ModelNotFound,
        "rate_limit_error" => ErrorKind::RateLimited { retry_after: retry },
        "api_error" => ErrorKind::Server,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        _ => match status {
            Some(status) => kind_for_status(status, retry),
            None => ErrorKind::Server,
        },
    };
    let mut text = message.to_owned();
    if !kind_text.is_empty() {
        text.push_str(&format!(" [{kind_text}]"));
    }
    if let Some(id) = request_id {
        text.push_str(&format!(" (request_id {id})"));
    }
    WireError::new(kind, text)
}

#[cfg(test)]
mod tests;
