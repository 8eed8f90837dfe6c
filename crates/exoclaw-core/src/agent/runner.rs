//! [`AgentRunner`]: drives a [`Run`] by doing its IO — streaming the model's answers, asking for
//! approvals, running tools in parallel under a timeout — and reports every step as an
//! [`AgentEvent`] to an [`EventSink`].

use crate::agent::permission::{ApprovalRequest, Approver, Decision, FixedApprover, PermissionPolicy};
use crate::agent::run::{DEFAULT_MAX_ITERATIONS, Run, RunConfig, RunError, RunTool, SettledCall, Step};
use crate::metering::{BudgetError, CallScope, DEFAULT_OUTPUT_ESTIMATE, Metering, Reservation};
use crate::{ErrorKind, Provider};
use crate::{ProviderError, ResponseAssembler, ToolContext, ToolError, ToolRegistry};
use exoclaw_types::{
    AgentEvent, ChatRequest, GenerationParams, Message, ModelId, SessionId, StreamEvent, ToolCall,
    ToolResult, TurnOutcome, Usage, UsageRecord,
};
use futures::{FutureExt, StreamExt, future::join_all};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
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
}

/// Runs agent turns against one model with one set of tools.
///
/// Turns take `&self`, so one runner serves any number of turns at once; clone it to change a
/// setting for some of them.
#[derive(Clone)]
pub struct AgentRunner {
    provider: Arc<dyn Provider>,
    model: ModelId,
    display_model: String,
    agent: String,
    system: Option<String>,
    tools: ToolRegistry,
    run_tools: Vec<RunTool>,
    workspace_root: PathBuf,
    permissions: PermissionPolicy,
    approver: Arc<dyn Approver>,
    limits: Limits,
    params: GenerationParams,
    metering: Arc<Metering>,
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
            .finish_non_exhaustive()
    }
}

impl AgentRunner {
    /// A runner for `model` on `provider`, shown to users as `display_model` (`provider/model`).
    ///
    /// It starts with no system prompt, no tools, the current directory as workspace, the default
    /// permissions with an approver that denies (set a real one with
    /// [`AgentRunner::with_permissions`]), the default [`Limits`] and default parameters. Usage is
    /// recorded for the agent `default`, priced with the shipped prices, under no budget.
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
            permissions: PermissionPolicy::default(),
            approver: Arc::new(FixedApprover(Decision::Deny)),
            limits: Limits::default(),
            params: GenerationParams::default(),
            metering: Arc::new(Metering::default()),
        }
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
        // Specs are computed once here: a typed tool builds its JSON schema on every `spec()`.
        self.run_tools = tools
            .names()
            .filter_map(|name| tools.get(name))
            .map(|tool| RunTool { spec: tool.spec(), effect: tool.effect() })
            .collect();
        self.tools = tools;
        self
    }

    /// Sets the directory tools work in.
    pub fn with_workspace_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.workspace_root = root.into();
        self
    }

    /// Sets the permission policy and the approver asked when the policy says `Ask`.
    pub fn with_permissions(mut self, policy: PermissionPolicy, approver: Arc<dyn Approver>) -> Self {
        self.permissions = policy;
        self.approver = approver;
        self
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
    /// token plus the call's `max_tokens`, or [`DEFAULT_OUTPUT_ESTIMATE`]) against the budgets of
    /// this session and agent; a refusal ends the turn `Failed` with an `Error` event
    /// (`budget_exceeded`, or `budget_unpriced` when a dollar budget meets a model without a
    /// price) before the provider is called. After the call the reservation is settled with the
    /// usage recorded, and the record's `cost_usd` comes from the price table. Share one
    /// `Metering` between every runner the budgets should count together.
    pub fn with_metering(mut self, metering: Arc<Metering>) -> Self {
        self.metering = metering;
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

    /// A new [`Run`] answering `input` after `history`, configured from this runner. Persist it
    /// and hand it to [`AgentRunner::drive`] to run it.
    pub fn start(&self, history: Vec<Message>, input: Message) -> Run {
        let config = RunConfig {
            model: self.model.clone(),
            system: self.system.clone(),
            tools: self.run_tools.clone(),
            params: self.params.clone(),
            max_iterations: self.limits.max_iterations,
            permissions: self.permissions.clone(),
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

    /// Runs `run` (new, or restored from storage) to its end; see [`AgentRunner::run_turn`]. A
    /// restored run keeps its own configuration (model, prompt, permissions); tools are looked up in
    /// this runner's registry.
    pub async fn drive(
        &self,
        mut run: Run,
        session_id: SessionId,
        cancel: &CancellationToken,
        events: &dyn EventSink,
    ) -> TurnResult {
        events.emit(AgentEvent::TurnStarted { session_id, model: self.display_model.clone() });
        let turn = Turn { runner: self, session_id, cancel, events };
        let outcome = loop {
            if cancel.is_cancelled() {
                run.cancel(None);
            }
            match run.next_step() {
                Step::Done(outcome) => break outcome,
                Step::CallModel(request) => turn.call_model(&mut run, request).await,
                Step::AwaitApproval(asks) => turn.ask(&mut run, asks).await,
                Step::CallTools(calls) => turn.call_tools(&mut run, calls).await,
            }
        };
        if outcome == TurnOutcome::MaxIterations {
            events.emit(AgentEvent::Error {
                code: "max_iterations".to_owned(),
                message: format!(
                    "the model was still calling tools after {} model calls, the most one turn allows, \
                     so the turn was stopped; ask it to continue, or raise the agent's `max_iterations` limit",
                    run.config().max_iterations
                ),
            });
        }
        events.emit(AgentEvent::Done { outcome });
        let (messages, usage, _) = run.into_parts();
        TurnResult { messages, usage, outcome }
    }
}

/// One turn's IO context.
struct Turn<'a> {
    runner: &'a AgentRunner,
    session_id: SessionId,
    cancel: &'a CancellationToken,
    events: &'a dyn EventSink,
}

/// What is known of one model call when its usage is recorded.
struct Call {
    /// Wall time, and time to the first event.
    timing: (Duration, Option<Duration>),
    /// The provider and model that served it, when a router said.
    served: Option<(String, String)>,
    /// The budget hold taken before the call.
    reservation: Reservation,
}

/// How a model call's stream ended.
enum Ending {
    Finished,
    Cancelled,
    Failed(ProviderError),
}

impl Turn<'_> {
    async fn call_model(&self, run: &mut Run, request: ChatRequest) {
        let provider = &self.runner.provider;
        // Held until the call's usage is recorded; dropped (released) on every path that records
        // none, because the model was never reached.
        let reservation = match self.reserve(run, &request) {
            Ok(reservation) => reservation,
            Err(err) => {
                self.events.emit(AgentEvent::Error {
                    code: err.code().to_owned(),
                    message: format!("{} was not called: {err}", self.runner.display_model),
                });
                run.fail();
                return;
            }
        };
        let started = Instant::now();
        let opened = tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                run.cancel(None);
                return;
            }
            opened = provider.stream(request) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => {
                self.provider_error(&err);
                run.fail();
                return;
            }
        };
        let mut assembler = ResponseAssembler::new();
        let mut ttft = None;
        let ending = loop {
            let item = tokio::select! {
                biased;
                () = self.cancel.cancelled() => break Ending::Cancelled,
                item = stream.next() => item,
            };
            match item {
                None if assembler.is_finished() => break Ending::Finished,
                None => {
                    break Ending::Failed(ProviderError::new(
                        ErrorKind::Protocol,
                        provider.name(),
                        "the answer ended without a finish event",
                    ));
                }
                Some(Err(err)) => break Ending::Failed(err),
                Some(Ok(event)) => {
                    ttft.get_or_insert_with(|| started.elapsed());
                    self.forward(&event);
                    assembler.push(event);
                }
            }
        };
        // Dropping the stream ends the request: a cancelled answer stops costing tokens now.
        drop(stream);
        let timing = (started.elapsed(), ttft);
        // A router names the provider that really served the call.
        let served = assembler.served().map(|(p, m)| (p.to_owned(), m.to_owned()));
        let call = Call { timing, served, reservation };
        match ending {
            Ending::Finished => match assembler.finish(provider.name()) {
                Ok(response) => {
                    self.record_usage(run, response.usage, &response.message, call);
                    match run.model_answered(response.message, response.stop_reason) {
                        Ok(settled) => settled.iter().for_each(|s| self.settled(s)),
                        Err(err) => self.bug(run, &err),
                    }
                }
                Err(err) => {
                    self.provider_error(&err);
                    run.fail();
                }
            },
            Ending::Cancelled => {
                let usage = assembler.usage();
                let partial = assembler.into_partial();
                self.record_usage(run, usage, &partial, call);
                run.cancel(Some(partial));
            }
            Ending::Failed(err) => {
                let usage = assembler.usage();
                self.record_usage(run, usage, &assembler.into_partial(), call);
                self.provider_error(&err);
                run.fail();
            }
        }
    }

    /// Passes what a user watches on to the sink; the rest only feeds the assembler.
    fn forward(&self, event: &StreamEvent) {
        let out = match event {
            StreamEvent::TextDelta { text } if !text.is_empty() => AgentEvent::Text { text: text.clone() },
            StreamEvent::ThinkingDelta { text } if !text.is_empty() => {
                AgentEvent::Thinking { text: text.clone() }
            }
            StreamEvent::ToolCall { call, .. } => AgentEvent::ToolUse { call: call.clone() },
            StreamEvent::TextDelta { .. }
            | StreamEvent::ThinkingDelta { .. }
            | StreamEvent::ThinkingSignature { .. }
            | StreamEvent::ToolCallStart { .. }
            | StreamEvent::ToolCallArgsDelta { .. }
            | StreamEvent::Usage(_)
            | StreamEvent::Served { .. }
            | StreamEvent::Finish { .. } => return,
        };
        self.events.emit(out);
    }

    /// Reserves the next call's estimate against the budgets of this session and agent.
    fn reserve(&self, run: &Run, request: &ChatRequest) -> Result<Reservation, BudgetError> {
        let metering = &self.runner.metering;
        let max_output = request.params.max_tokens.map_or(DEFAULT_OUTPUT_ESTIMATE, u64::from);
        let prompt = estimate_tokens(run.prompt_chars());
        let mut estimate =
            metering.estimate(self.runner.provider.name(), &self.runner.model.0, prompt, max_output);
        if estimate.usd.is_none()
            && let Some((provider, model)) = self.runner.display_model.split_once('/')
        {
            // A router (named `router`, say) has no price of its own: price the call as its
            // primary target, which the display name shows. What the call really cost is settled
            // from the usage record's own provider and model.
            estimate = metering.estimate(provider, model, prompt, max_output);
        }
        let scope = CallScope { session: Some(self.session_id), agent: &self.runner.agent };
        metering.budgets.reserve(&scope, estimate)
    }

    /// Records one model call's usage with the run, settles its budget reservation and reports
    /// it. Counts the provider did not report are estimated at four characters a token and the
    /// record is marked `estimated`; the cost comes from the price table (`None` without a
    /// price); the event carries only what was reported.
    fn record_usage(
        &self,
        run: &mut Run,
        reported: Usage,
        output: &Message,
        Call { timing: (latency, ttft), served, reservation }: Call,
    ) {
        let mut usage = reported;
        let mut estimated = false;
        if usage.input_tokens.is_none() {
            usage.input_tokens = Some(estimate_tokens(run.prompt_chars()));
            estimated = true;
        }
        if usage.output_tokens.is_none() {
            usage.output_tokens = Some(estimate_tokens(crate::agent::run::message_chars(output)));
            estimated = true;
        }
        let metering = &self.runner.metering;
        let mut record = UsageRecord {
            at: metering.now(),
            session_id: Some(self.session_id),
            agent: self.runner.agent.clone(),
            provider: served
                .as_ref()
                .map_or_else(|| self.runner.provider.name().to_owned(), |(p, _)| p.clone()),
            model: served.map_or_else(|| self.runner.model.0.clone(), |(_, m)| m),
            usage,
            latency_ms: millis(latency),
            ttft_ms: ttft.map(millis),
            cost_usd: None,
            estimated,
        };
        // Priced by what the record names, so that the stored cost and a restart's budget
        // restore agree with the live spend.
        record.cost_usd = metering.cost(&record.provider, &record.model, &record.usage);
        let tokens = usage.input_tokens.unwrap_or(0).saturating_add(usage.output_tokens.unwrap_or(0));
        reservation.settle(tokens, record.cost_usd);
        run.record_usage(record);
        self.events.emit(AgentEvent::Usage { usage: reported });
    }

    async fn ask(&self, run: &mut Run, asks: Vec<ApprovalRequest>) {
        for request in asks {
            self.events
                .emit(AgentEvent::ApprovalNeeded { call: request.call.clone(), effect: request.effect });
            let decision = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    run.cancel(None);
                    return;
                }
                decision = self.runner.approver.approve(&request) => decision,
            };
            match run.approval(&request.call.id, decision) {
                Ok(Some(settled)) => self.settled(&settled),
                Ok(None) => {}
                Err(err) => return self.bug(run, &err),
            }
        }
    }

    async fn call_tools(&self, run: &mut Run, calls: Vec<ToolCall>) {
        let results = join_all(calls.iter().map(|call| self.execute(call))).await;
        if self.cancel.is_cancelled() {
            run.cancel(None);
            return;
        }
        if let Err(err) = run.tools_finished(results.into_iter().flatten().collect()) {
            self.bug(run, &err);
        }
    }

    /// Runs one call under the time limit and reports its result; `None` when the turn was
    /// cancelled first.
    async fn execute(&self, call: &ToolCall) -> Option<ToolResult> {
        let started = Instant::now();
        let (content, is_error) = match self.runner.tools.get(&call.name) {
            None => (self.unknown_tool(&call.name), true),
            Some(tool) => {
                let token = self.cancel.child_token();
                let ctx =
                    ToolContext { workspace_root: self.runner.workspace_root.clone(), cancel: token.clone() };
                let limit = self.runner.limits.tool_timeout;
                // A panicking tool (a plugin's bug) fails its call, not the whole turn.
                let running = AssertUnwindSafe(tool.call(call.arguments.clone(), &ctx)).catch_unwind();
                let outcome = tokio::select! {
                    biased;
                    // The child token is cancelled with the turn's, so the tool can clean up.
                    () = self.cancel.cancelled() => return None,
                    outcome = tokio::time::timeout(limit, running) => outcome,
                };
                match outcome {
                    Ok(Ok(Ok(text))) => (text, false),
                    Ok(Ok(Err(err))) => (err.to_string(), true),
                    Ok(Err(_panic)) => {
                        (format!("the tool `{}` crashed; this is a bug in the tool", call.name), true)
                    }
                    Err(_elapsed) => {
                        // The call's future is gone; anything it started watches this token.
                        token.cancel();
                        (ToolError::Timeout(limit).to_string(), true)
                    }
                }
            }
        };
        self.events.emit(AgentEvent::ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.clone(),
            is_error,
            duration_ms: millis(started.elapsed()),
        });
        Some(ToolResult { call_id: call.id.clone(), content, is_error })
    }

    fn unknown_tool(&self, name: &str) -> String {
        let names: Vec<String> = self.runner.tools.names().map(|n| format!("`{n}`")).collect();
        if names.is_empty() {
            format!("unknown tool `{name}`: no tools are available in this session")
        } else {
            format!("unknown tool `{name}`; the available tools are: {}", names.join(", "))
        }
    }

    /// Reports a call the run settled without running it (a denial).
    fn settled(&self, settled: &SettledCall) {
        self.events.emit(AgentEvent::ToolResult {
            call_id: settled.call.id.clone(),
            name: settled.call.name.clone(),
            content: settled.result.content.clone(),
            is_error: settled.result.is_error,
            duration_ms: 0,
        });
    }

    fn provider_error(&self, err: &ProviderError) {
        self.events.emit(AgentEvent::Error { code: err.kind.code().to_owned(), message: err.to_string() });
    }

    /// The run refused what the runner fed it: a bug here, reported rather than panicking.
    fn bug(&self, run: &mut Run, err: &RunError) {
        tracing::error!(%err, "agent runner fed its run an inconsistent input");
        self.events.emit(AgentEvent::Error {
            code: "internal".to_owned(),
            message: format!("internal error in the agent loop ({err}); please report this bug"),
        });
        run.fail();
    }
}

fn estimate_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
