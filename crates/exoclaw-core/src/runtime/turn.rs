//! One turn as a front end sees it: where it goes ([`Target`], resolved to a [`Route`]), what it
//! carries ([`TurnInput`]), the [`TurnHandle`] that streams its events and gives its
//! [`TurnReport`], and why a turn could not run ([`TurnError`]).

use super::bindings::Bindings;
use super::files::{Attachments, Outbox};
use super::queue::SessionBusy;
use crate::{Approver, EventSink, Payer, StoreError};
use async_trait::async_trait;
use exoclaw_types::{
    AgentEvent, ErrorCode, Inbound, Message, Part, SessionId, SessionKey, StopReason, TurnOutcome,
    UsageRecord,
};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The longest part of a session key (`agent`, `channel`, `account`, `peer`, `guild`, `team`), in
/// bytes: far above any platform's ids (Slack's and Discord's are under 30 characters, an email
/// address at most 254), far below what would bloat every stored session and log line.
pub const MAX_KEY_PART_BYTES: usize = 256;

/// Where a turn goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A message from a conversation on a channel: the bindings pick the agent (unless `agent`
    /// names one), and the session is the one with the key `agent:channel:account:peer`.
    Inbound {
        /// Where the message came from.
        inbound: Inbound,
        /// The agent asked for, overriding the bindings.
        agent: Option<String>,
    },
    /// The session with this key (created with the first turn); its `agent` answers.
    Key(SessionKey),
    /// A stored session, by id, answered by the default agent.
    Session(SessionId),
    /// A new session, stored with its first turn.
    New {
        /// The agent; the default one when `None`.
        agent: Option<String>,
    },
}

/// Which session a routed turn uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRef {
    /// The most recent session with this key, or a new one with it.
    Key(SessionKey),
    /// This stored session.
    Id(SessionId),
    /// A new session with this id.
    New(SessionId),
}

/// A resolved [`Target`]: the agent, its model and the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The agent that answers.
    pub agent: String,
    /// Its `provider/model`.
    pub model: String,
    /// The session.
    pub session: SessionRef,
    /// The index of the binding that chose the agent, if one did.
    pub binding: Option<usize>,
}

impl Route {
    /// The name of the session's queue: its key, or its id.
    pub fn queue_key(&self) -> String {
        match &self.session {
            SessionRef::Key(key) => key.to_string(),
            SessionRef::Id(id) | SessionRef::New(id) => id.to_string(),
        }
    }
}

/// What a turn carries.
#[derive(Clone)]
pub struct TurnInput {
    /// The user's message; `None` only resumes the session's interrupted turn.
    pub text: Option<String>,
    /// Whether to wait while another process runs a turn on the session (`true`), or to fail at
    /// once with [`TurnError::SessionLocked`].
    pub wait: bool,
    /// Who pays for the turn's model calls besides the runtime's budgets (a gateway's virtual
    /// key), if anyone.
    pub payer: Option<Arc<dyn Payer>>,
    /// The model for this turn only (`provider/model` or an alias) instead of the agent's; the
    /// front end decides who may pick one.
    pub model: Option<String>,
    /// Who is asked, for this turn only, when a tool call needs a person's approval, instead of
    /// the agent's approver: a chat channel asks the person whose message started the turn.
    pub approver: Option<Arc<dyn Approver>>,
    /// The files that came with the message, fetched when the turn starts and added to it.
    pub attachments: Option<Arc<dyn Attachments>>,
    /// Where the agent's `send_file` calls put the files it sends with its answer; `None` (no
    /// front end to deliver them): the tool is not offered.
    pub outbox: Option<Outbox>,
}

impl std::fmt::Debug for TurnInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnInput")
            .field("text", &self.text)
            .field("wait", &self.wait)
            .field("payer", &self.payer)
            .field("model", &self.model)
            .field("approver", &self.approver.is_some())
            .field("attachments", &self.attachments.is_some())
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl TurnInput {
    /// A user message, waiting for the session if another process holds it.
    pub fn message(text: impl Into<String>) -> Self {
        Self { text: Some(text.into()), ..Self::resume() }
    }

    /// No new message: only finish the session's interrupted turn.
    pub fn resume() -> Self {
        Self {
            text: None,
            wait: true,
            payer: None,
            model: None,
            approver: None,
            attachments: None,
            outbox: None,
        }
    }

    /// Holds each of the turn's model calls with `payer` before it is made and settles it after:
    /// a refusal ends the turn before the model is asked.
    pub fn with_payer(mut self, payer: Arc<dyn Payer>) -> Self {
        self.payer = Some(payer);
        self
    }

    /// Answers this turn with `model` instead of the agent's.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Asks `approver` about this turn's tool calls that need a person's approval, instead of the
    /// agent's approver; the agent's permissions still decide which calls ask.
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = Some(approver);
        self
    }

    /// Adds the files that came with the message (fetched when the turn starts).
    pub fn with_attachments(mut self, attachments: Arc<dyn Attachments>) -> Self {
        self.attachments = Some(attachments);
        self
    }

    /// Offers the agent `send_file` for this turn, putting the files it sends in `outbox` for the
    /// front end to deliver with the answer.
    pub fn with_outbox(mut self, outbox: Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The user's message as the model gets it: the text, then the attachments' parts.
    pub async fn user_message(&self, text: String) -> Message {
        let mut message = Message::user(text);
        if let Some(attachments) = &self.attachments {
            let parts = attachments.fetch().await;
            if !parts.is_empty() {
                // A file sent without a word: the files are the message.
                message.parts.retain(|part| !matches!(part, Part::Text { text } if text.trim().is_empty()));
                message.parts.extend(parts);
            }
        }
        message
    }

    /// Fails at once instead of waiting when another process holds the session.
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }
}

/// An agent as front ends list it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSummary {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its `provider/model`.
    pub model: String,
    /// The tools its model may call.
    pub tools: Vec<exoclaw_types::ToolSpec>,
}

/// How a turn ended, once it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReport {
    /// The session it was stored in.
    pub session_id: SessionId,
    /// The session's key, when it has one.
    pub session_key: Option<SessionKey>,
    /// The agent that answered.
    pub agent: String,
    /// The binding that chose the agent, if one did.
    pub binding: Option<usize>,
    /// The `provider/model` of the agent.
    pub model: String,
    /// How the turn ended.
    pub outcome: TurnOutcome,
    /// Why the turn's last model call stopped (`None` when no model call finished): an answer
    /// cut short says [`StopReason::MaxTokens`] or [`StopReason::Repetition`].
    pub stop_reason: Option<StopReason>,
    /// The turn's new messages, as stored.
    pub messages: Vec<Message>,
    /// One record per model call.
    pub usage: Vec<UsageRecord>,
    /// The turn's last `Error` event, if it had one.
    pub error: Option<TurnFailure>,
    /// Whether an interrupted turn of the session was finished first.
    pub resumed: bool,
}

/// What a turn's last [`AgentEvent::Error`](exoclaw_types::AgentEvent::Error) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnFailure {
    /// What went wrong, as clients match on it.
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
}

impl TurnReport {
    /// The text of the turn's last assistant message.
    pub fn text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == exoclaw_types::Role::Assistant)
            .map(Message::text)
            .unwrap_or_default()
    }
}

/// Why a turn did not run, or was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// No agent has this name.
    #[error("no agent `{name}` ({why}); this runtime has: {}", if known.is_empty() { "no agents".to_owned() } else { known.join(", ") })]
    NoAgent {
        /// The name asked for.
        name: String,
        /// Why this agent was chosen.
        why: String,
        /// The agents there are.
        known: Vec<String>,
    },
    /// A part of the target is empty or too long.
    #[error("`{field}` {problem}")]
    InvalidTarget {
        /// The part.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
        /// The most bytes the part may have, when it is too long.
        limit: Option<usize>,
    },
    /// The session has as many turns waiting as it may.
    #[error(transparent)]
    SessionBusy(#[from] SessionBusy),
    /// No stored session has this id.
    #[error("no session {0}; `exoclaw session list` lists them")]
    SessionNotFound(SessionId),
    /// Another process runs a turn on the session, and the turn was asked not to wait.
    #[error(
        "the session {session} is in use by {holder}; wait for its turn to finish, or leave out --no-wait to wait"
    )]
    SessionLocked {
        /// The session.
        session: SessionId,
        /// Who holds it.
        holder: String,
    },
    /// There is no interrupted turn to resume.
    #[error("the session {0} has no interrupted turn to resume")]
    NothingToResume(SessionId),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down and takes no new turns")]
    ShuttingDown,
    /// The turn was cancelled while it waited for its session; nothing was stored.
    #[error("cancelled before its turn began; nothing was stored")]
    CancelledBeforeStart,
    /// The store failed.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        #[source]
        source: StoreError,
        /// The session concerned, when known.
        session: Option<SessionId>,
    },
    /// The context could not be assembled.
    #[error("the conversation's context could not be assembled: {0}")]
    Context(#[source] super::AssembleError),
    /// The runtime stopped before the turn reported its end (its task panicked or was aborted).
    #[error("the turn's task ended without a report; this is a bug, please report it")]
    Lost,
}

impl TurnError {
    /// A store failure while doing `context`.
    pub fn store(context: impl Into<String>, source: StoreError, session: Option<SessionId>) -> Self {
        match source {
            StoreError::SessionLocked { session, holder } => Self::SessionLocked { session, holder },
            source => Self::Store { context: context.into(), source, session },
        }
    }
}

/// A running turn: its events, a way to cancel it, and its report.
#[derive(Debug)]
pub struct TurnHandle {
    events: mpsc::UnboundedReceiver<AgentEvent>,
    cancel: CancellationToken,
    report: oneshot::Receiver<Result<TurnReport, TurnError>>,
}

/// The runtime's end of a [`TurnHandle`]: an [`EventSink`] for the turn's events, and where its
/// report goes.
#[derive(Debug)]
pub struct TurnSender {
    events: mpsc::UnboundedSender<AgentEvent>,
    report: oneshot::Sender<Result<TurnReport, TurnError>>,
}

/// A connected handle and sender; cancelling `cancel` cancels the turn.
pub fn turn_channel(cancel: CancellationToken) -> (TurnHandle, TurnSender) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (report_tx, report) = oneshot::channel();
    (TurnHandle { events, cancel, report }, TurnSender { events: events_tx, report: report_tx })
}

impl TurnSender {
    /// The sink the turn's events go to.
    pub fn events(&self) -> &mpsc::UnboundedSender<AgentEvent> {
        &self.events
    }

    /// Ends the turn with its report (or why it did not run). Events sent before arrive first.
    pub fn finish(self, report: Result<TurnReport, TurnError>) {
        // A handle that was dropped does not want the report; the turn is stored either way.
        let _ = self.report.send(report);
    }
}

impl EventSink for TurnSender {
    fn emit(&self, event: AgentEvent) {
        let _ = self.events.send(event);
    }
}

impl TurnHandle {
    /// The next event; `None` once the turn's events are over.
    pub async fn next_event(&mut self) -> Option<AgentEvent> {
        self.events.recv().await
    }

    /// A token that cancels the turn: the model's answer, a tool or an approval prompt stop at
    /// once, and what was said so far is stored.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancels the turn.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Hands every remaining event to `sink`, then gives the report.
    pub async fn finish(mut self, sink: &dyn EventSink) -> Result<TurnReport, TurnError> {
        while let Some(event) = self.events.recv().await {
            sink.emit(event);
        }
        self.report.await.unwrap_or(Err(TurnError::Lost))
    }

    /// Drops the remaining events and gives the report.
    pub async fn report(self) -> Result<TurnReport, TurnError> {
        self.finish(&|_event: AgentEvent| {}).await
    }

    /// What a chat channel sends back once the turn ends: the answer, or what went wrong, in
    /// words for the person who asked.
    pub async fn reply_text(self) -> String {
        match self.report().await {
            Ok(report) => match &report.error {
                Some(failure) => format!("Sorry — that failed: {}", failure.message),
                None => report.text(),
            },
            Err(error) => format!("Sorry — that failed: {error}"),
        }
    }
}

/// Work to do after a turn is stored (archival summaries, fact extraction, indexing): run in the
/// background, never delaying the answer; a failure is logged, the turn stays stored.
#[async_trait]
pub trait AfterTurn: Send + Sync {
    /// Called once per stored turn. `payer` is who paid for the turn's model calls besides the
    /// budgets (a gateway's virtual key), when anyone did: model calls the work makes for the
    /// turn are its to pay too.
    async fn after_turn(&self, report: &TurnReport, payer: Option<&dyn Payer>);
}

/// Resolves `target` against `bindings` and the agents `known` (name → `provider/model`), the
/// default agent answering what names none. New sessions get a fresh id.
pub fn resolve_target(
    target: &Target,
    bindings: &Bindings,
    model_of: impl Fn(&str) -> Option<String>,
    known: impl Fn() -> Vec<String>,
) -> Result<Route, TurnError> {
    let default = bindings.default_agent().to_owned();
    let (name, why, binding, session) = match target {
        Target::Inbound { inbound, agent } => {
            check_inbound(inbound, agent.as_deref())?;
            let (name, why, binding) = match agent {
                Some(agent) => (agent.clone(), "the request names it".to_owned(), None),
                None => {
                    let route = bindings.route(inbound);
                    let why = match route.binding {
                        Some(index) => format!("bindings[{index}] routes this message to it"),
                        None => "it is the default agent".to_owned(),
                    };
                    (route.agent, why, route.binding)
                }
            };
            let key = SessionKey {
                agent: name.clone(),
                channel: inbound.channel.clone(),
                account: inbound.account.clone(),
                peer: inbound.peer.clone(),
            };
            (name, why, binding, SessionRef::Key(key))
        }
        Target::Key(key) => {
            (key.agent.clone(), "the session key names it".to_owned(), None, SessionRef::Key(key.clone()))
        }
        Target::Session(id) => (default, "it is the default agent".to_owned(), None, SessionRef::Id(*id)),
        Target::New { agent } => match agent {
            Some(agent) => {
                (agent.clone(), "the request names it".to_owned(), None, SessionRef::New(SessionId::new()))
            }
            None => (default, "it is the default agent".to_owned(), None, SessionRef::New(SessionId::new())),
        },
    };
    let Some(model) = model_of(&name) else {
        return Err(TurnError::NoAgent { name, why, known: known() });
    };
    Ok(Route { agent: name, model, session, binding })
}

/// Checks an inbound address's parts: none empty, none over [`MAX_KEY_PART_BYTES`].
fn check_inbound(inbound: &Inbound, agent: Option<&str>) -> Result<(), TurnError> {
    for (field, value) in
        [("channel", &inbound.channel), ("account", &inbound.account), ("peer", &inbound.peer)]
    {
        if value.is_empty() {
            return Err(TurnError::InvalidTarget { field, problem: "is empty".to_owned(), limit: None });
        }
    }
    let parts = [
        ("agent", agent),
        ("channel", Some(inbound.channel.as_str())),
        ("account", Some(inbound.account.as_str())),
        ("peer", Some(inbound.peer.as_str())),
        ("guild", inbound.guild.as_deref()),
        ("team", inbound.team.as_deref()),
    ];
    for (field, value) in parts {
        if let Some(value) = value.filter(|v| v.len() > MAX_KEY_PART_BYTES) {
            return Err(TurnError::InvalidTarget {
                field,
                problem: format!(
                    "is {} bytes; each part of a session key may be at most {MAX_KEY_PART_BYTES} bytes (use an id, not a description)",
                    value.len()
                ),
                limit: Some(MAX_KEY_PART_BYTES),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::Binding;

    fn inbound(peer: &str) -> Inbound {
        Inbound { channel: "slack".into(), account: "T1".into(), peer: peer.into(), guild: None, team: None }
    }

    fn models(name: &str) -> Option<String> {
        ["default", "support"].contains(&name).then(|| format!("p/{name}"))
    }

    fn known() -> Vec<String> {
        vec!["default".into(), "support".into()]
    }

    #[test]
    fn an_inbound_message_goes_where_the_bindings_say_with_a_key_naming_that_agent() {
        let bindings = Bindings::new(vec![Binding {
            agent: "support".into(),
            channel: None,
            account: None,
            peer: Some("U42".into()),
            guild: None,
            team: None,
        }]);
        let target = Target::Inbound { inbound: inbound("U42"), agent: None };
        let route = resolve_target(&target, &bindings, models, known).unwrap();
        assert_eq!(
            (route.agent.as_str(), route.binding, route.model.as_str()),
            ("support", Some(0), "p/support")
        );
        assert_eq!(route.queue_key(), "support:slack:T1:U42");
        let other = resolve_target(
            &Target::Inbound { inbound: inbound("U7"), agent: None },
            &bindings,
            models,
            known,
        );
        assert_eq!(other.unwrap().agent, "default");
    }

    #[test]
    fn an_unknown_agent_is_refused_naming_why_it_was_chosen_and_the_agents_there_are() {
        let target = Target::Inbound { inbound: inbound("U1"), agent: Some("ghost".into()) };
        let err = resolve_target(&target, &Bindings::default(), models, known).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no agent `ghost` (the request names it); this runtime has: default, support"
        );
    }

    #[test]
    fn empty_and_oversized_key_parts_are_refused() {
        let mut empty = inbound("");
        let err = resolve_target(
            &Target::Inbound { inbound: empty.clone(), agent: None },
            &Bindings::default(),
            models,
            known,
        )
        .unwrap_err();
        assert!(matches!(err, TurnError::InvalidTarget { field: "peer", .. }), "{err}");
        empty.peer = "x".repeat(MAX_KEY_PART_BYTES + 1);
        let err = resolve_target(
            &Target::Inbound { inbound: empty, agent: None },
            &Bindings::default(),
            models,
            known,
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most 256 bytes"), "{err}");
    }

    #[test]
    fn a_new_session_gets_its_own_queue() {
        let a = resolve_target(&Target::New { agent: None }, &Bindings::default(), models, known).unwrap();
        let b = resolve_target(&Target::New { agent: None }, &Bindings::default(), models, known).unwrap();
        assert_ne!(a.queue_key(), b.queue_key());
    }
}
