//! [`AgentRunner`]: drives a [`Run`] by doing its IO — streaming the model's answers, asking for
//! approvals, running tools in parallel under a timeout, calling hooks, saving checkpoints — and
//! reports every step as an [`AgentEvent`] to an [`EventSink`]. The steps themselves are in
//! [`super::turn`].

use crate::Provider;
use crate::ToolRegistry;
use crate::agent::checkpoint::{Checkpoints, NoCheckpoints};
use crate::agent::hooks::{Hook, HookContext, Monitor, Observed};
use crate::agent::permission::{Approver, AuditSink, Decision, FixedApprover, NoAudit, Permissions};
use crate::agent::run::{DEFAULT_MAX_ITERATIONS, Run, RunConfig, RunTool, Step};
use crate::agent::turn::Turn;
use crate::metering::{Metering, Payer};
use exoclaw_types::{
    AgentEvent, ErrorCode, GenerationParams, Message, ModelId, SessionId, StopReason, TurnOutcome,
    UsageRecord,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// The per-tool time limit when none is configured.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a turn's [`AgentEvent`]s go: the CLI's renderer, a gateway connection, a test's list.
///
/// Implemented for `tokio::sync::mpsc::UnboundedSender<AgentEvent>` (a front end reads the
/// receiver on its own task) and for any `Fn(AgentEvent) + Send + Sync` closure. `emit` must not
/// block: the turn waits for it.
pub trait EventSink: Send + Sync {
    /// Delivers one event.
    fn emit(&self, event: AgentEvent);
}

impl EventSink for UnboundedSender<AgentEvent> {
    fn emit(&self, event: AgentEvent) {
        // A receiver that went away (a closed connection) stops watching; the turn still finishes
        // so that its messages are stored.
        let _ = self.send(event);
    }
}

impl<F: Fn(AgentEvent) + Send + Sync> EventSink for F {
    fn emit(&self, event: AgentEvent) {
        self(event);
    }
}

/// How far a turn may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most model calls in one turn (default 20).
    pub max_iterations: u32,
    /// Most time one tool call may take (default 120 s); a slower call is cancelled and the model
    /// is told it timed out.
    pub tool_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_iterations: DEFAULT_MAX_ITERATIONS, tool_timeout: DEFAULT_TOOL_TIMEOUT }
    }
}

/// What a turn produced, ready to be committed in one transaction
/// ([`crate::SessionStore::commit_turn`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TurnResult {
    /// This turn's new messages, oldest first: the user's, then the assistant's and the tools'.
    /// Never holds a tool call without its result nor a result without its call (see [`Run`]).
    pub messages: Vec<Message>,
    /// One record per model call whose answer began streaming.
    pub usage: Vec<UsageRecord>,
    /// How the turn ended.
    pub outcome: TurnOutcome,
    /// Why the turn's last model call stopped (`None` when no model call finished).
    pub stop_reason: Option<StopReason>,
}

/// Runs agent turns against one model with one set of tools.
///
/// Turns take `&self`, so one runner serves any number of turns at once; clone it to change a
/// setting for some of them.
#[derive(Clone)]
pub struct AgentRunner {
    pub(super) provider: Arc<dyn Provider>,
    pub(super) model: ModelId,
    pub(super) display_model: String,
    pub(super) agent: String,
    system: Option<String>,
    pub(super) tools: ToolRegistry,
    run_tools: Vec<RunTool>,
    pub(super) workspace_root: PathBuf,
    pub(super) permissions: Permissions,
    pub(super) approver: Arc<dyn Approver>,
    pub(super) audit: Arc<dyn AuditSink>,
    pub(super) limits: Limits,
    params: GenerationParams,
    pub(super) metering: Arc<Metering>,
    pub(super) hooks: Vec<Arc<dyn Hook>>,
    monitors: Vec<Arc<dyn Monitor>>,
}

impl std::fmt::Debug for AgentRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRunner")
            .field("model", &self.display_model)
            .field("agent", &self.agent)
            .field("tools", &self.tools)
            .field("workspace_root", &self.workspace_root)
            .field("permissions", &self.permissions)
            .field("limits", &self.limits)
            .field("budgets", &self.metering.budgets.specs().len())
            .field("hooks", &self.hooks.len())
            .field("monitors", &self.monitors.len())
            .finish_non_exhaustive()
    }
}

impl AgentRunner {
    /// A runner for `model` on `provider`, shown to users as `display_model` (`provider/model`).
    ///
    /// It starts with no system prompt, no tools, the current directory as workspace, the default
    /// permissions with an approver that denies (set a real one with
    /// [`AgentRunner::with_permissions`]), the default [`Limits`] and default parameters. Usage is
    /// recorded for the agent `default`, priced with the shipped prices, under no budget. No hooks
    /// or monitors.
    pub fn new(
        provider: Arc<dyn Provider>,
        model: impl Into<ModelId>,
        display_model: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            model: model.into(),
            display_model: display_model.into(),
            agent: "default".to_owned(),
            system: None,
            tools: ToolRegistry::new(),
            run_tools: Vec::new(),
            workspace_root: PathBuf::from("."),
            permissions: Permissions::default(),
            approver: Arc::new(FixedApprover(Decision::Deny)),
            audit: Arc::new(NoAudit),
            limits: Limits::default(),
            params: GenerationParams::default(),
            metering: Arc::new(Metering::default()),
            hooks: Vec::new(),
            monitors: Vec::new(),
        }
    }

    /// The same runner asking for `model` instead (the router routes it like any other: a
    /// `provider/model`, an alias), shown as `display_model`: one turn on another model.
    pub fn with_model(mut self, model: impl Into<ModelId>, display_model: impl Into<String>) -> Self {
        self.model = model.into();
        self.display_model = display_model.into();
        self
    }

    /// Sets the agent's name, recorded with usage.
    pub fn with_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = agent.into();
        self
    }

    /// Sets the system prompt.
    pub fn with_system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// Sets the tools the model may call.
    pub fn with_tools(mut self, tools: ToolRegistry) -> Self {
        // The registered tools' specs are computed once here (a typed tool builds its JSON schema
        // on every `spec()`); a source's tools are asked for at the start of each turn.
        self.run_tools =
            tools.registered().map(|tool| RunTool { spec: tool.spec(), effect: tool.effect() }).collect();
        self.tools = tools;
        self
    }

    /// Sets the directory tools work in.
    pub fn with_workspace_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.workspace_root = root.into();
        self
    }

    /// Sets the permissions (a [`crate::PermissionPolicy`] will do, or [`Permissions`] with every
    /// scope) and the approver asked when they say `Ask`.
    pub fn with_permissions(
        mut self,
        permissions: impl Into<Permissions>,
        approver: Arc<dyn Approver>,
    ) -> Self {
        self.permissions = permissions.into();
        self.approver = approver;
        self
    }

    /// The same runner asking `approver` when its permissions say ask (the permissions stay):
    /// one turn answered by someone else, such as the chat user whose message started it.
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    /// The same runner offering `send_file`, which puts the files the agent sends with its answer
    /// in `outbox` (one turn whose front end delivers files: a chat).
    pub fn with_outbox(mut self, outbox: &crate::runtime::Outbox) -> Self {
        let tool = outbox.tool();
        let spec = crate::runtime::Outbox::tool_spec();
        // Offered in name order, as the registry keeps them.
        self.run_tools.retain(|offered| offered.spec.name != spec.name);
        let at = self.run_tools.partition_point(|offered| offered.spec.name < spec.name);
        self.run_tools.insert(at, RunTool { spec, effect: tool.effect() });
        self.tools.register(tool);
        self
    }

    /// Sets where every permission decision, every answer and every call that changes something
    /// or reaches outside is recorded (default: nowhere).
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = audit;
        self
    }

    /// The permissions its calls are checked against.
    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Sets the iteration and tool-time limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the sampling and length parameters of every model call.
    pub fn with_params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// Sets the prices usage is costed with and the budgets model calls are held to.
    ///
    /// Before each model call the runner reserves an estimate (the prompt at four characters a
    /// token plus the call's `max_tokens`, or [`crate::DEFAULT_OUTPUT_ESTIMATE`]) against the budgets of
    /// this session and agent; a refusal ends the turn `Failed` with an `Error` event
    /// (`budget_exceeded`, or `budget_unpriced` when a dollar budget meets a model without a
    /// price) before the provider is called. After the call the reservation is settled with the
    /// usage recorded, and the record's `cost_usd` comes from the price table. Share one
    /// `Metering` between every runner the budgets should count together.
    pub fn with_metering(mut self, metering: Arc<Metering>) -> Self {
        self.metering = metering;
        self
    }

    /// Adds a hook, called after the ones added before it (see [`Hook`]). A hook that stops a turn
    /// ends it `Failed` with an `Error` event whose code is [`ErrorCode::HookStopped`].
    pub fn with_hook(mut self, hook: Arc<dyn Hook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Adds several hooks, in order (what `Config::hooks` builds).
    pub fn with_hooks(mut self, hooks: impl IntoIterator<Item = Arc<dyn Hook>>) -> Self {
        self.hooks.extend(hooks);
        self
    }

    /// Adds a monitor, shown every event of every turn after the ones added before it.
    pub fn with_monitor(mut self, monitor: Arc<dyn Monitor>) -> Self {
        self.monitors.push(monitor);
        self
    }

    /// The tools the model may call.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// The `provider/model` this runner answers with.
    pub fn display_model(&self) -> &str {
        &self.display_model
    }

    /// The tools offered this turn: the registered ones and what the sources have now.
    fn offered_tools(&self) -> Vec<RunTool> {
        let from_sources = self.tools.from_sources();
        if from_sources.is_empty() {
            return self.run_tools.clone();
        }
        let mut tools = self.run_tools.clone();
        tools.extend(from_sources.iter().map(|tool| RunTool { spec: tool.spec(), effect: tool.effect() }));
        tools.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        tools
    }

    /// A new [`Run`] answering `input` after `history`, configured from this runner. Persist it
    /// and hand it to [`AgentRunner::drive`] to run it.
    pub fn start(&self, history: Vec<Message>, input: Message) -> Run {
        let config = RunConfig {
            model: self.model.clone(),
            system: self.system.clone(),
            tools: self.offered_tools(),
            params: self.params.clone(),
            max_iterations: self.limits.max_iterations,
            permissions: self.permissions.defaults().clone(),
        };
        Run::new(config, history, input)
    }

    /// Runs one turn answering `input` after the session's `history`, reporting to `events`.
    ///
    /// Events: `TurnStarted` first; then text and thinking deltas, `ToolUse`, `ApprovalNeeded`,
    /// `ToolResult` and one `Usage` per model call as they happen; `Error` when something failed
    /// (a provider error, the iteration limit); `Done` last, exactly once. Cancelling `cancel`
    /// stops the stream, the approval prompt or the tools at once and ends the turn `Cancelled`.
    pub async fn run_turn(
        &self,
        session_id: SessionId,
        history: Vec<Message>,
        input: Message,
        cancel: &CancellationToken,
        events: &dyn EventSink,
    ) -> TurnResult {
        self.drive(self.start(history, input), session_id, cancel, events).await
    }

    /// Runs `run` (new, or restored from storage) to its end, keeping no checkpoints; see
    /// [`AgentRunner::run_turn`] and [`AgentRunner::drive_checkpointed`].
    pub async fn drive(
        &self,
        run: Run,
        session_id: SessionId,
        cancel: &CancellationToken,
        events: &dyn EventSink,
    ) -> TurnResult {
        self.drive_checkpointed(run, session_id, cancel, events, &NoCheckpoints, None).await
    }

    /// Runs `run` (new, or restored from a checkpoint) to its end, saving it to `checkpoints` after
    /// every step; events as [`AgentRunner::run_turn`] describes.
    ///
    /// The run is saved when the turn starts (beside its first model call, which does not wait
    /// for the save; the answer does), after each model answer (once the hooks have looked
    /// at its tool calls), after each approval decision, when tool calls start and after each tool
    /// result, as long as the turn goes on: a finished turn is not saved, it is handed back to be
    /// committed. When a save fails the turn stops: it ends `Failed` with an `Error` event (code
    /// `internal`) saying it could not be checkpointed and why, before anything more runs.
    ///
    /// A restored run (deserialised, then given its history with [`Run::resume`]) keeps its own
    /// configuration (model, prompt, permissions); tools are looked up in this runner's registry.
    /// Calls that were running when its process stopped are never run again silently
    /// ([`Run::recover_interrupted`]): each is reported as an interrupted `ToolResult`, or asked
    /// about again when its tool needs approval. Finished results are kept.
    ///
    /// `payer`, when given, pays for the turn's model calls besides the budgets: each call is
    /// held with it first and settled after (see [`Payer`]).
    pub async fn drive_checkpointed(
        &self,
        mut run: Run,
        session_id: SessionId,
        cancel: &CancellationToken,
        events: &dyn EventSink,
        checkpoints: &dyn Checkpoints,
        payer: Option<&dyn Payer>,
    ) -> TurnResult {
        let cx = HookContext::new(session_id, &self.agent, &self.display_model);
        let observed = Observed { sink: events, monitors: &self.monitors, cx };
        let events: &dyn EventSink = if self.monitors.is_empty() { events } else { &observed };
        events.emit(AgentEvent::TurnStarted { session_id, model: self.display_model.clone() });
        let turn = Turn { runner: self, cx, cancel, events, checkpoints, payer };
        for settled in run.recover_interrupted() {
            turn.settled(&settled);
        }
        // The turn's start is saved with its first step: beside the first model call (the model is
        // asked while the store writes; the answer waits for the save), before anything else.
        let mut start_unsaved = true;
        let outcome = loop {
            if cancel.is_cancelled() {
                run.cancel(None);
            }
            let step = run.next_step();
            let save_start = std::mem::take(&mut start_unsaved);
            if save_start
                && !matches!(step, Step::CallModel(_) | Step::Done(_))
                && !turn.checkpoint(&mut run).await
            {
                continue;
            }
            match step {
                Step::Done(outcome) => break outcome,
                Step::CallModel(request) => turn.call_model(&mut run, *request, save_start).await,
                Step::AwaitApproval(asks) => turn.ask(&mut run, asks).await,
                Step::CallTools(calls) => turn.call_tools(&mut run, calls).await,
            }
        };
        if outcome == TurnOutcome::MaxIterations {
            events.emit(AgentEvent::Error {
                code: ErrorCode::MaxIterations,
                message: format!(
                    "the model was still calling tools after {} model calls, the most one turn allows, \
                     so the turn was stopped; ask it to continue, or raise the agent's `max_iterations` limit",
                    run.config().max_iterations
                ),
            });
        }
        let stop_reason = run.last_stop_reason().cloned();
        let (messages, usage, _) = run.into_parts();
        let result = TurnResult { messages, usage, outcome, stop_reason: stop_reason.clone() };
        for hook in &self.hooks {
            hook.after_turn(&cx, &result).await;
        }
        events.emit(AgentEvent::Done { outcome, stop_reason });
        result
    }
}
