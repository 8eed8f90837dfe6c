//! Structured outputs on the Messages API: which way a request's `response_format` goes
//! ([`OutputPlan`]: native `output_config.format`, or the answer-tool fallback), and the answer
//! tool's call turned back into answer text while it streams ([`StreamedAnswer`]). See the parent
//! module's docs.

use crate::wire::WireError;
use exoclaw_core::ErrorKind;
use exoclaw_types::{ChatRequest, ResponseFormat, StreamEvent, ToolChoice, ToolSpec};
use serde_json::{Value, json};
use std::borrow::Cow;

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
pub(super) const ANSWER_TOOL: &str = "json_answer";

/// How a request's `response_format` reaches the Messages API (see the module docs).
#[derive(Debug)]
pub(super) enum OutputPlan<'a> {
    /// Free text, or a turn that must be a tool call anyway (`tool_choice` `Required` or `Tool`),
    /// where an answer format has nothing to shape: nothing to send.
    Free,
    /// Native structured outputs: `output_config.format` holds this schema.
    Native(&'a Value),
    /// The fallback: one more tool, whose input is the answer.
    Answer { tool: AnswerTool, schema: Cow<'a, Value>, description: String },
}

impl<'a> OutputPlan<'a> {
    pub(super) fn new(request: &'a ChatRequest) -> Self {
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
    pub(super) fn check(&self, request: &ChatRequest) -> Result<(), WireError> {
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
    pub(super) fn answer_tool(&self) -> Option<AnswerTool> {
        match self {
            Self::Answer { tool, .. } => Some(tool.clone()),
            Self::Free | Self::Native(_) => None,
        }
    }
}

/// Whether `model` takes `output_config.format` (see [`NATIVE_STRUCTURED_OUTPUTS`]).
pub(super) fn native_structured_outputs(model: &str) -> bool {
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
    pub(super) name: String,
    /// Real tools stay callable beside it (`tool_choice: any`), so a real call may follow the
    /// answer in the same message. The streamed answer is then held back until the message ends,
    /// and dropped if a real call came: the model is not done.
    pub(super) beside_real_tools: bool,
}

/// The answer tool's call while it streams: its input deltas are the answer's text.
#[derive(Debug, Default)]
pub(super) struct StreamedAnswer {
    tool: Option<AnswerTool>,
    /// The content block carrying the answer, while it is open.
    block: Option<u32>,
    /// An answer-tool call has started. Only the first is the answer; later ones are dropped.
    pub(super) seen: bool,
    /// The answer's JSON so far.
    text: String,
}

impl StreamedAnswer {
    /// For a request that used `tool` (the answer-tool fallback), if any.
    pub(super) fn new(tool: Option<AnswerTool>) -> Self {
        Self { tool, ..Self::default() }
    }

    pub(super) fn is_answer_tool(&self, name: Option<&str>) -> bool {
        matches!((&self.tool, name), (Some(tool), Some(name)) if tool.name == name)
    }

    /// Held back until the message ends (see [`AnswerTool::beside_real_tools`]), or streamed.
    fn held(&self) -> bool {
        self.tool.as_ref().is_some_and(|t| t.beside_real_tools)
    }

    pub(super) fn start(&mut self, block: u32, input: Option<Value>, out: &mut Vec<StreamEvent>) {
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
    pub(super) fn delta(
        &mut self,
        block: u32,
        fragment: String,
        out: &mut Vec<StreamEvent>,
    ) -> Option<String> {
        if self.block != Some(block) {
            return Some(fragment);
        }
        self.push(fragment, out);
        None
    }

    pub(super) fn stop(&mut self, block: u32, out: &mut Vec<StreamEvent>) {
        if self.block == Some(block) {
            self.block = None;
            if self.text.is_empty() {
                self.push("{}".to_owned(), out); // no input fragments: the empty object
            }
        }
    }

    /// The message ended: a held answer goes out unless a real call came beside it.
    pub(super) fn finish(&mut self, real_calls: u32, out: &mut Vec<StreamEvent>) {
        if let Some(block) = self.block {
            self.stop(block, out);
        }
        if self.held() && real_calls == 0 && !self.text.is_empty() {
            out.push(StreamEvent::TextDelta { text: std::mem::take(&mut self.text) });
        }
    }
}
