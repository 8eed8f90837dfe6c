//! What a front end sees of the agent runtime: one call for a turn ([`AgentRuntime::submit`]),
//! the agents it serves, and the pieces every runtime shares — the [`Bindings`] router, the
//! per-session [`SessionQueues`] and the [`ContextAssembler`].
//!
//! The `Runtime` itself (in the `exoclaw` facade) owns the configuration, the stores, the router,
//! the agents and the queues, and implements [`AgentRuntime`]. Front ends that are libraries (the
//! gateway, later the chat channels) take it as `Arc<dyn AgentRuntime>`, so each is tested against
//! a scripted runtime and none pulls in the model or the database crates.

pub mod bindings;
mod context;
mod exposed;
mod files;
pub mod queue;
mod turn;
pub mod webhook;

pub use bindings::Bindings;
pub use context::{
    AssembleError, Assembled, Committed, ContextAssembler, ContextRequest, DEFAULT_CACHED_SESSIONS,
    HistoryAssembler,
};
pub use exposed::{ExposedCall, ExposedTools, NotOffered};
pub use files::{Attachments, MAX_FILES_PER_TURN, Outbox, OutgoingFile, SEND_FILE, size};
pub use queue::{SessionBusy, SessionQueues, Ticket};
pub use turn::{
    AfterTurn, AgentSummary, MAX_KEY_PART_BYTES, Route, SessionRef, Target, TurnError, TurnFailure,
    TurnHandle, TurnInput, TurnReport, TurnSender, resolve_target, turn_channel,
};
pub use webhook::Webhook;

use async_trait::async_trait;
use exoclaw_types::SessionId;

/// The name of the agent that answers when nothing else is named and no binding matches.
pub const DEFAULT_AGENT: &str = "default";

/// The runtime every front end submits turns to.
///
/// A turn goes: route (the agent and the session, by the [`Bindings`] for an inbound message) →
/// the session's queue (turns of one session run one at a time, in submission order, also across
/// processes) → context assembly → budget reservation → the agent loop, checkpointed after every
/// step → commit (messages and usage in one transaction) → settle → after-turn work.
#[async_trait]
pub trait AgentRuntime: Send + Sync {
    /// Where `target` goes: the agent, its model and the session. Cheap and synchronous, so a
    /// front end can check the caller may use the agent's model before it submits.
    fn route(&self, target: &Target) -> Result<Route, TurnError>;

    /// Takes the turn's place in its session's queue now (so turns run in the order they were
    /// submitted) and starts it on its own task. The turn runs to its end and is stored even if
    /// the handle is dropped; only [`TurnHandle::cancel`] cuts it short.
    fn submit_routed(&self, route: Route, input: TurnInput) -> Result<TurnHandle, TurnError>;

    /// [`AgentRuntime::route`], then [`AgentRuntime::submit_routed`].
    fn submit(&self, target: Target, input: TurnInput) -> Result<TurnHandle, TurnError> {
        let route = self.route(&target)?;
        self.submit_routed(route, input)
    }

    /// The agents served, by name.
    fn agents(&self) -> Vec<AgentSummary>;

    /// The bindings in force.
    fn bindings(&self) -> std::sync::Arc<Bindings>;

    /// Puts new bindings in force for the turns routed from now on.
    fn reload_bindings(&self, bindings: Bindings);

    /// The per-session queues: how many sessions are busy and how many turns wait.
    fn queues(&self) -> &SessionQueues;

    /// Removes every message of a session, holding its queue place so no turn runs meanwhile;
    /// [`TurnError::SessionBusy`] while one runs or waits. Returns how many messages went.
    async fn clear_session(&self, session: SessionId) -> Result<u64, TurnError>;
}
