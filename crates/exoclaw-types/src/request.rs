//! The provider-neutral chat request and the tool specifications it carries.

use crate::{Message, ModelId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolSpec {
    /// The name the model uses to call it (`read_file`).
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON schema of the arguments object.
    pub input_schema: Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides (the vendors' default when tools are given).
    Auto,
    /// The model must not call a tool.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool {
        /// The tool's name.
        name: String,
    },
}

/// The shape an answer must take.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (every vendor's default).
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that validates against a schema.
    JsonSchema(JsonSchemaFormat),
}

impl ResponseFormat {
    /// The schema an answer in this format validates against: `None` for free text, "any object"
    /// for [`Self::JsonObject`].
    pub fn schema(&self) -> Option<Value> {
        match self {
            Self::Text => None,
            Self::JsonObject => Some(serde_json::json!({"type": "object"})),
            Self::JsonSchema(format) => Some(format.schema.clone()),
        }
    }
}

/// A JSON schema an answer must follow (OpenAI's `response_format.json_schema`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JsonSchemaFormat {
    /// The schema's name (`[a-zA-Z0-9_-]`, at most 64 characters at OpenAI).
    pub name: String,
    /// What the answer is for, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema.
    pub schema: Value,
    /// Whether the vendor must follow the schema exactly (OpenAI's strict mode, which accepts a
    /// subset of JSON Schema); exoclaw's embedded model always does.
    #[serde(default)]
    pub strict: bool,
}

/// Sampling, length and answer-shape parameters. `None` leaves the vendor's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationParams {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sequences that end generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed for reproducible sampling, where the vendor supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The shape the answer must take (structured outputs); `None` is free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Whether one answer may hold several tool calls; `None` leaves the vendor's default (yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

/// One call to a model: everything a provider needs, in no vendor's format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatRequest {
    /// The model, as the provider names it.
    pub model: ModelId,
    /// System prompt, sent the way the vendor expects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Constraint on tool use; `None` leaves the vendor's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Sampling, length and answer-shape parameters.
    #[serde(default)]
    pub params: GenerationParams,
    /// The end user the request is made for, passed to vendors that take one for abuse
    /// monitoring (OpenAI's `user`, Anthropic's `metadata.user_id`); others never see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ChatRequest {
    /// A request for `model` with the given messages and default parameters.
    pub fn new(model: impl Into<ModelId>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            system: None,
            messages,
            tools: Vec::new(),
            tool_choice: None,
            params: GenerationParams::default(),
            user: None,
        }
    }

    /// Sets the system prompt.
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Sets the tools the model may call.
    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the sampling parameters.
    pub fn with_params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// The name of the tool that made call `call_id`, searching assistant messages newest first
    /// (vendors without call ids, like Gemini, get generated ids that repeat across turns). Some
    /// vendors (Gemini) key tool results by the tool's name rather than the call's id.
    pub fn tool_name_for_call(&self, call_id: &str) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .flat_map(|m| m.tool_calls())
            .find(|c| c.id == call_id)
            .map(|c| c.name.as_str())
    }
}
