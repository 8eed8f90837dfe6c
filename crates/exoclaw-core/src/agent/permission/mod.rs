//! Who may run which tool call, who was asked, and what ran.
//!
//! - [`PermissionPolicy`] (`policy.rs`): `[permissions]` as configured — defaults per effect and
//!   per tool, `auto_approve`, and rules.
//! - [`Rule`] (`rule.rs`): allow / ask / deny for the tools a name glob matches, optionally only
//!   for calls touching a path, a host or a command prefix; [`Scope`] and [`RuleEntry`]: where a
//!   rule comes from.
//! - [`Resource`] (`resource.rs`): what a call touches, as its tool names it.
//! - `command.rs`: a command line split into the simple commands it runs.
//! - `matcher.rs`: rules compiled into glob sets and indexes, so a thousand are checked in
//!   microseconds.
//! - [`Permissions`] (`engine.rs`): every scope together and the answers given; how a call is
//!   decided is described there.
//! - The audit log (`audit.rs`): [`AuditEntry`], the [`AuditLog`] stores implement and the
//!   [`AuditSink`] the runner writes to.
//!
//! The [`Approver`] a front end implements asks the user when a call's permission is
//! [`Permission::Ask`]; the answer may hold once, for the session, or always.

mod audit;
mod command;
mod engine;
mod matcher;
mod policy;
mod resource;
mod rule;

pub use audit::{
    AuditEntry, AuditEvent, AuditLog, AuditQuery, AuditSink, BufferedAudit, NoAudit, redact_secrets,
};
pub use engine::{AnswerStore, Answers, Listed, Permissions, Reason, Remember, RememberError, Verdict};
pub use policy::PermissionPolicy;
pub use resource::Resource;
pub use rule::{Rule, RuleEntry, RuleError, Scope};

use async_trait::async_trait;
use exoclaw_types::{ToolCall, ToolEffect};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a tool call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Run it without asking.
    Allow,
    /// Ask the user first (through the [`Approver`]).
    Ask,
    /// Never run it; the model is told the user's settings refuse it.
    Deny,
}

impl Permission {
    /// `allow`, `ask` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Ask => "ask",
            Self::Deny => "deny",
        }
    }

    /// How strict it is: deny > ask > allow.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::Ask => 1,
            Self::Deny => 2,
        }
    }
}

/// The user's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Run this call, once.
    Approve,
    /// Run it, and calls like it for the rest of the session (the request's `remember` rules).
    ApproveForSession,
    /// Run it, and calls like it from now on: the request's `remember` rules are written to
    /// the answers file (`~/.exoclaw/permissions.toml`).
    ApproveAlways,
    /// Do not run it; the model is told the user denied it.
    Deny,
    /// Do not run it: nobody is there to ask (an agent serving a gateway or a scheduled job). The
    /// model is told the call needs a person's approval, which cannot be given where it runs, so
    /// it can say so instead of retrying.
    Unattended,
}

impl Decision {
    /// Whether the call runs.
    pub fn approves(self) -> bool {
        match self {
            Self::Approve | Self::ApproveForSession | Self::ApproveAlways => true,
            Self::Deny | Self::Unattended => false,
        }
    }

    /// How long the answer holds beyond this call, if it does.
    pub fn remembers(self) -> Option<Remember> {
        match self {
            Self::ApproveForSession => Some(Remember::Session),
            Self::ApproveAlways => Some(Remember::Always),
            Self::Approve | Self::Deny | Self::Unattended => None,
        }
    }
}

/// A tool call waiting for the user's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// The call, with the model's arguments.
    pub call: ToolCall,
    /// What kind of change it would make.
    pub effect: ToolEffect,
    /// What it touches (filled in by the runner).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// The rules an answer "for this session" or "always" adds (filled in by the runner); empty
    /// when such answers are not offered (an explicit `ask` rule asks every time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remember: Vec<Rule>,
    /// Where an answer "always" is written; `None` when it is not offered (nowhere to keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_file: Option<String>,
    /// How the call would be confined, as its tool says (the shell's sandbox), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<String>,
}

impl ApprovalRequest {
    /// A request for `call` with nothing more known about it.
    pub fn new(call: ToolCall, effect: ToolEffect) -> Self {
        Self {
            call,
            effect,
            resources: Vec::new(),
            remember: Vec::new(),
            always_file: None,
            confinement: None,
        }
    }
}

/// Asks the user whether a tool call may run. Implemented by each front end: the CLI prompts on
/// the terminal; an unattended agent answers [`Decision::Unattended`].
///
/// Object-safe; the runner holds it as `Arc<dyn Approver>`. The runner stops waiting when the turn
/// is cancelled, so an implementation need not watch for cancellation itself.
#[async_trait]
pub trait Approver: Send + Sync {
    /// The user's decision on `request`.
    async fn approve(&self, request: &ApprovalRequest) -> Decision;
}

/// An approver that gives the same answer to every request without asking anyone: `Deny` for
/// non-interactive runs (which approve through `auto_approve` / `--yes` instead), `Approve` for
/// tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedApprover(pub Decision);

#[async_trait]
impl Approver for FixedApprover {
    async fn approve(&self, _request: &ApprovalRequest) -> Decision {
        self.0
    }
}

#[cfg(test)]
mod tests;
