//! exoclaw's tools offered to callers outside a turn — an MCP client (`exoclaw mcp serve`, the
//! gateway's `/mcp`), agents on the KĀDI broker — under the same permission rules a turn obeys.
//!
//! Such a caller asks its own user (or nobody) before a call, and exoclaw cannot ask anyone, so a
//! tool is offered only if the rules let it run without asking, and each call is checked again
//! against what it touches (its paths, hosts and commands): a call the rules deny or would ask
//! about is refused with the reason. Each decision, and each call that changes something or
//! reaches outside, is written to the audit log under the caller's name.

use crate::{AuditEntry, AuditEvent, AuditSink, Permission, Permissions, Resource, Tool, ToolContext};
use crate::{ToolError, ToolRegistry, Verdict};
use exoclaw_types::{ToolEffect, ToolSpec};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// The tools a caller outside a turn may run, and the rules it runs them under.
#[derive(Clone)]
pub struct ExposedTools {
    /// The tools to choose from.
    pub tools: ToolRegistry,
    /// Which of them are offered, and which calls may run: only what these allow without asking.
    pub permissions: Permissions,
    /// Where they work (canonical).
    pub workspace: PathBuf,
    /// Where each call's decision, and each call that changes something or reaches outside, is
    /// recorded.
    pub audit: Arc<dyn AuditSink>,
    /// The name the audit log's entries carry as their agent (`mcp`, `kadi`).
    pub caller: String,
    /// What a refusal of a call the rules would ask about adds, to say how to let it run.
    pub ask_hint: String,
}

/// What became of a call of an offered tool.
#[derive(Debug)]
pub enum ExposedCall {
    /// It ran: the tool's answer or its failure.
    Ran(Result<String, ToolError>),
    /// The rules refused it on what it touches; the reason, for the caller.
    Refused(String),
}

/// A call of a tool that is not offered (unknown, or not allowed without asking).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tool `{0}` is offered here")]
pub struct NotOffered(pub String);

impl ExposedTools {
    /// The tool `name`, if it is offered: the permissions allow it before looking at what a call
    /// touches.
    pub fn offered(&self, name: &str) -> Option<Arc<dyn Tool>> {
        let allowed = |tool: &Arc<dyn Tool>| {
            self.permissions.check(None, name, tool.effect(), &[]).permission == Permission::Allow
        };
        self.tools.get(name).filter(allowed)
    }

    /// The specs of the offered tools, each with its effect, in the registry's order.
    pub fn specs(&self) -> Vec<(ToolSpec, ToolEffect)> {
        self.tools
            .specs()
            .into_iter()
            .filter_map(|spec| self.offered(&spec.name).map(|tool| (spec, tool.effect())))
            .collect()
    }

    /// Runs `name` with `arguments` if the rules allow it on what it touches, recording the
    /// decision (and, for a call that is not read-only, its execution) as the call `call_id`.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        ctx: &ToolContext,
        call_id: &str,
    ) -> Result<ExposedCall, NotOffered> {
        let tool = self.offered(name).ok_or_else(|| NotOffered(name.to_owned()))?;
        let effect = tool.effect();
        let resources: Vec<Resource> = tool
            .resources(&arguments)
            .into_iter()
            .map(|resource| resource.in_workspace(&self.workspace))
            .collect();
        let verdict = self.permissions.check(None, name, effect, &resources);
        let refused = self.refusal(name, &verdict);
        let decided = AuditEvent::Decided { permission: verdict.permission, reason: verdict.reason };
        self.record(call_id, name, effect, resources.clone(), decided);
        if let Some(refused) = refused {
            return Ok(ExposedCall::Refused(refused));
        }
        let started = std::time::Instant::now();
        let result = tool.call(arguments, ctx).await;
        if effect != ToolEffect::ReadOnly {
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let executed = AuditEvent::Executed { ok: result.is_ok(), duration_ms };
            self.record(call_id, name, effect, resources, executed);
        }
        Ok(ExposedCall::Ran(result))
    }

    /// Why the permissions refuse a call of `name`, if they do.
    fn refusal(&self, name: &str, verdict: &Verdict) -> Option<String> {
        match verdict.permission {
            Permission::Allow => None,
            Permission::Deny => {
                Some(format!("exoclaw's permissions deny this call of `{name}` ({})", verdict.reason))
            }
            Permission::Ask => Some(format!(
                "exoclaw's permissions ask before this call of `{name}` ({}), and nobody can be asked \
                 about a call from outside a turn: {}",
                verdict.reason, self.ask_hint
            )),
        }
    }

    /// Records `event` for the call `call_id` of `name` in the audit log.
    fn record(
        &self,
        call_id: &str,
        name: &str,
        effect: ToolEffect,
        resources: Vec<Resource>,
        event: AuditEvent,
    ) {
        self.audit.record(AuditEntry {
            at: chrono::Utc::now(),
            session_id: None,
            agent: self.caller.clone(),
            call_id: call_id.into(),
            tool: name.into(),
            effect,
            resources,
            event,
        });
    }
}
