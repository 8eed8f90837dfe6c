//! [`TurnMetrics`]: what agent turns do, counted into the gateway's metrics by the runtime itself
//! (a [`Monitor`] and an after-turn [`Hook`] registered on it), not by the front end that asked for
//! the turn. So every turn the gateway's runtime runs is counted the same way, whoever submitted
//! it: a WebSocket `chat.send`, a resumed interrupted turn, a webhook's channel later.

use super::TokenLabels;
use async_trait::async_trait;
use exoclaw_core::{Hook, HookContext, Monitor, TurnResult};
use exoclaw_types::{AgentEvent, TurnOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashSet;
use std::sync::RwLock;

/// Distinct tool names labelled at most; calls of any others are counted under `other`. A model
/// may call a tool by any name it makes up (it gets an error result), and each name would
/// otherwise become a series of its own.
const TOOL_NAMES: usize = 256;

/// The label of tool calls past [`TOOL_NAMES`] distinct names.
const OTHER_TOOL: &str = "other";

/// Counts agent turns from what they emit: turns by outcome, turn errors by code, tool calls by
/// tool and result, and the tokens of every model call by the provider and model that served it.
///
/// Register one instance on the runtime both as a monitor (the events) and as a hook (the tokens:
/// the turn's usage records name the model that really served each call, after a router's
/// fallback, and carry the counts a provider did not report estimated, which the `Usage` events
/// do not), then give the gateway the [`super::Metrics`] it came from: `exoclaw gateway` does
///
/// ```text
/// let metrics = Metrics::new();
/// let turns = metrics.turn_metrics();
/// let runtime = Runtime::builder().config(config).store(store).monitor(turns.clone()).hook(turns).build().await?;
/// let gateway = Gateway::builder(models).runtime(Arc::new(runtime)).metrics(metrics).build();
/// ```
#[derive(Debug)]
pub struct TurnMetrics {
    turns: Family<OutcomeLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    tools: Family<ToolLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    /// The tool names labelled so far (at most [`TOOL_NAMES`]).
    tool_names: RwLock<HashSet<String>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    /// `completed`, `max_iterations`, `cancelled` or `failed`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CodeLabels {
    /// The error event's code (`timeout`, `budget_exceeded`, `max_iterations`, …).
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ToolLabels {
    /// The tool's name, or `other`.
    tool: String,
    /// `ok`, or `error` when the tool failed (or was refused, or does not exist).
    status: &'static str,
}

impl TurnMetrics {
    pub(super) fn new(
        turns: Family<OutcomeLabels, Counter>,
        errors: Family<CodeLabels, Counter>,
        tools: Family<ToolLabels, Counter>,
        tokens: Family<TokenLabels, Counter>,
    ) -> Self {
        Self { turns, errors, tools, tokens, tool_names: RwLock::default() }
    }

    /// The label for tool `name`: itself while fewer than [`TOOL_NAMES`] names are labelled.
    fn tool_label(&self, name: &str) -> String {
        if self.tool_names.read().is_ok_and(|names| names.contains(name)) {
            return name.to_owned();
        }
        match self.tool_names.write() {
            Ok(mut names) if names.len() < TOOL_NAMES => {
                names.insert(name.to_owned());
                name.to_owned()
            }
            _ => OTHER_TOOL.to_owned(),
        }
    }
}

/// The `outcome` label of a turn.
fn outcome(outcome: TurnOutcome) -> &'static str {
    match outcome {
        TurnOutcome::Completed => "completed",
        TurnOutcome::MaxIterations => "max_iterations",
        TurnOutcome::Cancelled => "cancelled",
        TurnOutcome::Failed => "failed",
    }
}

impl Monitor for TurnMetrics {
    fn event(&self, _cx: &HookContext<'_>, event: &AgentEvent) {
        match event {
            AgentEvent::Done { outcome: o, .. } => {
                self.turns.get_or_create(&OutcomeLabels { outcome: outcome(*o) }).inc();
            }
            AgentEvent::Error { code, .. } => {
                self.errors.get_or_create(&CodeLabels { code: code.to_string() }).inc();
            }
            AgentEvent::ToolResult { name, is_error, .. } => {
                let labels = ToolLabels {
                    tool: self.tool_label(name),
                    status: if *is_error { "error" } else { "ok" },
                };
                self.tools.get_or_create(&labels).inc();
            }
            // Tokens come from the turn's usage records (`after_turn`), which name the model that
            // served each call.
            AgentEvent::Usage { .. }
            | AgentEvent::Warning { .. }
            | AgentEvent::TurnStarted { .. }
            | AgentEvent::Text { .. }
            | AgentEvent::Thinking { .. }
            | AgentEvent::ToolUse { .. }
            | AgentEvent::ApprovalNeeded { .. } => {}
        }
    }
}

#[async_trait]
impl Hook for TurnMetrics {
    async fn after_turn(&self, _cx: &HookContext<'_>, turn: &TurnResult) {
        for record in &turn.usage {
            for (direction, count) in
                [("input", record.usage.input_tokens), ("output", record.usage.output_tokens)]
            {
                if let Some(count) = count.filter(|c| *c > 0) {
                    let labels = TokenLabels {
                        provider: record.provider.clone(),
                        model: record.model.clone(),
                        direction,
                    };
                    self.tokens.get_or_create(&labels).inc_by(count);
                }
            }
        }
    }
}
