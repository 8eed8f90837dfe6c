//! One turn, from its place in the session's queue to its commit: the pipeline behind
//! [`exoclaw_core::AgentRuntime::submit`].

use super::{Agent, Inner};
use exoclaw_core::runtime::{
    ContextRequest, Route, SessionRef, Ticket, TurnFailure, TurnReport, TurnSender, turn_channel,
};
use exoclaw_core::{
    Checkpoints, EventSink, NewSession, Payer, Run, RunStore, SessionLocks, SessionStore, StoreError,
    TurnError, TurnHandle, TurnInput, TurnResult,
};
use exoclaw_types::{AgentEvent, Message, SessionId};
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
    let (handle, sender) = turn_channel(cancel.clone());
    tokio::spawn(async move {
        let turn = Turn { inner: &inner, agent: &agent, route: &route, cancel: &cancel, sender: &sender };
        let report = turn.run(input, ticket).await;
        if let Ok(report) = &report {
            turn.after(report);
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

/// Checkpoints a session's run in the store.
struct SessionCheckpoints<'a> {
    store: &'a exoclaw_store::Store,
    session: SessionId,
}

#[async_trait::async_trait]
impl Checkpoints for SessionCheckpoints<'_> {
    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        self.store.save_run(self.session, run).await
    }
}

/// Passes events on, remembering the last error's code and message for the report.
struct Recording<'a> {
    sender: &'a TurnSender,
    error: Mutex<Option<TurnFailure>>,
}

impl EventSink for Recording<'_> {
    fn emit(&self, event: AgentEvent) {
        if let AgentEvent::Error { code, message } = &event
            && let Ok(mut slot) = self.error.lock()
        {
            *slot = Some(TurnFailure { code: *code, message: message.clone() });
        }
        self.sender.emit(event);
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
        let lease = store.lock_session(id, input.wait).await.map_err(stored("cannot take the session"))?;
        // Read under the lock: only now is a stored run an interrupted one (while another
        // process runs a turn, its checkpoint is there too).
        let existing = if known {
            Some(
                store
                    .session(id)
                    .await
                    .map_err(stored("cannot read the session"))?
                    .ok_or(TurnError::SessionNotFound(id))?,
            )
        } else {
            None
        };
        let info = match existing {
            Some(info) => info,
            // Stored now, so that the turn's checkpoints belong to it and a turn killed mid-way
            // can be resumed.
            None => store
                .create_session(NewSession {
                    id: Some(id),
                    key: match &self.route.session {
                        SessionRef::Key(key) => Some(key.clone()),
                        SessionRef::Id(_) | SessionRef::New(_) => None,
                    },
                    title: input.text.as_deref().map(exoclaw_core::session_title),
                    model: Some(self.agent.model.clone()),
                })
                .await
                .map_err(stored("the session could not be stored"))?,
        };
        let sink = Recording { sender: self.sender, error: Mutex::new(None) };
        let payer = input.payer.as_deref();
        let mut resumed = false;
        let mut result = None;
        // A session this turn has just stored has no interrupted turn to look for.
        let interrupted = match known {
            true => store.interrupted_run(id).await.map_err(stored("cannot read the interrupted turn"))?,
            false => None,
        };
        if let Some(run) = interrupted {
            let history = store.messages(id).await.map_err(stored("cannot read the session"))?;
            let turn = self.drive(id, run.resume(history), &sink, payer).await;
            self.commit(id, &turn).await?;
            resumed = true;
            result = Some(turn);
        }
        let result = match input.text {
            Some(text) => {
                let request = ContextRequest {
                    session: id,
                    key: info.key.as_ref(),
                    agent: &self.agent.spec.name,
                    input: &text,
                };
                let history = self.inner.assembler.assemble(request).await.map_err(|e| match e {
                    exoclaw_core::runtime::AssembleError::Store(e) => {
                        TurnError::store("cannot read the session", e, Some(id))
                    }
                    other => TurnError::Context(other),
                })?;
                let run = self.agent.runner.start(history, Message::user(text));
                let turn = self.drive(id, run, &sink, payer).await;
                self.commit(id, &turn).await?;
                turn
            }
            None => result.ok_or(TurnError::NothingToResume(id))?,
        };
        // Only now may the session's next turn start: it must see this one.
        drop(lease);
        drop(held);
        let error = sink.error.lock().map(|mut slot| slot.take()).unwrap_or_default();
        Ok(TurnReport {
            session_id: id,
            session_key: info.key,
            agent: self.agent.spec.name.clone(),
            binding: self.route.binding,
            model: self.agent.model.clone(),
            outcome: result.outcome,
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
        id: SessionId,
        run: Run,
        sink: &Recording<'_>,
        payer: Option<&dyn Payer>,
    ) -> TurnResult {
        let checkpoints = SessionCheckpoints { store: &self.inner.store, session: id };
        self.agent.runner.drive_checkpointed(run, id, self.cancel, sink, &checkpoints, payer).await
    }

    /// Messages and usage in one transaction; the run's checkpoint goes with it.
    async fn commit(&self, id: SessionId, turn: &TurnResult) -> Result<(), TurnError> {
        self.inner
            .store
            .commit_turn(id, &turn.messages, &turn.usage, Some(&self.agent.model))
            .await
            .map_err(|e| TurnError::store("the turn ran but could not be stored", e, Some(id)))
    }

    /// Starts the after-turn work in the background.
    fn after(&self, report: &TurnReport) {
        for work in &self.inner.extensions.after_turn {
            let work = Arc::clone(work);
            let report = report.clone();
            tokio::spawn(async move { work.after_turn(&report).await });
        }
    }
}
