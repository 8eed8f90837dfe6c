//! [`McpTool`]: one of a server's tools as an exoclaw [`Tool`], under its namespaced name.

use crate::convert;
use crate::server::Server;
use async_trait::async_trait;
use exoclaw_core::{Tool, ToolContext, ToolError};
use exoclaw_types::{ToolEffect, ToolSpec};
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use serde_json::Value;
use std::sync::Weak;

/// A server's tool. It calls the server's current connection, so it keeps working across a
/// restart; while the server is down a call fails with a message saying why.
pub struct McpTool {
    server: Weak<Server>,
    /// The server's own name for it.
    pub(crate) remote_name: String,
    /// What the model sees, under the namespaced name.
    pub(crate) spec: ToolSpec,
    pub(crate) effect: ToolEffect,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool").field("name", &self.spec.name).field("effect", &self.effect).finish()
    }
}

impl McpTool {
    pub(crate) fn new(server: Weak<Server>, remote_name: String, spec: ToolSpec, effect: ToolEffect) -> Self {
        Self { server, remote_name, spec, effect }
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn effect(&self) -> ToolEffect {
        self.effect
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let server = self
            .server
            .upgrade()
            .ok_or_else(|| ToolError::Failed("exoclaw's MCP servers have been shut down".into()))?;
        let arguments = match args {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "the arguments must be a JSON object, not {}",
                    other.to_string().chars().take(200).collect::<String>()
                )));
            }
        };
        let peer = server
            .peer_when_started()
            .await
            .map_err(|err| ToolError::Failed(format!("{err}; try again later")))?;
        let mut params = CallToolRequestParams::new(self.remote_name.clone());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let limit = server.config.tool_timeout();
        // Dropping the call (cancelled, timed out) sends the server `notifications/cancelled`.
        let response = tokio::select! {
            outcome = tokio::time::timeout(limit, peer.call_tool_once(params)) => match outcome {
                Ok(response) => response,
                Err(_elapsed) => return Err(ToolError::Timeout(limit)),
            },
            () = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        let name = &server.name;
        match response {
            Ok(CallToolResponse::Complete(result)) => {
                let text = convert::result_text(&result);
                match result.is_error {
                    Some(true) => Err(ToolError::Failed(text)),
                    _ => Ok(text),
                }
            }
            Ok(CallToolResponse::InputRequired(_)) => Err(ToolError::Failed(format!(
                "the MCP server `{name}` asked for more input to finish this call, which exoclaw cannot give yet"
            ))),
            Ok(CallToolResponse::Task(_)) => Err(ToolError::Failed(format!(
                "the MCP server `{name}` turned this call into a background task, which exoclaw does not follow yet"
            ))),
            Ok(_) => Err(ToolError::Failed(format!(
                "the MCP server `{name}` answered in a way exoclaw does not know"
            ))),
            Err(err) => Err(ToolError::Failed(format!("the MCP server `{name}` failed the call: {err}"))),
        }
    }
}
