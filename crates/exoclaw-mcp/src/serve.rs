//! exoclaw as an MCP server: its tools, and each of its agents as a tool that runs a whole turn,
//! for other agents and editors (`exoclaw mcp serve` over stdio; the gateway's `/mcp` over
//! streamable HTTP, behind its operator tokens: [`ExoclawServer::streamable_http`]).
//!
//! Which tools are exposed is decided by core's [`ExposedTools`] (the same rules a turn obeys): the
//! MCP client is the one that asks its user before a call and exoclaw cannot ask anyone, so a
//! tool is listed only if the rules let it run without asking (or the operator said the client's
//! approval is enough: `--yes`), and each call is checked again against what it touches (its
//! paths, hosts and commands): a call the rules deny or would ask about is refused with the
//! reason.

use exoclaw_core::runtime::{ExposedCall, ExposedTools};
use exoclaw_core::{AgentRuntime, Target, ToolContext, ToolError, TurnInput};
use exoclaw_types::{Role, SessionKey, ToolEffect, TurnOutcome};
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ToolAnnotations,
};
use rmcp::service::{MaybeSendFuture, RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The prefix of an agent's tool: `ask_support` runs a turn of the agent `support`.
pub const AGENT_TOOL_PREFIX: &str = "ask_";

/// The channel an agent tool's conversations are stored under (`agent:mcp:local:CONVERSATION`).
pub const MCP_CHANNEL: &str = "mcp";

/// The agent name audit entries of MCP clients' calls carry.
pub const MCP_AUDIT_AGENT: &str = "mcp";

/// What a refused call's message says about letting it run.
pub const MCP_ASK_HINT: &str =
    "allow it with a rule (`exoclaw permissions`) or serve with --yes to let the client's approval stand";

/// An rmcp server handler: exoclaw's tools as the permissions offer them, and its agents.
#[derive(Clone)]
pub struct ExoclawServer {
    tools: Arc<ExposedTools>,
    /// The runtime whose agents are offered as `ask_NAME` tools, if any.
    agents: Option<Arc<dyn AgentRuntime>>,
}

impl ExoclawServer {
    /// A handler offering `tools` (audited as [`MCP_AUDIT_AGENT`]) and, when given, the agents of
    /// `agents` as `ask_NAME` tools.
    pub fn new(tools: ExposedTools, agents: Option<Arc<dyn AgentRuntime>>) -> Self {
        Self { tools: Arc::new(tools), agents }
    }

    /// Serves MCP on stdin and stdout until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), crate::McpError> {
        use rmcp::ServiceExt;
        let failed = |reason: String| crate::McpError::Handshake {
            server: "exoclaw (serving on stdio)".into(),
            reason,
            stderr: Vec::new(),
        };
        let running = self.serve(rmcp::transport::stdio()).await.map_err(|e| failed(e.to_string()))?;
        running.waiting().await.map_err(|e| failed(e.to_string()))?;
        Ok(())
    }

    /// MCP over streamable HTTP, as a tower service to mount at a route (the gateway's `/mcp`),
    /// until `stop` is cancelled. Each client gets its own session. It checks no `Host` or
    /// `Origin` and no credentials: the server it is mounted in must (the gateway's guard and
    /// operator tokens do).
    pub fn streamable_http(
        self,
        stop: CancellationToken,
    ) -> StreamableHttpService<Self, LocalSessionManager> {
        let config =
            StreamableHttpServerConfig::default().disable_allowed_hosts().with_cancellation_token(stop);
        StreamableHttpService::new(move || Ok(self.clone()), Arc::new(LocalSessionManager::default()), config)
    }

    fn tool_list(&self) -> Vec<rmcp::model::Tool> {
        let mut listed: Vec<rmcp::model::Tool> = Vec::new();
        for (spec, effect) in self.tools.specs() {
            let schema = match spec.input_schema {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            let mut tool = rmcp::model::Tool::new(spec.name, spec.description, Arc::new(schema));
            tool.annotations = Some(annotations(effect));
            listed.push(tool);
        }
        if let Some(runtime) = &self.agents {
            for agent in runtime.agents() {
                let description = format!(
                    "Ask the exoclaw agent `{}` ({}){}. It runs a whole turn — its own model and tools — and \
                     answers in text. Give the same `conversation` to continue an earlier exchange.",
                    agent.name,
                    agent.model,
                    agent.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
                );
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "message": {"type": "string", "description": "What to ask or tell the agent."},
                        "conversation": {
                            "type": "string",
                            "description": "A name for the conversation, to continue it in a later call; a new one each call when unset."
                        }
                    },
                    "required": ["message"],
                    "additionalProperties": false
                });
                let Value::Object(schema) = schema else { continue };
                let mut tool = rmcp::model::Tool::new(
                    format!("{AGENT_TOOL_PREFIX}{}", agent.name),
                    description,
                    Arc::new(schema),
                );
                tool.annotations = Some(annotations(ToolEffect::External));
                listed.push(tool);
            }
        }
        listed
    }

    async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: ToolContext,
        call_id: &str,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(agent) = name.strip_prefix(AGENT_TOOL_PREFIX)
            && let Some(runtime) = &self.agents
            && runtime.agents().iter().any(|a| a.name == agent)
        {
            return Ok(ask_agent(runtime.as_ref(), agent, arguments, &ctx).await);
        }
        match self.tools.call(name, arguments, &ctx, call_id).await {
            Err(not_offered) => Err(ErrorData::invalid_params(not_offered.to_string(), None)),
            Ok(ExposedCall::Refused(refused)) => Ok(CallToolResult::error(vec![ContentBlock::text(refused)])),
            Ok(ExposedCall::Ran(Ok(text))) => Ok(CallToolResult::success(vec![ContentBlock::text(text)])),
            Ok(ExposedCall::Ran(Err(err))) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(err.to_string())]))
            }
        }
    }
}

fn annotations(effect: ToolEffect) -> ToolAnnotations {
    let mut a = ToolAnnotations::default();
    a.read_only_hint = Some(effect == ToolEffect::ReadOnly);
    a.destructive_hint = Some(effect == ToolEffect::Mutating);
    a.open_world_hint = Some(effect == ToolEffect::External);
    a
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskArgs {
    message: String,
    conversation: Option<String>,
}

/// Runs one turn of `agent` and gives its answer, or why there is none.
async fn ask_agent(
    runtime: &dyn AgentRuntime,
    agent: &str,
    arguments: Value,
    ctx: &ToolContext,
) -> CallToolResult {
    let failed = |text: String| CallToolResult::error(vec![ContentBlock::text(text)]);
    let args: AskArgs = match serde_json::from_value(arguments) {
        Ok(args) => args,
        Err(err) => return failed(ToolError::InvalidArguments(err.to_string()).to_string()),
    };
    let target = match args.conversation {
        Some(peer) => Target::Key(SessionKey {
            agent: agent.to_owned(),
            channel: MCP_CHANNEL.into(),
            account: "local".into(),
            peer,
        }),
        None => Target::New { agent: Some(agent.to_owned()) },
    };
    let handle = match runtime.submit(target, TurnInput::message(args.message)) {
        Ok(handle) => handle,
        Err(err) => return failed(err.to_string()),
    };
    let cancel = handle.cancel_token();
    let report = tokio::select! {
        report = handle.report() => report,
        () = ctx.cancel.cancelled() => {
            cancel.cancel();
            return failed("cancelled".into());
        }
    };
    match report {
        Ok(report) if report.outcome == TurnOutcome::Completed => {
            let answer = report
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant)
                .map(|m| m.text())
                .unwrap_or_default();
            CallToolResult::success(vec![ContentBlock::text(answer)])
        }
        Ok(report) => failed(match report.error {
            Some(failure) => format!("the agent `{agent}` could not answer: {}", failure.message),
            None => format!("the agent `{agent}`'s turn ended {:?}", report.outcome),
        }),
        Err(err) => failed(err.to_string()),
    }
}

impl ServerHandler for ExoclawServer {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("exoclaw", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "exoclaw's tools (files, search, shell, web) working in its workspace, and its agents as \
                 `ask_NAME` tools that each run a whole turn.",
            )
    }

    fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListToolsResult, ErrorData>> + MaybeSendFuture + '_ {
        std::future::ready(Ok(ListToolsResult::with_all_items(self.tool_list())))
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, ErrorData>> + MaybeSendFuture + '_ {
        let ctx = ToolContext {
            workspace_root: self.tools.workspace.clone(),
            cancel: context.ct.clone(),
            session: None,
        };
        let arguments = request.arguments.map_or(Value::Object(serde_json::Map::new()), Value::Object);
        let call_id = format!("mcp-{}", context.id);
        async move {
            let name = request.name.to_string();
            self.call(&name, arguments, ctx, &call_id).await.map(CallToolResponse::Complete)
        }
    }
}
