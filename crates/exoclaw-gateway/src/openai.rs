//! The server side of OpenAI Chat Completions: the request body decoded into a [`ChatRequest`],
//! and answers encoded back as a `chat.completion` object or a stream of `chat.completion.chunk`
//! SSE frames. Field names mirror the client in `exoclaw-providers` (`openai.rs`).

use crate::GatewayError;
use exoclaw_core::{ErrorKind, EventStream, ProviderError};
use exoclaw_types::{
    ChatRequest, ChatResponse, GenerationParams, ImageSource, JsonSchemaFormat, Message, Part,
    ResponseFormat, Role, StopReason, StreamEvent, ToolCall, ToolChoice, ToolResult, ToolSpec, Usage,
};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashSet;

/// A `POST /v1/chat/completions` body. Every field OpenAI documents that exoclaw does not carry
/// out is refused by name (400) rather than ignored: a client asking for `logprobs` or a penalty
/// must not get an answer made without it. Fields of no effect at their default value are accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompletionRequest {
    pub(crate) model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    tools: Vec<WireTool>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<WireResponseFormat>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<u64>,
    /// How many choices to generate; only 1 is supported.
    #[serde(default)]
    n: Option<u32>,
    /// The end user, passed on to vendors that take one.
    #[serde(default)]
    user: Option<String>,
    /// Only `false` (the default) is supported.
    #[serde(default)]
    logprobs: Option<bool>,
    /// Not supported (it asks for log probabilities).
    #[serde(default)]
    top_logprobs: Option<Value>,
    /// Only 0 (the default) is supported.
    #[serde(default)]
    presence_penalty: Option<f32>,
    /// Only 0 (the default) is supported.
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    pub(crate) stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

/// OpenAI's `response_format`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireJsonSchema },
}

#[derive(Debug, Deserialize)]
struct WireJsonSchema {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// OpenAI lets it out; then any JSON object will do.
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

impl From<WireResponseFormat> for ResponseFormat {
    fn from(format: WireResponseFormat) -> Self {
        match format {
            WireResponseFormat::Text => ResponseFormat::Text,
            WireResponseFormat::JsonObject => ResponseFormat::JsonObject,
            WireResponseFormat::JsonSchema { json_schema: s } => {
                ResponseFormat::JsonSchema(JsonSchemaFormat {
                    name: s.name,
                    description: s.description,
                    schema: s.schema.unwrap_or_else(|| json!({"type": "object"})),
                    strict: s.strict.unwrap_or(false),
                })
            }
        }
    }
}

/// The field a serde error says is unknown (`unknown field `x`, expected …`), if that is the error.
pub(crate) fn unknown_field(error: &str) -> Option<&str> {
    let rest = error.split_once("unknown field `")?.1;
    Some(&rest[..rest.find('`')?])
}

/// The 400 for a field exoclaw's chat completions API does not carry out.
pub(crate) fn unsupported_field(field: &str) -> GatewayError {
    unsupported_in(crate::server::JsonApi::Chat, field)
}

/// The 400 for a field `api` does not carry out.
pub(crate) fn unsupported_in(api: crate::server::JsonApi, field: &str) -> GatewayError {
    GatewayError::invalid(
        format!(
            "`{field}` is not supported by exoclaw's {} API; remove it \
             (exoclaw refuses what it would otherwise silently ignore)",
            api.name()
        ),
        Some(field),
    )
}

impl CompletionRequest {
    /// Whether a streamed answer ends with a usage chunk.
    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum WireMessage {
    System {
        content: Content,
    },
    Developer {
        content: Content,
    },
    User {
        content: Content,
    },
    Assistant {
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        tool_calls: Vec<WireToolCall>,
    },
    Tool {
        content: Content,
        tool_call_id: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    /// What assistant messages may carry instead of text.
    Refusal {
        refusal: String,
    },
}

#[derive(Debug, Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Deserialize)]
struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    function: WireFunction,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

impl Content {
    /// The content as exoclaw parts; images only where `images_allowed`.
    fn into_parts(self, images_allowed: bool, param: &str) -> Result<Vec<Part>, GatewayError> {
        match self {
            Content::Text(text) => Ok(vec![Part::text(text)]),
            Content::Parts(parts) => parts
                .into_iter()
                .map(|p| match p {
                    ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                        Ok(Part::text(text))
                    }
                    ContentPart::ImageUrl { image_url } if images_allowed => {
                        Ok(Part::Image { source: image_source(image_url.url) })
                    }
                    ContentPart::ImageUrl { .. } => {
                        Err(GatewayError::invalid("images are only accepted in user messages", Some(param)))
                    }
                })
                .collect(),
        }
    }

    /// The text parts joined (system prompts and tool results are text only).
    fn into_text(self, param: &str) -> Result<String, GatewayError> {
        Ok(self
            .into_parts(false, param)?
            .into_iter()
            .map(|p| match p {
                Part::Text { text } => text,
                _ => String::new(),
            })
            .collect())
    }
}

/// `data:<type>;base64,<data>` URLs become inline images; anything else is fetched by the vendor.
fn image_source(url: String) -> ImageSource {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media_type, data)) = rest.split_once(";base64,")
    {
        return ImageSource::Base64 { media_type: media_type.to_owned(), data: data.to_owned() };
    }
    ImageSource::Url { url }
}

/// Tool arguments as JSON; text that is not JSON is kept verbatim as a string (as
/// [`ToolCall::arguments`] documents). An empty string is an empty object: some clients send
/// `""` for a call without arguments.
fn parse_arguments(raw: String) -> Value {
    if raw.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(&raw).unwrap_or(Value::String(raw))
}

fn decode_tool_choice(choice: Value) -> Result<ToolChoice, GatewayError> {
    let bad = || {
        GatewayError::invalid(
            "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}",
            Some("tool_choice"),
        )
    };
    match &choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        Value::Object(_) => match choice["function"]["name"].as_str() {
            Some(name) => Ok(ToolChoice::Tool { name: name.to_owned() }),
            None => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// The provider-neutral request for an OpenAI chat-completions body, addressed to `model` (the
/// name the provider knows the model by). System and developer messages, wherever they sit,
/// become the system prompt; consecutive `tool` messages become one tool-results message.
pub fn decode_request(body: Value, model: &str) -> Result<ChatRequest, GatewayError> {
    let request: CompletionRequest = serde_json::from_value(body).map_err(|e| {
        let message = e.to_string();
        match unknown_field(&message) {
            Some(field) => unsupported_field(field),
            None => {
                GatewayError::invalid(format!("the request body is not a chat completion request: {e}"), None)
            }
        }
    })?;
    to_chat_request(request, model)
}

pub(crate) fn to_chat_request(request: CompletionRequest, model: &str) -> Result<ChatRequest, GatewayError> {
    if request.messages.is_empty() {
        return Err(GatewayError::invalid("messages must hold at least one message", Some("messages")));
    }
    if request.n.is_some_and(|n| n != 1) {
        // Answering fewer choices than asked would silently break a client that indexes them.
        return Err(GatewayError::invalid("only n = 1 is supported; send one request per choice", Some("n")));
    }
    if request.logprobs == Some(true) {
        return Err(GatewayError::invalid(
            "logprobs are not supported; leave `logprobs` out or false",
            Some("logprobs"),
        ));
    }
    if request.top_logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported_field("top_logprobs"));
    }
    for (field, value) in
        [("presence_penalty", request.presence_penalty), ("frequency_penalty", request.frequency_penalty)]
    {
        if value.is_some_and(|v| v != 0.0) {
            return Err(GatewayError::invalid(
                format!("`{field}` is not supported; leave it out or 0"),
                Some(field),
            ));
        }
    }
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for (i, message) in request.messages.into_iter().enumerate() {
        let param = format!("messages[{i}].content");
        match message {
            WireMessage::System { content } | WireMessage::Developer { content } => {
                system.push(content.into_text(&param)?);
            }
            WireMessage::User { content } => {
                messages.push(Message::new(Role::User, content.into_parts(true, &param)?));
            }
            WireMessage::Assistant { content, tool_calls } => {
                let mut parts = match content {
                    Some(content) => content.into_parts(false, &param)?,
                    None => Vec::new(),
                };
                parts.retain(|p| !matches!(p, Part::Text { text } if text.is_empty()));
                parts.extend(tool_calls.into_iter().map(|c| {
                    Part::ToolCall(ToolCall {
                        id: c.id,
                        name: c.function.name,
                        arguments: parse_arguments(c.function.arguments),
                    })
                }));
                messages.push(Message::new(Role::Assistant, parts));
            }
            WireMessage::Tool { content, tool_call_id } => {
                let result = ToolResult {
                    call_id: tool_call_id,
                    content: content.into_text(&param)?,
                    is_error: false,
                };
                match messages.last_mut() {
                    Some(last) if last.role == Role::Tool => last.parts.push(Part::ToolResult(result)),
                    _ => messages.push(Message::tool_results([result])),
                }
            }
        }
    }
    let tools = request
        .tools
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.kind != "function" {
                return Err(GatewayError::invalid(
                    format!("tool type `{}` is not supported; only \"function\" tools are", t.kind),
                    Some(&format!("tools[{i}].type")),
                ));
            }
            Ok(ToolSpec {
                name: t.function.name,
                description: t.function.description.unwrap_or_default(),
                input_schema: t
                    .function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = request.tool_choice.map(decode_tool_choice).transpose()?;
    let params = GenerationParams {
        temperature: request.temperature,
        // The newer name wins where a client sends both.
        max_tokens: request.max_completion_tokens.or(request.max_tokens),
        top_p: request.top_p,
        stop: match request.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
        seed: request.seed,
        response_format: request.response_format.map(ResponseFormat::from),
        parallel_tool_calls: request.parallel_tool_calls,
    };
    Ok(ChatRequest {
        model: model.into(),
        system: if system.is_empty() { None } else { Some(system.join("\n\n")) },
        messages,
        tools,
        tool_choice,
        params,
        user: request.user,
    })
}

/// OpenAI's `finish_reason` for a stop reason.
pub fn finish_reason(reason: &StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        // A loop stopped by exoclaw's embedded model is an answer cut short, like the cap.
        StopReason::MaxTokens | StopReason::Repetition => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
        // OpenAI SDKs know only the values above; "stop" is the honest approximation.
        StopReason::Other(_) => "stop",
    }
}

/// OpenAI's `usage` object, when the provider reported both counts.
#[derive(Serialize)]
struct UsageBody {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedTokens>,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

impl UsageBody {
    fn of(usage: &Usage) -> Option<Self> {
        let (prompt, completion) = (usage.input_tokens?, usage.output_tokens?);
        Some(Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: usage
                .cache_read_tokens
                .map(|cached_tokens| CachedTokens { cached_tokens }),
        })
    }
}

/// What every answer object carries.
#[derive(Debug, Clone)]
pub(crate) struct AnswerMeta {
    pub(crate) id: String,
    pub(crate) created: u64,
    /// The model name as the client asked for it.
    pub(crate) model: String,
}

/// A `chat.completion` object, borrowing the answer: serialized straight to the response body.
#[derive(Serialize)]
pub(crate) struct CompletionBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageBody>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: AnswerMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AnswerMessage<'a> {
    role: &'static str,
    /// `null` when the answer is only tool calls.
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<CallBody<'a>>,
}

#[derive(Serialize)]
struct CallBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionBody<'a>,
}

#[derive(Serialize)]
struct FunctionBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: Cow<'a, str>,
}

/// A whole answer as a `chat.completion` object. Thinking is not sent: the API has no field for it.
pub(crate) fn encode_response<'a>(meta: &'a AnswerMeta, response: &'a ChatResponse) -> CompletionBody<'a> {
    let text = response.message.text();
    let calls: Vec<CallBody<'a>> = response
        .message
        .tool_calls()
        .map(|c| CallBody {
            index: None,
            id: Some(&c.id),
            kind: Some("function"),
            function: FunctionBody { name: Some(&c.name), arguments: arguments_text(&c.arguments) },
        })
        .collect();
    let content = if text.is_empty() && !calls.is_empty() { None } else { Some(text) };
    CompletionBody {
        id: &meta.id,
        object: "chat.completion",
        created: meta.created,
        model: &meta.model,
        choices: [CompletionChoice {
            index: 0,
            message: AnswerMessage { role: "assistant", content, refusal: None, tool_calls: calls },
            logprobs: None,
            finish_reason: finish_reason(&response.stop_reason),
        }],
        usage: UsageBody::of(&response.usage),
    }
}

/// Arguments as OpenAI sends them: a JSON string. Arguments kept verbatim (not valid JSON) go back
/// as they came.
fn arguments_text(arguments: &Value) -> Cow<'_, str> {
    match arguments {
        Value::String(raw) => Cow::Borrowed(raw),
        other => Cow::Owned(other.to_string()),
    }
}

/// One `chat.completion.chunk`.
#[derive(Serialize)]
struct ChunkBody<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageBody>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[CallBody<'a>; 1]>,
}

/// Turns stream events into `chat.completion.chunk` SSE frames.
#[derive(Debug)]
pub(crate) struct ChunkEncoder {
    meta: AnswerMeta,
    include_usage: bool,
    usage: Usage,
    /// Tool-call indices whose start was sent, and those whose arguments were streamed.
    started: HashSet<u32>,
    streamed_args: HashSet<u32>,
    done: bool,
}

/// Appends one SSE frame carrying `data` as JSON.
fn frame(data: &impl Serialize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, data).is_err() {
        // Not reachable for these types (string keys only); an empty object keeps the frame valid.
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

impl ChunkEncoder {
    pub(crate) fn new(meta: AnswerMeta, include_usage: bool) -> Self {
        Self {
            meta,
            include_usage,
            usage: Usage::default(),
            started: HashSet::new(),
            streamed_args: HashSet::new(),
            done: false,
        }
    }

    fn chunk(&self, delta: Delta<'_>, finish: Option<&'static str>, out: &mut Vec<u8>) {
        let choices = [ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }];
        let body = ChunkBody {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            choices: &choices,
            usage: None,
        };
        frame(&body, out);
    }

    /// The frame that opens every stream: the assistant role, no content yet.
    pub(crate) fn opening(&self, out: &mut Vec<u8>) {
        self.chunk(Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None, out);
    }

    /// Whether the stream has ended (finished or failed).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the frames for one stream item to `out`.
    pub(crate) fn push(&mut self, item: Result<StreamEvent, ProviderError>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %crate::text::Escaped(&e), "provider failed mid-stream");
                return self.fail(GatewayError::Provider(e), out);
            }
        };
        match event {
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                self.chunk(Delta { content: Some(&text), ..Delta::default() }, None, out)
            }
            StreamEvent::TextDelta { .. } => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.started.insert(index);
                self.tool_delta(index, Some((&id, &name)), Cow::Borrowed(""), out);
            }
            StreamEvent::ToolCallArgsDelta { index, fragment } => {
                self.streamed_args.insert(index);
                self.tool_delta(index, None, Cow::Borrowed(&fragment), out);
            }
            // The assembled call repeats what was streamed; send only what a client has not seen.
            StreamEvent::ToolCall { index, call } => {
                let arguments = arguments_text(&call.arguments);
                if !self.started.contains(&index) {
                    self.started.insert(index);
                    self.tool_delta(index, Some((&call.id, &call.name)), arguments, out);
                } else if !self.streamed_args.contains(&index) {
                    self.tool_delta(index, None, arguments, out);
                }
                self.streamed_args.insert(index);
            }
            StreamEvent::Usage(usage) => self.usage.update(usage),
            // Nothing in the OpenAI format carries these.
            StreamEvent::ThinkingDelta { .. }
            | StreamEvent::ThinkingSignature { .. }
            | StreamEvent::Served { .. } => {}
            StreamEvent::Finish { reason } => {
                self.chunk(Delta::default(), Some(finish_reason(&reason)), out);
                if self.include_usage {
                    let body = ChunkBody {
                        id: &self.meta.id,
                        object: "chat.completion.chunk",
                        created: self.meta.created,
                        model: &self.meta.model,
                        choices: &[],
                        usage: Some(UsageBody::of(&self.usage)),
                    };
                    frame(&body, out);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
        }
    }

    /// The frames when the provider's stream ends without a finish.
    pub(crate) fn end(&mut self, provider: &str, out: &mut Vec<u8>) {
        if !self.done {
            let e =
                ProviderError::new(ErrorKind::Protocol, provider, "the answer ended without a finish event");
            self.fail(GatewayError::Provider(e), out);
        }
    }

    /// A tool call's delta: its start (`id` and `name` given) or a piece of its arguments.
    fn tool_delta(
        &self,
        index: u32,
        start: Option<(&str, &str)>,
        arguments: Cow<'_, str>,
        out: &mut Vec<u8>,
    ) {
        let call = CallBody {
            index: Some(index),
            id: start.map(|(id, _)| id),
            kind: start.map(|_| "function"),
            function: FunctionBody { name: start.map(|(_, name)| name), arguments },
        };
        self.chunk(Delta { tool_calls: Some([call]), ..Delta::default() }, None, out);
    }

    /// An error frame; the stream ends after it (no `[DONE]`: the answer is not complete).
    fn fail(&mut self, error: GatewayError, out: &mut Vec<u8>) {
        frame(&error.body(), out);
        self.done = true;
    }
}

/// The SSE body for a provider's stream: the opening frame, then frames as events arrive. Events
/// that have already arrived go out together, in one body chunk (one write, not one per frame).
/// Dropping the returned stream (the client went away) drops the provider's stream, which cancels
/// the upstream request.
pub(crate) fn sse_frames(
    events: EventStream,
    encoder: ChunkEncoder,
    provider: String,
) -> impl futures::Stream<Item = Vec<u8>> + Send + 'static {
    let mut opening = Vec::with_capacity(1024);
    encoder.opening(&mut opening);
    futures::stream::unfold(
        (events, encoder, opening, provider),
        |(mut events, mut encoder, mut pending, provider)| async move {
            loop {
                while !encoder.is_done() {
                    match events.next().now_or_never() {
                        Some(Some(item)) => encoder.push(item, &mut pending),
                        Some(None) => encoder.end(&provider, &mut pending),
                        None => break,
                    }
                }
                if !pending.is_empty() {
                    let frames = std::mem::replace(&mut pending, Vec::with_capacity(1024));
                    return Some((frames, (events, encoder, pending, provider)));
                }
                if encoder.is_done() {
                    return None;
                }
                match events.next().await {
                    Some(item) => encoder.push(item, &mut pending),
                    None => encoder.end(&provider, &mut pending),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: Value) -> Result<ChatRequest, GatewayError> {
        decode_request(body, "upstream")
    }

    #[test]
    fn system_and_developer_messages_become_the_system_prompt() {
        let r = decode(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "be kind"}]},
            {"role": "user", "content": "hi"},
        ]}))
        .unwrap();
        assert_eq!(r.system.as_deref(), Some("be brief\n\nbe kind"));
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.model.as_str(), "upstream");
    }

    #[test]
    fn params_stop_and_max_completion_tokens() {
        let r = decode(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 20,
            "stop": "END", "seed": 7}))
        .unwrap();
        assert_eq!(r.params.max_tokens, Some(20));
        assert_eq!(r.params.stop, vec!["END".to_owned()]);
        assert_eq!(r.params.seed, Some(7));
        assert_eq!(r.params.temperature, Some(0.5));
    }

    #[test]
    fn arguments_that_are_not_json_are_kept_verbatim() {
        let r = decode(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
        ]}))
        .unwrap();
        let call = r.messages[1].tool_calls().next().unwrap();
        assert_eq!(call.arguments, Value::String("{oops".into()));
        assert_eq!(r.messages[2].role, Role::Tool);
    }

    #[test]
    fn bad_tool_choice_and_empty_messages_are_invalid() {
        let e = decode(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tool_choice"), "{e}");
        let e = decode(json!({"model": "m", "messages": []})).unwrap_err();
        assert!(e.to_string().contains("messages"), "{e}");
    }

    #[test]
    fn response_format_parallel_tool_calls_and_user_are_passed_through() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let r = decode(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema,
                "strict": true}},
            "parallel_tool_calls": false, "user": "alice", "logprobs": false, "presence_penalty": 0}))
        .unwrap();
        assert_eq!(
            r.params.response_format,
            Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: "thing".into(),
                description: None,
                schema,
                strict: true
            }))
        );
        assert_eq!(r.params.parallel_tool_calls, Some(false));
        assert_eq!(r.user.as_deref(), Some("alice"));
        let r = decode(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}}))
        .unwrap();
        assert_eq!(r.params.response_format, Some(ResponseFormat::JsonObject));
    }

    #[test]
    fn fields_that_would_be_ignored_are_refused_by_name() {
        for (extra, field) in [
            (json!({"logprobs": true}), "logprobs"),
            (json!({"top_logprobs": 3}), "top_logprobs"),
            (json!({"n": 2}), "n"),
            (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
            (json!({"prediction": {"type": "content", "content": "x"}}), "prediction"),
        ] {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            match decode(body) {
                Err(GatewayError::InvalidRequest { message, param }) => {
                    assert_eq!(param.as_deref(), Some(field), "{message}");
                    assert!(message.contains(field), "{message}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn data_urls_become_inline_images() {
        assert_eq!(
            image_source("data:image/png;base64,AAAA".into()),
            ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() }
        );
    }
}
