//! The agent loop.
//!
//! A turn is a [`Run`]: a sans-IO, serialisable state machine that says what to do next (call the
//! model, ask for approvals, call tools, stop) and is told what happened. The [`AgentRunner`] does
//! the IO: it streams the model's answers, asks the [`Approver`] when the [`PermissionPolicy`] says
//! so, runs tool calls in parallel under a time limit, honours a cancellation token, calls the
//! operator's [`Hook`]s and [`Monitor`]s, saves a checkpoint after every step to [`Checkpoints`],
//! and reports everything as `AgentEvent`s to an [`EventSink`]. What a turn hands back
//! ([`TurnResult`]) never holds a tool call without its result, so it can be stored and sent back
//! to any vendor.

mod approvals;
mod checkpoint;
mod hooks;
mod permission;
pub(crate) mod run;
mod runner;
mod turn;

pub use checkpoint::{Checkpoints, NoCheckpoints};
pub use hooks::{
    DenyToolsHook, Hook, HookContext, ModelAction, Monitor, PatternError, RedactHook, ResultAction,
    ToolAction,
};
pub use permission::{
    AnswerStore, Answers, ApprovalRequest, Approver, AuditEntry, AuditEvent, AuditLog, AuditQuery, AuditSink,
    BufferedAudit, Decision, FixedApprover, Listed, NoAudit, Permission, PermissionPolicy, Permissions,
    Reason, Remember, RememberError, Resource, Rule, RuleEntry, RuleError, Scope, Verdict, redact_secrets,
};
pub use run::{
    DEFAULT_MAX_ITERATIONS, Run, RunConfig, RunError, RunTool, SettledCall, Step, tool_calls_paired,
};
pub use runner::{AgentRunner, DEFAULT_TOOL_TIMEOUT, EventSink, Limits, TurnResult};
