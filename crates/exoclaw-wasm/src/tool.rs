//! Tool plugins as [`Tool`]s: `describe` tells their specs once at load, each call goes to the
//! plugin's `call` export. Agents see them as `PLUGIN__TOOL`, and they go through the same
//! permission rules, approvals, hooks and audit as builtin tools (the runner does that for every
//! tool in the registry).

use crate::error::{CallFailure, PluginError};
use crate::host::LoadedPlugin;
use async_trait::async_trait;
use exoclaw_core::{Tool, ToolContext, ToolError};
use exoclaw_types::{ToolEffect, ToolSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// What a tool plugin's `describe` answers.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Described {
    tools: Vec<DescribedTool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribedTool {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object_schema")]
    parameters: Value,
    #[serde(default)]
    effect: Option<ToolEffect>,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// One tool of a tool plugin.
pub struct PluginTool {
    plugin: Arc<LoadedPlugin>,
    /// Its name in the plugin.
    remote: String,
    spec: ToolSpec,
    effect: ToolEffect,
    confinement: String,
}

impl std::fmt::Debug for PluginTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginTool").field("name", &self.spec.name).finish_non_exhaustive()
    }
}

/// The name agents see a plugin's tool by.
pub fn tool_name(plugin: &str, tool: &str) -> String {
    format!("{}__{tool}", plugin.replace('-', "_"))
}

/// Asks a loaded tool plugin for its tools; `confinement` is what its sandbox allows, in a line
/// (shown when a call waits for approval).
pub fn plugin_tools(plugin: &Arc<LoadedPlugin>, confinement: &str) -> Result<Vec<PluginTool>, PluginError> {
    let output = plugin.description();
    let interface = |problem: String| PluginError::Interface {
        plugin: plugin.name().to_owned(),
        function: "describe".to_owned(),
        problem,
    };
    let described: Described = serde_json::from_slice(output).map_err(|e| {
        interface(format!("{e}; it should be {{\"tools\": [{{\"name\", \"description\", \"parameters\"}}]}}"))
    })?;
    let mut tools = Vec::new();
    for tool in described.tools {
        let valid = !tool.name.is_empty()
            && tool.name.len() <= 64
            && tool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(interface(format!("`{}` is not a tool name (letters, digits, `_`, `-`)", tool.name)));
        }
        if !tool.parameters.is_object() {
            return Err(interface(format!("the parameters of `{}` are not a JSON Schema object", tool.name)));
        }
        let spec = ToolSpec {
            name: tool_name(plugin.name(), &tool.name),
            description: tool.description,
            input_schema: tool.parameters,
        };
        tools.push(PluginTool {
            plugin: Arc::clone(plugin),
            remote: tool.name,
            spec,
            // A plugin that does not say is treated as reaching outside: the rules ask first.
            effect: tool.effect.unwrap_or(ToolEffect::External),
            confinement: confinement.to_owned(),
        });
    }
    Ok(tools)
}

#[async_trait]
impl Tool for PluginTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn effect(&self) -> ToolEffect {
        self.effect
    }

    fn confinement(&self) -> Option<String> {
        Some(self.confinement.clone())
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        if !args.is_object() {
            return Err(ToolError::InvalidArguments("the arguments are not a JSON object".to_owned()));
        }
        let input = json!({"tool": self.remote, "arguments": args}).to_string().into_bytes();
        match self.plugin.call("call", input, &ctx.cancel).await {
            Ok(output) => String::from_utf8(output).map_err(|_| {
                ToolError::Failed(format!(
                    "the plugin `{}` answered with bytes that are not text",
                    self.plugin.name()
                ))
            }),
            Err(PluginError::Call { failure: CallFailure::Cancelled, .. }) => Err(ToolError::Cancelled),
            Err(error) => Err(ToolError::Failed(error.to_string())),
        }
    }
}
