//! [`ScriptedRuntime`]: an [`AgentRuntime`] over in-process agents (each an [`AgentRunner`] on
//! whatever provider a test gives it) and a session store, for testing front ends (the gateway,
//! chat channels) without the `exoclaw` facade's configuration, router and model crates. It keeps
//! the runtime's contract: bindings route, one turn at a time per session in submission order,
//! a turn runs to its end and is committed even when its handle is dropped.

use async_trait::async_trait;
use exoclaw_core::runtime::{
    AgentSummary, Route, SessionQueues, SessionRef, TurnFailure, TurnReport, resolve_target, turn_channel,
};
use exoclaw_core::{
    AgentRunner, AgentRuntime, Bindings, EventSink, NewSession, NoCheckpoints, SessionStore, Target,
    TurnError, TurnHandle, TurnInput,
};
use exoclaw_types::{AgentEvent, SessionId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;

struct Agent {
    description: Option<String>,
    runner: AgentRunner,
}

/// A runtime over in-process agents.
pub struct ScriptedRuntime {
    agents: BTreeMap<String, Arc<Agent>>,
    bindings: RwLock<Arc<Bindings>>,
    queues: SessionQueues,
    store: Arc<dyn SessionStore>,
    session_queue: AtomicUsize,
}

impl std::fmt::Debug for ScriptedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedRuntime").field("agents", &self.agents.keys()).finish_non_exhaustive()
    }
}

impl ScriptedRuntime {
    /// No agents yet; sessions in `store`; eight turns may wait per session.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            agents: BTreeMap::new(),
            bindings: RwLock::new(Arc::new(Bindings::default())),
            queues: SessionQueues::default(),
            store,
            session_queue: AtomicUsize::new(8),
        }
    }

    /// Adds the agent `runner` runs (named by the runner's agent name).
    pub fn agent(mut self, name: &str, description: Option<String>, runner: AgentRunner) -> Self {
        self.agents.insert(name.to_owned(), Arc::new(Agent { description, runner }));
        self
    }

    /// The bindings.
    pub fn with_bindings(self, bindings: Bindings) -> Self {
        self.reload_bindings(bindings);
        self
    }

    /// How many turns may wait behind a running one in a session.
    pub fn set_session_queue(&self, bound: usize) {
        self.session_queue.store(bound, Ordering::SeqCst);
    }
}

#[async_trait]
impl AgentRuntime for ScriptedRuntime {
    fn route(&self, target: &Target) -> Result<Route, TurnError> {
        let bindings = self.bindings();
        resolve_target(
            target,
            &bindings,
            |name| self.agents.get(name).map(|a| a.runner.display_model().to_owned()),
            || self.agents.keys().cloned().collect(),
        )
    }

    fn submit_routed(&self, route: Route, input: TurnInput) -> Result<TurnHandle, TurnError> {
        let agent = self.agents.get(&route.agent).cloned().ok_or_else(|| TurnError::NoAgent {
            name: route.agent.clone(),
            why: "it is not configured".into(),
            known: self.agents.keys().cloned().collect(),
        })?;
        let ticket = self.queues.enter(&route.queue_key(), self.session_queue.load(Ordering::SeqCst))?;
        let cancel = CancellationToken::new();
        let (handle, sender) = turn_channel(cancel.clone());
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let report = async {
                let held = tokio::select! {
                    held = ticket.ready() => held,
                    () = cancel.cancelled() => return Err(TurnError::CancelledBeforeStart),
                };
                let stored = |e| TurnError::store("store", e, None);
                let (id, key, existing) = match &route.session {
                    SessionRef::Key(key) => match store.session_by_key(key).await.map_err(stored)? {
                        Some(info) => (info.id, Some(key.clone()), true),
                        None => (SessionId::new(), Some(key.clone()), false),
                    },
                    SessionRef::Id(id) => (*id, None, true),
                    SessionRef::New(id) => (*id, None, false),
                };
                let text = input.text.clone().ok_or(TurnError::NothingToResume(id))?;
                let history = if existing { store.messages(id).await.map_err(stored)? } else { Vec::new() };
                let error = Mutex::new(None);
                let sink = |event: AgentEvent| {
                    if let AgentEvent::Error { code, message } = &event {
                        *error.lock().unwrap() = Some(TurnFailure { code: *code, message: message.clone() });
                    }
                    sender.emit(event);
                };
                let runner = match &input.model {
                    Some(model) => agent.runner.clone().with_model(model.as_str(), model.as_str()),
                    None => agent.runner.clone(),
                };
                let runner = match &input.approver {
                    Some(approver) => runner.with_approver(Arc::clone(approver)),
                    None => runner,
                };
                let runner = match &input.outbox {
                    Some(outbox) => runner.with_outbox(outbox),
                    None => runner,
                };
                let run = runner.start(history, input.user_message(text.clone()).await);
                let payer = input.payer.as_deref();
                let result = runner.drive_checkpointed(run, id, &cancel, &sink, &NoCheckpoints, payer).await;
                let model = runner.display_model().to_owned();
                if !existing {
                    let new = NewSession {
                        id: Some(id),
                        key: key.clone(),
                        title: Some(exoclaw_core::session_title(&text)),
                        model: Some(model.clone()),
                    };
                    store.create_session(new).await.map_err(stored)?;
                }
                store.commit_turn(id, &result.messages, &result.usage, Some(&model)).await.map_err(stored)?;
                drop(held);
                let error = error.lock().unwrap().take();
                Ok(TurnReport {
                    session_id: id,
                    session_key: key,
                    agent: route.agent.clone(),
                    binding: route.binding,
                    model,
                    outcome: result.outcome,
                    stop_reason: result.stop_reason,
                    messages: result.messages,
                    usage: result.usage,
                    error,
                    resumed: false,
                })
            }
            .await;
            sender.finish(report);
        });
        Ok(handle)
    }

    fn agents(&self) -> Vec<AgentSummary> {
        self.agents
            .iter()
            .map(|(name, a)| AgentSummary {
                name: name.clone(),
                description: a.description.clone(),
                model: a.runner.display_model().to_owned(),
                tools: a.runner.tools().specs(),
            })
            .collect()
    }

    fn bindings(&self) -> Arc<Bindings> {
        Arc::clone(&self.bindings.read().unwrap())
    }

    fn reload_bindings(&self, bindings: Bindings) {
        *self.bindings.write().unwrap() = Arc::new(bindings);
    }

    fn queues(&self) -> &SessionQueues {
        &self.queues
    }

    async fn clear_session(&self, session: SessionId) -> Result<u64, TurnError> {
        let info = self
            .store
            .session(session)
            .await
            .map_err(|e| TurnError::store("store", e, Some(session)))?
            .ok_or(TurnError::SessionNotFound(session))?;
        let queue = info.key.as_ref().map_or_else(|| session.to_string(), ToString::to_string);
        let _held = self.queues.enter(&queue, 0)?;
        self.store.clear_session(session).await.map_err(|e| TurnError::store("store", e, Some(session)))?;
        Ok(info.message_count)
    }
}
