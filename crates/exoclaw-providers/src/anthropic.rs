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

use crate::ProviderOptions;
use crate::model_name;
use crate::options::{KeyedHeaders, keyed_transport, process_env};
use crate::transport::{Outgoing, Transport};
use crate::wire::{
    StreamDecoder, WireError, kind_for_status, parse_arguments, preview, retry_after, unexpected,
    whole_tool_call,
};
use async_trait::async_trait;
use exoclaw_core::{Capabilities, ErrorKind, EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_types::{
    ChatRequest, ChatResponse, ImageSource, Message, ModelId, Part, ResponseFormat, Role, StopReason,
    StreamEvent, ToolCall, ToolChoice, ToolSpec, Usage,
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
/// Models that take native structured outputs (`output_config.format`), by model-id prefix: the
/// models the feature is generally available for on the Claude API
/// (<https://platform.claude.com/docs/en/build-with-claude/structured-outputs>; Opus 4.7 from
/// <https://docs.cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/structured_outputs>).
/// Any other model gets the answer-tool fallback, which every Claude model can use.
const NATIVE_STRUCTURED_OUTPUTS: &[&str] = &[
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
];
/// The answer tool's name, unless a real tool already has it (then `json_answer_1`, …).
const ANSWER_TOOL: &str = "json_answer";

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

/// How a request's `response_format` reaches the Messages API (see the module docs).
#[derive(Debug)]
enum OutputPlan<'a> {
    /// Free text, or a turn that must be a tool call anyway (`tool_choice` `Required` or `Tool`),
    /// where an answer format has nothing to shape: nothing to send.
    Free,
    /// Native structured outputs: `output_config.format` holds this schema.
    Native(&'a Value),
    /// The fallback: one more tool, whose input is the answer.
    Answer { tool: AnswerTool, schema: Cow<'a, Value>, description: String },
}

impl<'a> OutputPlan<'a> {
    fn new(request: &'a ChatRequest) -> Self {
        let schema = match &request.params.response_format {
            None | Some(ResponseFormat::Text) => return Self::Free,
            // Native structured outputs need a closed schema (`additionalProperties: false` on
            // every object), which "any object" is not.
            Some(ResponseFormat::JsonObject) => Cow::Owned(json!({"type": "object"})),
            Some(ResponseFormat::JsonSchema(format)) => {
                // Strict asks for a schema the vendor enforces, as at OpenAI; non-strict schemas
                // may use keywords constrained decoding refuses, so they go through the tool.
                if format.strict && native_structured_outputs(request.model.as_str()) {
                    return Self::Native(&format.schema);
                }
                Cow::Borrowed(&format.schema)
            }
        };
        if matches!(request.tool_choice, Some(ToolChoice::Required | ToolChoice::Tool { .. })) {
            return Self::Free;
        }
        let about = match &request.params.response_format {
            Some(ResponseFormat::JsonSchema(format)) => format.description.as_deref(),
            None | Some(ResponseFormat::Text | ResponseFormat::JsonObject) => None,
        };
        let mut description = "Give your final answer by calling this tool: its input is the whole \
            answer, as JSON. Call it once, when you have the answer."
            .to_owned();
        if let Some(about) = about.filter(|a| !a.trim().is_empty()) {
            description.push_str(" The answer: ");
            description.push_str(about);
        }
        let tool = AnswerTool {
            name: free_tool_name(&request.tools),
            // `ToolChoice::None` keeps the real tools listed but not callable.
            beside_real_tools: !request.tools.is_empty() && request.tool_choice != Some(ToolChoice::None),
        };
        Self::Answer { tool, schema, description }
    }

    /// Refuses a format the chosen way cannot carry: a tool's input must be an object, so the
    /// fallback cannot answer with an array or a bare string.
    fn check(&self, request: &ChatRequest) -> Result<(), WireError> {
        let Self::Answer { schema, .. } = self else { return Ok(()) };
        if schema.get("type").and_then(Value::as_str) == Some("object") {
            return Ok(());
        }
        let model = request.model.as_str();
        Err(WireError::new(
            ErrorKind::InvalidRequest,
            format!(
                "response_format: {model} answers a JSON schema through a tool (no native structured \
                 outputs for it, or the schema is not strict), and a tool's input must be an object, \
                 but the schema's top level is not `\"type\": \"object\"`: wrap the answer in an \
                 object property"
            ),
        ))
    }

    /// What the decoder needs to turn the answer tool's call back into text.
    fn answer_tool(&self) -> Option<AnswerTool> {
        match self {
            Self::Answer { tool, .. } => Some(tool.clone()),
            Self::Free | Self::Native(_) => None,
        }
    }
}

/// Whether `model` takes `output_config.format` (see [`NATIVE_STRUCTURED_OUTPUTS`]).
fn native_structured_outputs(model: &str) -> bool {
    NATIVE_STRUCTURED_OUTPUTS.iter().any(|prefix| model.starts_with(prefix))
}

/// [`ANSWER_TOOL`], or the first of `json_answer_1`, `json_answer_2`, … no real tool is called.
fn free_tool_name(tools: &[ToolSpec]) -> String {
    let taken = |name: &str| tools.iter().any(|t| t.name == name);
    let mut name = ANSWER_TOOL.to_owned();
    let mut n = 0u32;
    while taken(&name) {
        n += 1;
        name = format!("{ANSWER_TOOL}_{n}");
    }
    name
}

/// The answer-tool fallback as the decoders see it: a call of the tool called `name` is the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnswerTool {
    name: String,
    /// Real tools stay callable beside it (`tool_choice: any`), so a real call may follow the
    /// answer in the same message. The streamed answer is then held back until the message ends,
    /// and dropped if a real call came: the model is not done.
    beside_real_tools: bool,
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

/// The answer tool's call while it streams: its input deltas are the answer's text.
#[derive(Debug, Default)]
struct StreamedAnswer {
    tool: Option<AnswerTool>,
    /// The content block carrying the answer, while it is open.
    block: Option<u32>,
    /// An answer-tool call has started. Only the first is the answer; later ones are dropped.
    seen: bool,
    /// The answer's JSON so far.
    text: String,
}

impl StreamedAnswer {
    fn is_answer_tool(&self, name: Option<&str>) -> bool {
        matches!((&self.tool, name), (Some(tool), Some(name)) if tool.name == name)
    }

    /// Held back until the message ends (see [`AnswerTool::beside_real_tools`]), or streamed.
    fn held(&self) -> bool {
        self.tool.as_ref().is_some_and(|t| t.beside_real_tools)
    }

    fn start(&mut self, block: u32, input: Option<Value>, out: &mut Vec<StreamEvent>) {
        if self.seen {
            return;
        }
        self.seen = true;
        self.block = Some(block);
        // As for other tool calls, a whole input at the start counts as the first fragment.
        if let Some(input) = input.filter(|i| i.as_object().is_some_and(|o| !o.is_empty())) {
            self.push(input.to_string(), out);
        }
    }

    fn push(&mut self, fragment: String, out: &mut Vec<StreamEvent>) {
        self.text.push_str(&fragment);
        if !self.held() {
            out.push(StreamEvent::TextDelta { text: fragment });
        }
    }

    /// Takes `fragment` if it belongs to the answer's block, else gives it back.
    fn delta(&mut self, block: u32, fragment: String, out: &mut Vec<StreamEvent>) -> Option<String> {
        if self.block != Some(block) {
            return Some(fragment);
        }
        self.push(fragment, out);
        None
    }

    fn stop(&mut self, block: u32, out: &mut Vec<StreamEvent>) {
        if self.block == Some(block) {
            self.block = None;
            if self.text.is_empty() {
                self.push("{}".to_owned(), out); // no input fragments: the empty object
            }
        }
    }

    /// The message ended: a held answer goes out unless a real call came beside it.
    fn finish(&mut self, real_calls: u32, out: &mut Vec<StreamEvent>) {
        if let Some(block) = self.block {
            self.stop(block, out);
        }
        if self.held() && real_calls == 0 && !self.text.is_empty() {
            out.push(StreamEvent::TextDelta { text: std::mem::take(&mut self.text) });
        }
    }
}

impl AnthropicDecoder {
    /// A decoder for a request that used `answer` (the answer-tool fallback), if any.
    pub(crate) fn new(answer: Option<AnswerTool>) -> Self {
        Self { answer: StreamedAnswer { tool: answer, ..StreamedAnswer::default() }, ..Self::default() }
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
                let input = match &block["input"] {
                    Value::Null => json!({}),
                    input => input.clone(),
                };
                out.push(StreamEvent::TextDelta { text: input.to_string() });
            }
            // A later answer, or one beside a real call (the model is not done): dropped.
            "tool_use" if is_answer(block) => {}
            "tool_use" => {
                let id = text("id").unwrap_or_else(|| format!("toolu_{calls}"));
                let name = text("name").unwrap_or_default();
                let arguments = match &block["input"] {
                    Value::Null => json!({}),
                    input => input.clone(),
                };
                whole_tool_call(calls, id, name, arguments, &mut out);
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
mod tests {
    use super::*;
    use exoclaw_core::ResponseAssembler;
    use exoclaw_types::{GenerationParams, ToolResult};
    use http::header::HeaderValue;
    use pretty_assertions::assert_eq;

    fn decode(events: &[Value]) -> (Vec<StreamEvent>, Result<(), WireError>) {
        let mut d = AnthropicDecoder::default();
        let mut out = Vec::new();
        for e in events {
            if let Err(err) = d.event("ignored", &e.to_string(), &mut out) {
                return (out, Err(err));
            }
        }
        let end = d.end(&mut out);
        (out, end)
    }

    fn start(input_tokens: u64) -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
    }

    fn stop(reason: &str, output_tokens: u64) -> [Value; 2] {
        [
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                   "usage": {"output_tokens": output_tokens}}),
            json!({"type": "message_stop"}),
        ]
    }

    #[test]
    fn request_carries_system_params_tools_and_no_seed() {
        let request = ChatRequest::new("claude", vec![Message::user("Hi")])
            .with_system("Be brief.")
            .with_tools(vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather".into(),
                input_schema: json!({"type": "object"}),
            }])
            .with_params(GenerationParams {
                temperature: Some(0.5),
                max_tokens: Some(64),
                top_p: Some(0.5),
                stop: vec!["END".into()],
                seed: Some(3),
                ..GenerationParams::default()
            });
        let body = encode_request(&request, true);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!((body["temperature"].clone(), body["top_p"].clone()), (json!(0.5), json!(0.5)));
        assert!(body.get("seed").is_none() && body.get("stop").is_none());
        assert_eq!(
            body["tools"][0],
            json!({"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}})
        );
        assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]));

        let plain = encode_request(&ChatRequest::new("claude", vec![Message::user("Hi")]), false);
        assert_eq!(plain["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!(
            plain.get("stream").is_none() && plain.get("system").is_none() && plain.get("tools").is_none()
        );
        for absent in ["tool_choice", "metadata", "output_config"] {
            assert!(body.get(absent).is_none() && plain.get(absent).is_none(), "{absent}");
        }
    }

    fn weather_tool(name: &str) -> ToolSpec {
        ToolSpec { name: name.into(), description: "Weather".into(), input_schema: json!({"type": "object"}) }
    }

    fn city_schema() -> Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"], "additionalProperties": false})
    }

    /// A request for `model` whose answer must follow [`city_schema`].
    fn structured(model: &str, strict: bool) -> ChatRequest {
        let format = ResponseFormat::JsonSchema(exoclaw_types::JsonSchemaFormat {
            name: "place".into(),
            description: Some("The capital.".into()),
            schema: city_schema(),
            strict,
        });
        let params = GenerationParams { response_format: Some(format), ..GenerationParams::default() };
        ChatRequest::new(model, vec![Message::user("Capital of France?")]).with_params(params)
    }

    #[test]
    fn the_end_user_goes_in_metadata() {
        let mut request = ChatRequest::new("claude", vec![Message::user("Hi")]);
        request.user = Some("user-7f3a".into());
        assert_eq!(encode_request(&request, false)["metadata"], json!({"user_id": "user-7f3a"}));
    }

    #[test]
    fn parallel_calls_off_disables_parallel_tool_use_when_there_are_tools() {
        let params = GenerationParams { parallel_tool_calls: Some(false), ..GenerationParams::default() };
        let bare = ChatRequest::new("claude", vec![Message::user("Hi")]).with_params(params);
        assert!(encode_request(&bare, false).get("tool_choice").is_none(), "no tools, nothing to disable");

        let mut request = bare.with_tools(vec![weather_tool("get_weather")]);
        assert_eq!(
            encode_request(&request, false)["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        request.tool_choice = Some(ToolChoice::Required);
        assert_eq!(
            encode_request(&request, false)["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        request.tool_choice = Some(ToolChoice::None);
        assert_eq!(encode_request(&request, false)["tool_choice"], json!({"type": "none"}));
        request.tool_choice = None;
        request.params.parallel_tool_calls = Some(true);
        assert!(encode_request(&request, false).get("tool_choice").is_none(), "parallel is the default");
    }

    #[test]
    fn a_schema_without_native_support_is_answered_through_a_forced_answer_tool() {
        // Claude 3.5 Haiku has no native structured outputs: strict or not, the fallback.
        let body = encode_request(&structured("claude-3-5-haiku-20241022", true), true);
        assert_eq!(body["tools"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["tools"][0]["name"], ANSWER_TOOL);
        assert_eq!(body["tools"][0]["input_schema"], city_schema());
        assert!(body["tools"][0]["description"].as_str().unwrap().ends_with("The capital."));
        assert_eq!(body["tool_choice"], json!({"type": "tool", "name": ANSWER_TOOL}));
        assert!(body.get("output_config").is_none());
    }

    #[test]
    fn beside_real_tools_the_answer_tool_takes_a_free_name_and_any_tool_must_be_called() {
        let request =
            structured("claude-3-7-sonnet-latest", false).with_tools(vec![weather_tool(ANSWER_TOOL)]);
        let body = encode_request(&request, false);
        let names: Vec<&str> =
            body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, [ANSWER_TOOL, "json_answer_1"]);
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(body["tools"][1]["input_schema"], city_schema());

        // Real tools the model may not call leave the answer tool as the only way to answer.
        let mut request = request;
        request.tool_choice = Some(ToolChoice::None);
        assert_eq!(
            encode_request(&request, false)["tool_choice"],
            json!({"type": "tool", "name": "json_answer_1"})
        );
        // A turn that must call a real tool has no answer to shape.
        request.tool_choice = Some(ToolChoice::Required);
        let body = encode_request(&request, false);
        assert_eq!(
            (body["tools"].as_array().map(Vec::len), &body["tool_choice"]),
            (Some(1), &json!({"type": "any"}))
        );
    }

    #[test]
    fn a_json_object_format_is_an_any_object_answer_tool() {
        let params = GenerationParams {
            response_format: Some(ResponseFormat::JsonObject),
            ..GenerationParams::default()
        };
        // Even on a model with native structured outputs: those need a closed schema.
        let request = ChatRequest::new("claude-sonnet-4-5", vec![Message::user("Hi")]).with_params(params);
        let body = encode_request(&request, false);
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(body["tool_choice"], json!({"type": "tool", "name": ANSWER_TOOL}));
        let text = ChatRequest::new("claude", vec![Message::user("Hi")]).with_params(GenerationParams {
            response_format: Some(ResponseFormat::Text),
            ..GenerationParams::default()
        });
        assert!(encode_request(&text, false).get("tools").is_none());
    }

    #[test]
    fn strict_schemas_use_output_config_on_the_models_that_take_it() {
        for model in ["claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-opus-4-6"] {
            let body = encode_request(&structured(model, true), false);
            assert_eq!(
                body["output_config"],
                json!({"format": {"type": "json_schema", "schema": city_schema()}}),
                "{model}"
            );
            assert!(body.get("tools").is_none() && body.get("tool_choice").is_none(), "{model}: {body}");
        }
        // Not strict: the schema may hold keywords constrained decoding refuses.
        let body = encode_request(&structured("claude-sonnet-4-5-20250929", false), false);
        assert!(body.get("output_config").is_none());
        assert_eq!(body["tools"][0]["name"], ANSWER_TOOL);
        // Claude Sonnet 4 is not Sonnet 4.5.
        assert!(
            encode_request(&structured("claude-sonnet-4-20250514", true), false)
                .get("output_config")
                .is_none()
        );
    }

    #[test]
    fn a_schema_the_answer_tool_cannot_carry_is_refused_naming_the_field() {
        let mut request = structured("claude-3-5-haiku-latest", true);
        let Some(ResponseFormat::JsonSchema(format)) = &mut request.params.response_format else {
            unreachable!()
        };
        format.schema = json!({"type": "array", "items": {"type": "string"}});
        let err = OutputPlan::new(&request).check(&request).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.starts_with("response_format:"), "{}", err.message);
        // Natively, the vendor decides.
        let mut native = request.clone();
        native.model = "claude-sonnet-4-5".into();
        assert!(OutputPlan::new(&native).check(&native).is_ok());
    }

    /// Decodes a recorded SSE body (named events, as the API sends them) for a request that used
    /// `answer`.
    fn decode_sse(answer: AnswerTool, body: &str) -> Vec<StreamEvent> {
        let mut decoding = crate::transport::Decoding::new(AnthropicDecoder::new(Some(answer)));
        let mut out = Vec::new();
        let done = decoding.feed(body.as_bytes(), &mut out).unwrap();
        assert!(done, "message_stop ends the answer");
        out
    }

    fn sse(events: &[Value]) -> String {
        events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect()
    }

    fn tool_block(index: u32, id: &str, name: &str, fragments: &[&str]) -> Vec<Value> {
        let mut events = vec![json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})];
        for f in fragments {
            events.push(json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": f}}));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
        events
    }

    #[test]
    fn a_streamed_answer_tool_call_is_answer_text_and_ends_the_turn() {
        let mut events = vec![start(20)];
        events.extend(tool_block(
            0,
            "toolu_01",
            ANSWER_TOOL,
            &["", "{\"city\": \"Par", "is\", \"country\": \"France\"}"],
        ));
        events.extend(stop("tool_use", 14));
        let answer = AnswerTool { name: ANSWER_TOOL.into(), beside_real_tools: false };
        let out = decode_sse(answer, &sse(&events));
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta { text: "{\"city\": \"Par".into() },
                StreamEvent::TextDelta { text: "is\", \"country\": \"France\"}".into() },
                StreamEvent::Usage(Usage {
                    input_tokens: Some(20),
                    output_tokens: Some(14),
                    ..Usage::default()
                }),
                StreamEvent::Finish { reason: StopReason::EndTurn },
            ]
        );
    }

    #[test]
    fn an_answer_beside_a_real_call_is_dropped_and_the_real_call_kept() {
        let answer = AnswerTool { name: ANSWER_TOOL.into(), beside_real_tools: true };
        let mut events = vec![start(20)];
        events.extend(tool_block(0, "toolu_01", ANSWER_TOOL, &["{\"city\": \"Paris\"}"]));
        events.extend(tool_block(1, "toolu_02", "get_weather", &["{\"city\": \"Paris\"}"]));
        events.extend(stop("tool_use", 30));
        let out = decode_sse(answer.clone(), &sse(&events));
        assert!(!out.iter().any(|e| matches!(e, StreamEvent::TextDelta { .. })), "{out:#?}");
        let calls: Vec<&ToolCall> = out
            .iter()
            .filter_map(|e| if let StreamEvent::ToolCall { call, .. } = e { Some(call) } else { None })
            .collect();
        assert_eq!(
            calls,
            [&ToolCall {
                id: "toolu_02".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            }]
        );
        assert!(out.contains(&StreamEvent::ToolCallStart {
            index: 0,
            id: "toolu_02".into(),
            name: "get_weather".into()
        }));
        assert_eq!(out.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));

        // Alone, the held answer goes out whole before usage; an empty input is the empty object.
        let mut events = vec![start(20)];
        events.extend(tool_block(0, "toolu_01", ANSWER_TOOL, &[]));
        events.extend(stop("tool_use", 3));
        let out = decode_sse(answer, &sse(&events));
        assert_eq!(out[0], StreamEvent::TextDelta { text: "{}".into() });
        assert_eq!(out.last(), Some(&StreamEvent::Finish { reason: StopReason::EndTurn }));
    }

    #[test]
    fn a_whole_answer_tool_call_is_answer_text_unless_a_real_call_is_beside_it() {
        let answer = AnswerTool { name: "json_answer_1".into(), beside_real_tools: true };
        let call = |id: &str, name: &str| json!({"type": "tool_use", "id": id, "name": name, "input": {"city": "Paris", "country": "France"}});
        let message = |content: Value| {
            json!({"type": "message", "role": "assistant", "content": content, "stop_reason": "tool_use",
                "usage": {"input_tokens": 9, "output_tokens": 5}})
        };
        let mut assembler = ResponseAssembler::new();
        for event in
            decode_message(&message(json!([call("toolu_1", "json_answer_1")])), Some(&answer)).unwrap()
        {
            assembler.push(event);
        }
        let response = assembler.finish("anthropic").unwrap();
        assert_eq!(response.message.parts, vec![Part::text("{\"city\":\"Paris\",\"country\":\"France\"}")]);
        assert_eq!(response.stop_reason, StopReason::EndTurn);

        let both = message(json!([call("toolu_1", "json_answer_1"), call("toolu_2", "json_answer")]));
        let events = decode_message(&both, Some(&answer)).unwrap();
        assert!(!events.iter().any(|e| matches!(e, StreamEvent::TextDelta { .. })), "{events:#?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, StreamEvent::ToolCall { call, .. } if call.name == "json_answer"))
        );
        assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));
        // Without the request (replayed traffic), the answer tool is a tool like any other.
        assert_eq!(
            decode_response(&both)
                .unwrap()
                .iter()
                .filter(|e| matches!(e, StreamEvent::ToolCall { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn tool_choice_maps_to_anthropic_shapes() {
        let cases = [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::Required, json!({"type": "any"})),
            (ToolChoice::None, json!({"type": "none"})),
            (ToolChoice::Tool { name: "f".into() }, json!({"type": "tool", "name": "f"})),
        ];
        for (choice, wire) in cases {
            let mut request = ChatRequest::new("m", vec![Message::user("x")]);
            request.tool_choice = Some(choice);
            assert_eq!(encode_request(&request, false)["tool_choice"], wire);
        }
    }

    #[test]
    fn tool_results_go_in_one_user_turn_and_same_roles_merge() {
        let call = |id: &str, arguments: Value| {
            Part::ToolCall(ToolCall { id: id.into(), name: "get_weather".into(), arguments })
        };
        let request = ChatRequest::new(
            "m",
            vec![
                Message::user("Weather?"),
                Message::user("In Paris."),
                Message::new(
                    Role::Assistant,
                    vec![
                        Part::Thinking { text: "Let me look.".into(), signature: Some("sig".into()) },
                        Part::Thinking { text: "unsigned".into(), signature: None },
                        Part::text("Checking."),
                        call("call_1", json!({"city": "Paris"})),
                        call("call_2", Value::String("{\"city\":".into())),
                    ],
                ),
                Message::tool_results([ToolResult {
                    call_id: "call_1".into(),
                    content: "sunny".into(),
                    is_error: false,
                }]),
                Message::user("And tomorrow?"),
                Message::tool_results([ToolResult {
                    call_id: "call_2".into(),
                    content: "bad arguments".into(),
                    is_error: true,
                }]),
            ],
        );
        let body = encode_request(&request, false);
        let messages = body["messages"].as_array().unwrap();
        let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(
            messages[0]["content"],
            json!([{"type": "text", "text": "Weather?"}, {"type": "text", "text": "In Paris."}])
        );
        assert_eq!(
            messages[1]["content"],
            json!([
                {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
            ])
        );
        assert_eq!(
            messages[2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny", "is_error": false},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "bad arguments", "is_error": true},
                {"type": "text", "text": "And tomorrow?"},
            ])
        );
    }

    #[test]
    fn system_messages_join_the_system_prompt_and_images_use_sources() {
        let request = ChatRequest::new(
            "m",
            vec![
                Message::new(Role::System, vec![Part::text("Use metric.")]),
                Message::new(
                    Role::User,
                    vec![
                        Part::text(""),
                        Part::Image {
                            source: ImageSource::Base64 {
                                media_type: "image/png".into(),
                                data: "AAA".into(),
                            },
                        },
                        Part::Image { source: ImageSource::Url { url: "https://x/y.png".into() } },
                    ],
                ),
                Message::new(
                    Role::Assistant,
                    vec![Part::Thinking { text: String::new(), signature: Some("enc".into()) }],
                ),
            ],
        )
        .with_system("Be brief.");
        let body = encode_request(&request, false);
        assert_eq!(body["system"], "Be brief.\n\nUse metric.");
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ])
        );
        assert_eq!(body["messages"][1]["content"], json!([{"type": "redacted_thinking", "data": "enc"}]));
    }

    #[test]
    fn text_stream_with_normalised_usage() {
        let mut events = vec![
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 12,
                "cache_creation_input_tokens": 4, "cache_read_input_tokens": 3, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "some_future_event", "index": 0}),
        ];
        events.extend(stop("end_turn", 5));
        let (out, end) = decode(&events);
        end.unwrap();
        assert_eq!(
            out,
            vec![
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::Usage(Usage {
                    input_tokens: Some(19),
                    output_tokens: Some(5),
                    cache_read_tokens: Some(3),
                    cache_write_tokens: Some(4),
                }),
                StreamEvent::Finish { reason: StopReason::EndTurn },
            ]
        );
    }

    #[test]
    fn omitted_cache_fields_stay_unreported_and_no_usage_means_no_usage_event() {
        let mut events = vec![start(7)];
        events.extend(stop("max_tokens", 2));
        let (out, _) = decode(&events);
        assert_eq!(
            out,
            vec![
                StreamEvent::Usage(Usage {
                    input_tokens: Some(7),
                    output_tokens: Some(2),
                    ..Usage::default()
                }),
                StreamEvent::Finish { reason: StopReason::MaxTokens },
            ]
        );
        let (out, _) = decode(&[
            json!({"type": "message_start", "message": {"id": "m"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "pause_turn"}}),
            json!({"type": "message_stop"}),
        ]);
        assert_eq!(out, vec![StreamEvent::Finish { reason: StopReason::Other("pause_turn".into()) }]);
    }

    #[test]
    fn tool_calls_are_numbered_by_call_not_by_content_block() {
        let mut events = vec![
            start(10),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ok."}}),
            json!({"type": "content_block_stop", "index": 0}),
        ];
        for (block, id, name, fragments) in
            [(1, "toolu_a", "f", ["", "{\"a\"", ": 1}"]), (2, "toolu_b", "g", ["{}", "", ""])]
        {
            events.push(json!({"type": "content_block_start", "index": block,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}));
            for f in fragments {
                events.push(json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": f}}));
            }
            events.push(json!({"type": "content_block_stop", "index": block}));
        }
        events.extend(stop("tool_use", 9));
        let (out, end) = decode(&events);
        end.unwrap();
        let calls: Vec<&StreamEvent> = out
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCall { .. }))
            .collect();
        assert_eq!(
            calls,
            [
                &StreamEvent::ToolCallStart { index: 0, id: "toolu_a".into(), name: "f".into() },
                &StreamEvent::ToolCall {
                    index: 0,
                    call: ToolCall { id: "toolu_a".into(), name: "f".into(), arguments: json!({"a": 1}) },
                },
                &StreamEvent::ToolCallStart { index: 1, id: "toolu_b".into(), name: "g".into() },
                &StreamEvent::ToolCall {
                    index: 1,
                    call: ToolCall { id: "toolu_b".into(), name: "g".into(), arguments: json!({}) },
                },
            ]
        );
        let fragments = out.iter().filter(|e| matches!(e, StreamEvent::ToolCallArgsDelta { .. })).count();
        assert_eq!(fragments, 3, "empty fragments are not events");
        assert_eq!(out.last(), Some(&StreamEvent::Finish { reason: StopReason::ToolUse }));
    }

    #[test]
    fn thinking_signatures_and_redacted_thinking() {
        let mut events = vec![
            start(1),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "enc"}}),
            json!({"type": "content_block_stop", "index": 1}),
        ];
        events.extend(stop("end_turn", 3));
        let (out, _) = decode(&events);
        assert_eq!(
            out[..3],
            [
                StreamEvent::ThinkingDelta { text: "Hmm.".into() },
                StreamEvent::ThinkingSignature { signature: "sig".into() },
                StreamEvent::ThinkingSignature { signature: "enc".into() },
            ]
        );
    }

    #[test]
    fn error_events_truncation_and_garbage() {
        let (out, end) = decode(&[
            start(1),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]);
        assert_eq!(out, vec![StreamEvent::TextDelta { text: "Hel".into() }]);
        let err = end.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded);
        assert!(err.message.contains("Overloaded"), "{}", err.message);

        let (out, end) = decode(&[start(1)]);
        assert!(out.is_empty());
        assert_eq!(end.unwrap_err().kind, ErrorKind::Protocol);

        let mut d = AnthropicDecoder::default();
        let err =
            d.event("content_block_delta", "{\"type\": \"content_block_delta\", \"ind", &mut Vec::new());
        assert_eq!(err.unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn whole_response_with_tool_call_and_usage() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3,
                      "output_tokens": 5},
        });
        let mut assembler = ResponseAssembler::new();
        for event in decode_response(&body).unwrap() {
            assembler.push(event);
        }
        let response = assembler.finish("anthropic").unwrap();
        assert_eq!(
            response.message.parts,
            vec![
                Part::Thinking { text: "Hmm.".into(), signature: Some("sig".into()) },
                Part::text("Checking."),
                Part::ToolCall(ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"}),
                }),
            ]
        );
        assert_eq!(response.stop_reason, StopReason::ToolUse);
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: Some(15),
                output_tokens: Some(5),
                cache_read_tokens: Some(3),
                cache_write_tokens: Some(0)
            }
        );
        assert!(decode_response(&json!({"type": "message"})).is_err());
    }

    #[test]
    fn errors_are_typed_by_their_type() {
        let body = |kind: &str, message: &str| {
            json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
                .to_string()
        };
        let none = HeaderMap::new();
        let mut retry = HeaderMap::new();
        retry.insert("retry-after", HeaderValue::from_static("7"));
        let cases = [
            (400, body("invalid_request_error", "max_tokens: Field required"), ErrorKind::InvalidRequest),
            (
                400,
                body("invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
                ErrorKind::ContextLength,
            ),
            (401, body("authentication_error", "invalid x-api-key"), ErrorKind::Auth),
            (403, body("permission_error", "no access"), ErrorKind::Permission),
            (404, body("not_found_error", "model: claude-9"), ErrorKind::ModelNotFound),
            (413, body("request_too_large", "Request exceeds the maximum size"), ErrorKind::InvalidRequest),
            (500, body("api_error", "Internal server error"), ErrorKind::Server),
            (529, body("overloaded_error", "Overloaded"), ErrorKind::Overloaded),
            (502, "<html>Bad Gateway</html>".to_owned(), ErrorKind::Server),
        ];
        for (status, text, kind) in cases {
            let err = classify_error(status, &none, &text);
            assert_eq!(err.kind, kind, "{text}");
        }
        let err = classify_error(429, &retry, &body("rate_limit_error", "Number of requests exceeded"));
        assert_eq!(err.kind, ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(7)) });
        assert_eq!(err.message, "Number of requests exceeded [rate_limit_error] (request_id req_1)");
        assert_eq!(
            classify_error(502, &none, "<html>Bad Gateway</html>").message,
            "<html>Bad Gateway</html>"
        );
    }

    #[test]
    fn a_key_is_required_and_the_base_has_no_trailing_slash() {
        let err = Anthropic::new(ProviderOptions::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.message.contains("ANTHROPIC_API_KEY"), "{}", err.message);
        let p = Anthropic::new(ProviderOptions::default().api_key("sk-ant-secret").base_url("http://x/"))
            .unwrap();
        assert_eq!((p.name(), p.base_url()), ("anthropic", "http://x"));
        assert!(!format!("{p:?}").contains("sk-ant-secret"));
        let p = Anthropic::new(ProviderOptions::default().api_key("k")).unwrap();
        assert_eq!(p.base_url(), DEFAULT_BASE_URL);
    }
}
