//! [`Turn`]: the IO of each step of a turn — a model call, approvals, tool calls — with the hooks
//! and checkpoints around them. [`crate::AgentRunner::drive_checkpointed`] loops over the steps.

use crate::agent::checkpoint::Checkpoints;
use crate::agent::hooks::{self, HookContext, ModelAction, ToolAction};
use crate::agent::run::{Run, RunError, SettledCall};
use crate::agent::runner::{AgentRunner, EventSink};
use crate::metering::{CallScope, DEFAULT_OUTPUT_ESTIMATE, Estimate, HeldCall, Payer};
use crate::{ErrorKind, ProviderError, ResponseAssembler, ToolContext, ToolError};
use exoclaw_types::{
    AgentEvent, CallPurpose, ChatRequest, ErrorCode, Message, StreamEvent, ToolCall, ToolEffect, ToolResult,
    Usage, UsageRecord,
};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One turn's IO context.
pub(super) struct Turn<'a> {
    pub runner: &'a AgentRunner,
    /// The session, agent and model, as hooks and monitors see them.
    pub cx: HookContext<'a>,
    pub cancel: &'a CancellationToken,
    pub events: &'a dyn EventSink,
    pub checkpoints: &'a dyn Checkpoints,
    /// Who pays for this turn's calls besides the budgets, if anyone.
    pub payer: Option<&'a dyn Payer>,
}

/// What is known of one model call when its usage is recorded.
struct Call<'a> {
    /// Wall time, and time to the first event.
    timing: (Duration, Option<Duration>),
    /// The provider and model that served it, when a router said.
    served: Option<(String, String)>,
    /// The budgets' (and the turn's payer's) hold taken before the call.
    held: HeldCall<'a>,
}

/// How a model call's stream ended.
enum Ending {
    Finished,
    Cancelled,
    Failed(ProviderError),
}

impl<'a> Turn<'a> {
    /// Calls the model with `request`. With `save_start`, the run's start is saved meanwhile: the
    /// request does not wait for the store, the answer does (a failed save ends the turn before
    /// the answer is used).
    pub async fn call_model(&self, run: &mut Run, request: ChatRequest, save_start: bool) {
        let provider = &self.runner.provider;
        let request = if self.runner.hooks.is_empty() {
            request
        } else {
            let action = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    run.cancel(None);
                    return;
                }
                action = hooks::before_model(&self.runner.hooks, &self.cx, &request) => action,
            };
            match action {
                ModelAction::Continue => request,
                ModelAction::Rewrite(rewritten) => *rewritten,
                ModelAction::Stop { reason } => return self.stopped(run, "before a model call", &reason),
            }
        };
        // Held until the call's usage is recorded; dropped (released) on every path that records
        // none, because the model was never reached.
        let held = match self.reserve(run, &request) {
            Ok(held) => held,
            Err((code, why)) => {
                self.events.emit(AgentEvent::Error {
                    code,
                    message: format!("{} was not called: {why}", self.runner.display_model),
                });
                run.fail();
                return;
            }
        };
        let started = Instant::now();
        let open = async {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => None,
                opened = provider.stream(request) => Some(opened),
            }
        };
        // The save is never dropped half-way (cancelling only stops the request), so the store
        // sees it before the turn's commit.
        let save = async {
            match save_start {
                true => self.checkpoints.save(run).await,
                false => Ok(()),
            }
        };
        let (opened, saved) = tokio::join!(open, save);
        if let Err(err) = saved {
            // Dropping the stream (if any) ends the request.
            return self.checkpoint_failed(run, &err);
        }
        let Some(opened) = opened else {
            run.cancel(None);
            return;
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
        let call = Call { timing, served, held };
        match ending {
            Ending::Finished => match assembler.finish(provider.name()) {
                Ok(response) => {
                    self.record_usage(run, response.usage, &response.message, call);
                    let answered =
                        run.model_answered_with(response.message, response.stop_reason, |call, effect| {
                            self.check(call, effect)
                        });
                    match answered {
                        Ok(settled) => settled.iter().for_each(|s| self.settled(s)),
                        Err(err) => return self.bug(run, &err),
                    }
                    if self.before_tools(run).await {
                        self.checkpoint(run).await;
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

    /// Shows each of the answer's pending tool calls to the hooks, before the user is asked or
    /// anything runs, and applies their decisions to the run (so a checkpoint keeps them). False
    /// when the turn ended (a hook stopped it, or it was cancelled).
    async fn before_tools(&self, run: &mut Run) -> bool {
        if self.runner.hooks.is_empty() {
            return true;
        }
        let pending: Vec<(ToolCall, Option<ToolEffect>)> =
            run.pending_calls().map(|(call, effect)| (call.clone(), effect)).collect();
        for (call, effect) in pending {
            let action = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    run.cancel(None);
                    return false;
                }
                action = hooks::before_tool(&self.runner.hooks, &self.cx, &call, effect) => action,
            };
            let applied = match action {
                ToolAction::Allow => Ok(()),
                ToolAction::Rewrite(arguments) => self.rewrite(run, &call, effect, arguments),
                ToolAction::Answer { content, is_error } => {
                    run.answer_call(&call.id, content, is_error).map(|settled| self.settled(&settled))
                }
                ToolAction::Stop { reason } => {
                    self.stopped(run, &format!("before the tool call `{}`", call.name), &reason);
                    return false;
                }
            };
            if let Err(err) = applied {
                self.bug(run, &err);
                return false;
            }
        }
        true
    }

    /// Saves the run while the turn goes on; a failed save ends it. False when the turn is over.
    pub async fn checkpoint(&self, run: &mut Run) -> bool {
        if run.is_done() {
            // A finished turn goes back to the caller, to be committed: nothing to resume.
            return false;
        }
        match self.checkpoints.save(run).await {
            Ok(()) => true,
            Err(err) => {
                self.checkpoint_failed(run, &err);
                false
            }
        }
    }

    /// A save failed: the turn stops before anything more runs.
    fn checkpoint_failed(&self, run: &mut Run, err: &crate::StoreError) {
        tracing::error!(%err, "a turn could not be checkpointed");
        self.events.emit(AgentEvent::Error {
            code: ErrorCode::Internal,
            message: format!(
                "the turn could not be checkpointed ({err}), so it was stopped before anything \
                 more ran: a crash now would lose its progress; check the session store (its disk, \
                 its database connection), then send the message again"
            ),
        });
        run.fail();
    }

    /// A hook stopped the turn `at` some point, for `reason`.
    fn stopped(&self, run: &mut Run, at: &str, reason: &str) {
        self.events.emit(AgentEvent::Error {
            code: ErrorCode::HookStopped,
            message: format!("an operator's hook stopped the turn {at}: {reason}"),
        });
        run.fail();
    }

    /// Reserves the next call's estimate against the budgets of this session and agent, then
    /// with the turn's payer; a refusal gives its code and why.
    fn reserve(&self, run: &Run, request: &ChatRequest) -> Result<HeldCall<'a>, (ErrorCode, String)> {
        let metering = &self.runner.metering;
        let max_output = request.params.max_tokens.map_or(DEFAULT_OUTPUT_ESTIMATE, u64::from);
        let prompt = Estimate::tokens_for_chars(run.prompt_chars());
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
        let scope = CallScope { session: Some(self.cx.session_id), agent: &self.runner.agent };
        HeldCall::take(metering, &scope, self.payer, &self.runner.display_model, estimate)
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
        Call { timing: (latency, ttft), served, held }: Call<'_>,
    ) {
        let (usage, estimated) = Estimate::fill_in(reported, run.prompt_chars(), output);
        let metering = &self.runner.metering;
        let mut record = UsageRecord {
            at: metering.now(),
            session_id: Some(self.cx.session_id),
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
            purpose: CallPurpose::Answer,
        };
        // Priced by what the record names, so that the stored cost and a restart's budget
        // restore agree with the live spend.
        record.cost_usd = metering.cost(&record.provider, &record.model, &record.usage);
        held.settle(&usage, record.cost_usd);
        run.record_usage(record);
        self.events.emit(AgentEvent::Usage { usage: reported });
    }

    /// Runs `calls` in parallel: marks them started (and saves that), then reports each result as
    /// it comes, saving after each, so that a crash loses at most the calls still running.
    pub async fn call_tools(&self, run: &mut Run, calls: Vec<ToolCall>) {
        if let Err(err) = run.tools_started(&calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()) {
            return self.bug(run, &err);
        }
        if !self.checkpoint(run).await {
            return;
        }
        // The tools' tokens hang off this one: cancelled with the turn, or when the turn ends early
        // with calls still running (a failed checkpoint), so that they can clean up.
        let batch = self.cancel.child_token();
        // Only tools offered at the start of the turn run: their permissions were decided on what
        // the model was told; a tool a source added since is unknown to this turn.
        let offered: Vec<bool> =
            calls.iter().map(|call| run.config().tools.iter().any(|t| t.spec.name == call.name)).collect();
        let mut running: FuturesUnordered<_> =
            calls.iter().zip(offered).map(|(call, offered)| self.execute(call, offered, &batch)).collect();
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    run.cancel(None);
                    return;
                }
                next = running.next() => next,
            };
            let Some(finished) = next else { return };
            let result = match finished {
                Ok(result) => result,
                Err(aborted) => {
                    batch.cancel();
                    return self.aborted(run, &aborted);
                }
            };
            if let Err(err) = run.tools_finished(vec![result]) {
                batch.cancel();
                return self.bug(run, &err);
            }
            if !self.checkpoint(run).await && !running.is_empty() {
                batch.cancel();
                return;
            }
        }
    }

    /// Runs one call under the time limit, shows its result to the hooks, and reports it; or
    /// gives back the tool's [`ToolError::Abort`], which ends the turn.
    async fn execute(
        &self,
        call: &ToolCall,
        offered: bool,
        batch: &CancellationToken,
    ) -> Result<ToolResult, Aborted> {
        let started = Instant::now();
        let (content, is_error) = match self.runner.tools.get(&call.name).filter(|_| offered) {
            None => (self.unknown_tool(&call.name), true),
            Some(tool) => {
                let token = batch.child_token();
                let ctx = ToolContext {
                    workspace_root: self.runner.workspace_root.clone(),
                    cancel: token.clone(),
                    session: Some(self.cx.session_id),
                };
                let limit = self.runner.limits.tool_timeout;
                // A panicking tool (a plugin's bug) fails its call, not the whole turn.
                let running = AssertUnwindSafe(tool.call(call.arguments.clone(), &ctx)).catch_unwind();
                match tokio::time::timeout(limit, running).await {
                    Ok(Ok(Ok(text))) => (text, false),
                    Ok(Ok(Err(ToolError::Abort { code, message }))) => {
                        return Err(Aborted { tool: call.name.clone(), code, message });
                    }
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
        let mut result = ToolResult { call_id: call.id.clone(), content, is_error };
        self.audit_executed(call, started.elapsed(), is_error);
        if !self.runner.hooks.is_empty() {
            result = hooks::after_tool(&self.runner.hooks, &self.cx, call, result).await;
        }
        self.events.emit(AgentEvent::ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: result.content.clone(),
            is_error: result.is_error,
            duration_ms: millis(started.elapsed()),
        });
        Ok(result)
    }

    /// A tool ended the turn: the model is not called again.
    fn aborted(&self, run: &mut Run, aborted: &Aborted) {
        tracing::warn!(tool = %aborted.tool, code = %aborted.code, "a tool ended the turn");
        self.events.emit(AgentEvent::Error {
            code: aborted.code,
            message: format!("the tool `{}` stopped the turn: {}", aborted.tool, aborted.message),
        });
        run.fail();
    }

    fn unknown_tool(&self, name: &str) -> String {
        let names: Vec<String> = self.runner.tools.names().iter().map(|n| format!("`{n}`")).collect();
        if names.is_empty() {
            format!("unknown tool `{name}`: no tools are available in this session")
        } else {
            format!("unknown tool `{name}`; the available tools are: {}", names.join(", "))
        }
    }

    /// Reports a call the run settled without running it (a denial, a hook's answer, an
    /// interruption).
    pub fn settled(&self, settled: &SettledCall) {
        self.events.emit(AgentEvent::ToolResult {
            call_id: settled.call.id.clone(),
            name: settled.call.name.clone(),
            content: settled.result.content.clone(),
            is_error: settled.result.is_error,
            duration_ms: 0,
        });
    }

    fn provider_error(&self, err: &ProviderError) {
        self.events.emit(AgentEvent::Error { code: err.kind.code(), message: err.to_string() });
    }

    /// The run refused what the runner fed it: a bug here, reported rather than panicking.
    pub(super) fn bug(&self, run: &mut Run, err: &RunError) {
        tracing::error!(%err, "agent runner fed its run an inconsistent input");
        self.events.emit(AgentEvent::Error {
            code: ErrorCode::Internal,
            message: format!("internal error in the agent loop ({err}); please report this bug"),
        });
        run.fail();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A tool's [`ToolError::Abort`], with the tool's name.
struct Aborted {
    tool: String,
    code: ErrorCode,
    message: String,
}
