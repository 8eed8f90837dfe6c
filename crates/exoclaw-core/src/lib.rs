//! exoclaw's core: the traits every other crate plugs into, and the logic that needs no IO.
//!
//! This first slice holds the [`Provider`] trait through which every part of exoclaw talks to
//! models, the typed [`ProviderError`] with its retry and recovery policy, and the
//! [`ResponseAssembler`] that turns a stream of events into a whole answer, the [`Tool`] trait,
//! the storage traits, and the agent loop: the sans-IO [`Run`] state machine, its [`AgentRunner`]
//! and the tool [`PermissionPolicy`]; and [`Metering`]: the [`PriceTable`] that costs each model
//! call and the [`Budgets`] that cap them.

mod agent;
mod assemble;
mod context;
mod embedder;
mod error;
pub mod memory;
mod metering;
mod provider;
pub mod runtime;
mod store;
pub mod text;
mod tool;

pub use agent::{
    AgentRunner, ApprovalRequest, Approver, DEFAULT_MAX_ITERATIONS, DEFAULT_TOOL_TIMEOUT, Decision,
    EventSink, FixedApprover, Limits, Permission, PermissionPolicy, Run, RunConfig, RunError, RunTool,
    SettledCall, Step, TurnResult, tool_calls_paired,
};
pub use agent::{
    AnswerStore, Answers, AuditEntry, AuditEvent, AuditLog, AuditQuery, AuditSink, BufferedAudit, Listed,
    NoAudit, Permissions, Reason, Remember, RememberError, Resource, Rule, RuleEntry, RuleError, Scope,
    Verdict, redact_secrets,
};
pub use agent::{
    Checkpoints, DenyToolsHook, Hook, HookContext, ModelAction, Monitor, NoCheckpoints, PatternError,
    RedactHook, ResultAction, ToolAction,
};
pub use assemble::{ResponseAssembler, collect_response};
pub use context::{
    CONTEXT_FILE_NAMES, ContextFile, MAX_CONTEXT_FILE_BYTES, discover_context_files, system_prompt,
};
pub use embedder::{Embedder, Readiness};
pub use error::{ErrorKind, ProviderError, Recovery};
pub use memory::{
    EntryKind, Fact, FactRecorded, FactStore, ForgetEntries, MemoryEntry, MemoryIndex, MemoryStore, NewEntry,
    NewFact, ScoredEntry, Summary, SummaryStore,
};
pub use metering::{
    BudgetError, BudgetExceeded, BudgetLimit, BudgetScope, BudgetSpec, BudgetStatus, BudgetWindow, Budgets,
    CallFor, CallScope, Clock, DEFAULT_OUTPUT_ESTIMATE, Estimate, Hold, MeteredModels, Metering,
    ModelCallError, Payer, PayerRefusal, Price, PriceTable, Reservation, SHIPPED_PRICES, SystemClock,
    TestClock,
};
pub use provider::{Capabilities, EventStream, ModelInfo, Provider};
pub use runtime::{
    AgentRuntime, Bindings, ContextAssembler, DEFAULT_AGENT, Target, TurnError, TurnFailure, TurnHandle,
    TurnInput, TurnReport,
};
pub use store::{ChannelHealth, ChannelHealthStore, ProviderHealth, ProviderHealthStore, StoreErrorSource};
pub use store::{
    KeyStore, NewApiKey, NewSession, SessionStore, StoreError, TITLE_CHARS, UsageStore, session_title,
};
pub use store::{RunStore, SessionLease, SessionLocks};
pub use tool::{Tool, ToolContext, ToolError, ToolFilter, ToolRegistry, ToolSource, TypedTool};
