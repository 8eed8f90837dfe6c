//! One turn, from its place in the session's queue to its commit: the pipeline behind
//! [`exoclaw_core::AgentRuntime::submit`].

use super::{Agent, Inner, Runtime};
use exoclaw_core::runtime::{
    Committed, ContextRequest, Route, SessionRef, Ticket, TurnFailure, TurnReport, TurnSender, turn_channel,
};
use exoclaw_core::{
    Checkpoints, EventSink, NewSession, Payer, Run, RunStore, SessionLease, SessionLocks, SessionStore,
    StoreError, TurnError, TurnHandle, TurnInput, TurnResult,
};
use exoclaw_types::{AgentEvent, SessionId};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Starts the turn on its own task; it holds its queue place `ticket` from now on.
pub(super) fn start(
    inner: Arc<Inner>,
    agent: Arc<Agent>,
    route: Route,
    input: TurnInput,
    ticket: Ticket,
) -> TurnHandle {
    let cancel = inner.stop.child_token();
    // A turn on another model than the agent's (a chat's `[model]` prefix): the same agent, its
    // runner asking for that model.
    let agent = match &input.model {
        Some(model) if *model != agent.model => {
            let chain = model
                .parse::<crate::config::ModelChoice>()
                .ok()
                .and_then(|choice| inner.models.chain(Some(&choice)).ok());
            match chain {
                Some((request, chain)) => Arc::new(agent.on_model(&request, chain)),
                // A model the configuration cannot route: the router's answer says so.
                None => Arc::new(agent.on_model(model, Vec::new())),
            }
        }
        _ => agent,
    };
    // A turn whose front end asks someone else about its gated tool calls (a chat channel asks
    // the person whose message started it), or delivers the files the agent sends: the same
    // agent, its runner asking them, offering `send_file`.
    let agent = match (&input.approver, &input.outbox) {
        (None, None) => agent,
        (approver, outbox) => Arc::new(agent.with_runner(|runner| {
            let runner = match approver {
                Some(approver) => runner.with_approver(Arc::clone(approver)),
                None => runner,
            };
            match outbox {
                Some(outbox) => runner.with_outbox(outbox),
                None => runner,
            }
        })),
    };
    let (handle, sender) = turn_channel(cancel.clone());
    tokio::spawn(async move {
        let turn = Turn { inner: &inner, agent: &agent, route: &route, cancel: &cancel, sender: &sender };
        let payer = input.payer.clone();
        let report = turn.run(input, ticket).await;
        if let Ok(report) = &report {
            turn.after(report, payer);
        }
        sender.finish(report);
    });
    handle
}

struct Turn<'a> {
    inner: &'a Arc<Inner>,
    agent: &'a Arc<Agent>,
    route: &'a Route,
    cancel: &'a CancellationToken,
    sender: &'a TurnSender,
}

/// Checkpoints a session's run in the store, and holds the session's lock for the turn.
///
/// A new session is locked and stored with the turn's first checkpoint (or, when the turn saved
/// none, before its commit): nobody else knows its fresh id before then, and its first model call
/// need not wait for the store.
struct SessionCheckpoints<'a> {
    store: &'a exoclaw_store::Store,
    session: SessionId,
    /// The session's lock, or the new session still to be locked and stored.
    lock: tokio::sync::Mutex<Lock>,
    /// The session's revision: as read under the lock (0 for a new one), then one more with each
    /// commit of this turn.
    revision: std::sync::atomic::AtomicU64,
}

/// Whether a turn's session is stored and locked yet.
enum Lock {
    /// A new session, not stored yet.
    Unstored(NewSession),
    /// The session's lock, held for the turn (released when dropped).
    Held { _lease: SessionLease },
}

impl<'a> SessionCheckpoints<'a> {
    /// A stored session at `revision`, locked with `lease`.
    fn stored(store: &'a exoclaw_store::Store, lease: SessionLease, revision: u64) -> Self {
        Self {
            store,
            session: lease.session(),
            lock: tokio::sync::Mutex::new(Lock::Held { _lease: lease }),
            revision: revision.into(),
        }
    }

    /// A new session, stored (and locked) when first needed.
    fn new_session(store: &'a exoclaw_store::Store, session: NewSession, id: SessionId) -> Self {
        Self {
            store,
            session: id,
            lock: tokio::sync::Mutex::new(Lock::Unstored(session)),
            revision: 0.into(),
        }
    }

    /// The session's revision now (0: never written, so no history).
    fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes a commit; gives the session's revision after it.
    fn committed(&self) -> u64 {
        self.revision.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// Stores and locks the session if it is new and not stored yet.
    async fn store_session(&self) -> Result<(), StoreError> {
        let mut lock = self.lock.lock().await;
        let Lock::Unstored(new) = &*lock else { return Ok(()) };
        // Locked before it exists, so that no other process continues it mid-turn.
        let lease = self.store.lock_session(self.session, true).await?;
        self.store.create_session(new.clone()).await?;
        *lock = Lock::Held { _lease: lease };
        Ok(())
    }
}

#[async_trait::async_trait]
impl Checkpoints for SessionCheckpoints<'_> {
    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        self.store_session().await?;
        self.store.save_run(self.session, run).await
    }
}

/// Passes events on, remembering the last error's code and message for the report, and
/// emitting the context's warnings right after `TurnStarted` (which stays the first event).
struct Recording<'a> {
    sender: &'a TurnSender,
    error: Mutex<Option<TurnFailure>>,
    warnings: Mutex<Vec<String>>,
}

impl Recording<'_> {
    /// Emits `warnings` as [`AgentEvent::Warning`]s once the turn has started.
    fn warn_after_start(&self, warnings: Vec<String>) {
        if let Ok(mut pending) = self.warnings.lock() {
            pending.extend(warnings);
        }
    }
}

impl EventSink for Recording<'_> {
    fn emit(&self, event: AgentEvent) {
        if let AgentEvent::Error { code, message } = &event
            && let Ok(mut slot) = self.error.lock()
        {
            *slot = Some(TurnFailure { code: *code, message: message.clone() });
        }
        let started = matches!(event, AgentEvent::TurnStarted { .. });
        self.sender.emit(event);
        if started {
            let pending = self.warnings.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
            for message in pending {
                self.sender.emit(AgentEvent::Warning { message });
            }
        }
    }
}

impl Turn<'_> {
    async fn run(&self, input: TurnInput, ticket: Ticket) -> Result<TurnReport, TurnError> {
        let held = tokio::select! {
            held = ticket.ready() => held,
            () = self.cancel.cancelled() => return Err(TurnError::CancelledBeforeStart),
        };
        let store = &self.inner.store;
        let (id, known) = self.session_id().await?;
        let stored = |context: &str| {
            let context = context.to_owned();
            move |e: StoreError| TurnError::store(context, e, Some(id))
        };
        let (checkpoints, key, interrupted) = match known {
            true => {
                let lease =
                    store.lock_session(id, input.wait).await.map_err(stored("cannot take the session"))?;
                // Read under the lock: only now is a stored run an interrupted one (while another
                // process runs a turn, its checkpoint is there too).
                let info = store
                    .session(id)
                    .await
                    .map_err(stored("cannot read the session"))?
                    .ok_or(TurnError::SessionNotFound(id))?;
                let interrupted = match info.interrupted {
                    true => {
                        store.interrupted_run(id).await.map_err(stored("cannot read the interrupted turn"))?
                    }
                    false => None,
                };
                (SessionCheckpoints::stored(store, lease, info.revision), info.key, interrupted)
            }
            false => {
                let key = match &self.route.session {
                    SessionRef::Key(key) => Some(key.clone()),
                    SessionRef::Id(_) | SessionRef::New(_) => None,
                };
                let new = NewSession {
                    id: Some(id),
                    key: key.clone(),
                    title: input.text.as_deref().map(exoclaw_core::session_title),
                    model: Some(self.agent.model.clone()),
                };
                (SessionCheckpoints::new_session(store, new, id), key, None)
            }
        };
        let sink =
            Recording { sender: self.sender, error: Mutex::new(None), warnings: Mutex::new(Vec::new()) };
        let payer = input.payer.as_deref();
        let mut resumed = false;
        let mut result = None;
        if let Some(run) = interrupted {
            let history = store.messages(id).await.map_err(stored("cannot read the session"))?;
            let turn = self.drive(run.resume(history), &checkpoints, &sink, payer).await;
            self.commit(&checkpoints, &turn).await?;
            resumed = true;
            result = Some(turn);
        }
        let result = match input.text.clone() {
            Some(text) => {
                let request = ContextRequest {
                    session: id,
                    key: key.as_ref(),
                    agent: &self.agent.spec.name,
                    input: &text,
                    revision: checkpoints.revision(),
                    model: &self.agent.model,
                    budget: Runtime::context_budget_of(self.inner, self.agent),
                };
                let assembled = self.inner.assembler.assemble(request).await.map_err(|e| match e {
                    exoclaw_core::runtime::AssembleError::Store(e) => {
                        TurnError::store("cannot read the session", e, Some(id))
                    }
                    other => TurnError::Context(other),
                })?;
                sink.warn_after_start(assembled.warnings);
                let message = input.user_message(text).await;
                let run = self.agent.runner.start(assembled.messages, message);
                let turn = self.drive(run, &checkpoints, &sink, payer).await;
                self.commit(&checkpoints, &turn).await?;
                turn
            }
            None => result.ok_or(TurnError::NothingToResume(id))?,
        };
        // Only now may the session's next turn start: it must see this one.
        drop(checkpoints);
        drop(held);
        let error = sink.error.lock().map(|mut slot| slot.take()).unwrap_or_default();
        Ok(TurnReport {
            session_id: id,
            session_key: key,
            agent: self.agent.spec.name.clone(),
            binding: self.route.binding,
            model: self.agent.model.clone(),
            outcome: result.outcome,
            stop_reason: result.stop_reason,
            messages: result.messages,
            usage: result.usage,
            error,
            resumed,
        })
    }

    /// The session's id, and whether it is stored already.
    async fn session_id(&self) -> Result<(SessionId, bool), TurnError> {
        match &self.route.session {
            SessionRef::Key(key) => {
                let found = self
                    .inner
                    .store
                    .session_by_key(key)
                    .await
                    .map_err(|e| TurnError::store("cannot read the session", e, None))?;
                Ok(found.map_or_else(|| (SessionId::new(), false), |info| (info.id, true)))
            }
            SessionRef::Id(id) => Ok((*id, true)),
            SessionRef::New(id) => Ok((*id, false)),
        }
    }

    async fn drive(
        &self,
        run: Run,
        checkpoints: &SessionCheckpoints<'_>,
        sink: &Recording<'_>,
        payer: Option<&dyn Payer>,
    ) -> TurnResult {
        let id = checkpoints.session;
        self.agent.runner.drive_checkpointed(run, id, self.cancel, sink, checkpoints, payer).await
    }

    /// Messages and usage in one transaction; the run's checkpoint goes with it. A new session
    /// that saved no checkpoint (its turn ended before the model was asked) is stored first.
    async fn commit(&self, checkpoints: &SessionCheckpoints<'_>, turn: &TurnResult) -> Result<(), TurnError> {
        let id = checkpoints.session;
        checkpoints
            .store_session()
            .await
            .map_err(|e| TurnError::store("the session could not be stored", e, Some(id)))?;
        self.inner
            .store
            .commit_turn(id, &turn.messages, &turn.usage, Some(&self.agent.model))
            .await
            .map_err(|e| TurnError::store("the turn ran but could not be stored", e, Some(id)))?;
        let revision = checkpoints.committed();
        self.inner.assembler.committed(Committed { session: id, revision, messages: &turn.messages });
        Ok(())
    }

    /// Starts the after-turn work in the background; the turn's payer pays for its model calls.
    fn after(&self, report: &TurnReport, payer: Option<Arc<dyn Payer>>) {
        for work in &self.inner.extensions.after_turn {
            let work = Arc::clone(work);
            let report = report.clone();
            let payer = payer.clone();
            self.inner.tasks.spawn(async move { work.after_turn(&report, payer.as_deref()).await });
        }
    }
}
