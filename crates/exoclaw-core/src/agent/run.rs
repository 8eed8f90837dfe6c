//! [`Run`]: one agent turn as a sans-IO state machine.
//!
//! The run decides what happens next ([`Run::next_step`]) and is told what happened
//! ([`Run::model_answered`], [`Run::approval`], [`Run::tools_started`], [`Run::tools_finished`],
//! [`Run::cancel`], [`Run::fail`]). It does no IO and knows no clock, so it is tested step by step
//! without a runtime. [`crate::AgentRunner`] drives it.
//!
//! # Checkpoints
//!
//! A run is `Serialize + Deserialize`: a turn can be checkpointed between any two steps and resumed
//! after a crash. The serialised form holds everything but the session's history (which may be
//! thousands of messages and is in the store already), so a checkpoint costs the same on the first
//! turn and the thousandth. Restore one in three moves:
//!
//! 1. deserialise it, and give back the history with [`Run::resume`];
//! 2. [`Run::recover_interrupted`]: calls that were running when the process stopped are never run
//!    again silently; the model is told they were interrupted, or the user is asked again;
//! 3. drive it as usual ([`crate::AgentRunner::drive`] does step 2 itself).
//!
//! # The pairing invariant
//!
//! The messages a run hands back ([`Run::messages`]) never hold an assistant tool call without its
//! tool result, nor a tool result without its call: a call's result always sits in the tool
//! message right after the assistant message that made it. Vendors reject conversations that break
//! this, so a session stored with an orphan would fail on every later turn. When a turn is cancelled
//! or fails while calls are open, the run drops the unmatched tail: the assistant message that made
//! the calls keeps only its text (and disappears if it had none). [`tool_calls_paired`] checks it.

use crate::agent::permission::{ApprovalRequest, Decision, Permission, PermissionPolicy};
use exoclaw_types::{
    ChatRequest, ChatResponse, GenerationParams, Message, ModelId, Part, Role, StopReason, ToolCall,
    ToolEffect, ToolResult, ToolSpec, TurnOutcome, UsageRecord,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The iteration limit when none is configured.
pub const DEFAULT_MAX_ITERATIONS: u32 = 20;

/// A tool the model may call in a run: its spec (sent to the model) and its effect (for the
/// permission check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTool {
    /// Name, description and argument schema.
    pub spec: ToolSpec,
    /// Whether the tool only reads, changes things, or reaches outside.
    pub effect: ToolEffect,
}

/// Everything fixed for the length of a turn: the model, the prompt, the tools, the limits and
/// the permissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The model, as the provider names it.
    pub model: ModelId,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The tools the model may call.
    #[serde(default)]
    pub tools: Vec<RunTool>,
    /// Sampling and length parameters of every model call.
    #[serde(default)]
    pub params: GenerationParams,
    /// Most model calls in one turn.
    pub max_iterations: u32,
    /// The permission defaults ([`Run::model_answered`] decides calls by them; a runner decides
    /// with every rule through [`Run::model_answered_with`]).
    #[serde(default)]
    pub permissions: PermissionPolicy,
}

impl RunConfig {
    /// A configuration for `model` with no system prompt, no tools, default parameters, the default
    /// iteration limit and the default permissions.
    pub fn new(model: impl Into<ModelId>) -> Self {
        Self {
            model: model.into(),
            system: None,
            tools: Vec::new(),
            params: GenerationParams::default(),
            max_iterations: DEFAULT_MAX_ITERATIONS,
            permissions: PermissionPolicy::default(),
        }
    }

    fn effect_of(&self, tool: &str) -> Option<ToolEffect> {
        self.tools.iter().find(|t| t.spec.name == tool).map(|t| t.effect)
    }
}

/// What the driver of a run must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this request to the model and report the answer with [`Run::model_answered`].
    /// (Boxed: a request is far larger than the other steps.)
    CallModel(Box<ChatRequest>),
    /// Ask the user about each of these calls and report with [`Run::approval`].
    AwaitApproval(Vec<ApprovalRequest>),
    /// Run these calls (in parallel): report that they started with [`Run::tools_started`], then
    /// each result with [`Run::tools_finished`]. A call naming a tool the run does not know is
    /// included; its result should say so.
    CallTools(Vec<ToolCall>),
    /// The turn is over.
    Done(TurnOutcome),
}

/// A call the run settled without running it (the permissions deny it, the user did, a hook
/// answered it, or it was interrupted by a crash): the driver reports the result to the user like
/// any other.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledCall {
    /// The call.
    pub call: ToolCall,
    /// Its result, as the model will see it.
    pub result: ToolResult,
}

/// What a run was told that does not fit its state: a bug in the driver, never the model's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The input is for another phase of the turn.
    #[error("the run expected {expected}, not {got}")]
    UnexpectedInput {
        /// What the run waits for.
        expected: &'static str,
        /// What it was given.
        got: &'static str,
    },
    /// No open call has this id (in the state the input needs).
    #[error("no open tool call with id `{0}` waits for this")]
    UnknownCall(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// The next thing is a model call.
    Model,
    /// The last answer made tool calls; some are not settled yet.
    Tools { calls: Vec<OpenCall> },
    /// The turn is over.
    Done { outcome: TurnOutcome },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenCall {
    call: ToolCall,
    /// `None` for a tool the run does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    effect: Option<ToolEffect>,
    /// The permission it was given (`None` for an unknown tool, or in a checkpoint from before
    /// it was kept: the configured defaults then say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permission: Option<Permission>,
    state: CallState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum CallState {
    /// Waits for the user's decision.
    Approval,
    /// May run; not started yet.
    Ready,
    /// Started ([`Run::tools_started`]); waits for its result. Found in a checkpoint, it means the
    /// process stopped while the call ran: see [`Run::recover_interrupted`].
    Running,
    /// Has its result.
    Finished { result: ToolResult },
}

/// One agent turn: the conversation so far, this turn's new messages, the iteration count and the
/// open tool calls, as a sans-IO state machine that can be persisted between any two steps.
///
/// **Checkpoints.** The serde form leaves out the history: put it back with [`Run::resume`] after
/// deserialising, see the module docs.
///
/// **Pairing invariant.** Outside the tool phase, [`Run::messages`] never holds an assistant tool
/// call without its tool result, nor a result without its call: the results of an answer's calls
/// sit in the one tool message right after it. Cancelling or failing with calls open drops them
/// (the assistant message keeps its text, or goes if it had none), so what a turn hands to storage
/// can always be sent back to a vendor. [`tool_calls_paired`] checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    config: RunConfig,
    /// Not part of a checkpoint: the store has it, and it may be long ([`Run::resume`]).
    #[serde(skip)]
    history: Vec<Message>,
    messages: Vec<Message>,
    iterations: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_stop: Option<StopReason>,
    phase: Phase,
    #[serde(default)]
    usage: Vec<UsageRecord>,
}

impl Run {
    /// A turn answering `input` (normally a user message) after `history` (the session's stored
    /// messages, oldest first).
    pub fn new(config: RunConfig, history: Vec<Message>, input: Message) -> Self {
        Self {
            config,
            history,
            messages: vec![input],
            iterations: 0,
            last_stop: None,
            phase: Phase::Model,
            usage: Vec::new(),
        }
    }

    /// A run restored from a checkpoint, with the session's `history` put back: the serde form
    /// leaves the history out (see the module docs), so a deserialised run has none until it is
    /// resumed. Give it the history the turn started with, as the store has it.
    #[must_use]
    pub fn resume(mut self, history: Vec<Message>) -> Self {
        self.history = history;
        self
    }

    /// Settles the calls a restored run shows as running: the process stopped while they ran, so
    /// whether they took effect is unknown, and none is run again silently.
    ///
    /// - A call that needed the user's approval ([`Permission::Ask`]) waits for approval again:
    ///   the user decides whether to repeat it.
    /// - Any other call is settled with an error result telling the model it was interrupted and
    ///   may or may not have taken effect; the settled calls are returned for the driver to show.
    /// - A call of a tool the run does not know runs nothing, so it simply becomes ready again.
    ///
    /// Finished results are kept and calls not yet started stay ready. Does nothing to a run with
    /// no running calls, so a driver may call it on every run it is handed.
    pub fn recover_interrupted(&mut self) -> Vec<SettledCall> {
        let Phase::Tools { calls } = &mut self.phase else {
            return Vec::new();
        };
        let mut settled = Vec::new();
        for open in calls.iter_mut().filter(|c| c.state == CallState::Running) {
            let permission = open
                .permission
                .or_else(|| open.effect.map(|e| self.config.permissions.decide(&open.call.name, e)));
            open.state = match permission {
                None => CallState::Ready,
                Some(Permission::Ask) => CallState::Approval,
                Some(Permission::Allow | Permission::Deny) => {
                    let result = ToolResult {
                        call_id: open.call.id.clone(),
                        content: format!(
                            "`{}` was interrupted: the process stopped while this call ran; it may or \
                             may not have taken effect — check before retrying",
                            open.call.name
                        ),
                        is_error: true,
                    };
                    settled.push(SettledCall { call: open.call.clone(), result: result.clone() });
                    CallState::Finished { result }
                }
            };
        }
        self.close_tools_if_settled();
        settled
    }

    /// What to do next. Asking twice without reporting anything gives the same step, so a run
    /// restored from storage resumes where it stopped (repeating an unreported model call, or a
    /// tool call that was not started).
    ///
    /// Ask only when no started call is still running: calls the run shows as running are taken
    /// for interrupted and settled as [`Run::recover_interrupted`] does (without returning them;
    /// a driver restoring a run calls that first, to show them).
    pub fn next_step(&mut self) -> Step {
        match &self.phase {
            Phase::Done { outcome } => Step::Done(*outcome),
            Phase::Model if self.iterations >= self.config.max_iterations => {
                self.phase = Phase::Done { outcome: TurnOutcome::MaxIterations };
                Step::Done(TurnOutcome::MaxIterations)
            }
            Phase::Model => Step::CallModel(Box::new(self.request())),
            Phase::Tools { calls } => {
                let approvals: Vec<ApprovalRequest> = calls
                    .iter()
                    .filter(|c| c.state == CallState::Approval)
                    .filter_map(|c| c.effect.map(|effect| ApprovalRequest::new(c.call.clone(), effect)))
                    .collect();
                if !approvals.is_empty() {
                    return Step::AwaitApproval(approvals);
                }
                let ready: Vec<ToolCall> =
                    calls.iter().filter(|c| c.state == CallState::Ready).map(|c| c.call.clone()).collect();
                if !ready.is_empty() {
                    return Step::CallTools(ready);
                }
                if calls.iter().any(|c| c.state == CallState::Running) {
                    self.recover_interrupted();
                    return self.next_step();
                }
                // Unreachable through the public API (the last settled call closes the phase), but
                // a hand-edited stored run might get here: close it now.
                self.close_tools();
                self.next_step()
            }
        }
    }

    /// The request the next model call sends: the system prompt, the history and this turn's
    /// messages, the tools and the parameters.
    pub fn request(&self) -> ChatRequest {
        let mut messages = Vec::with_capacity(self.history.len() + self.messages.len());
        messages.extend_from_slice(&self.history);
        messages.extend_from_slice(&self.messages);
        ChatRequest {
            model: self.config.model.clone(),
            system: self.config.system.clone(),
            messages,
            tools: self.config.tools.iter().map(|t| t.spec.clone()).collect(),
            tool_choice: None,
            params: self.config.params.clone(),
            user: None,
        }
    }

    /// Reports the model's answer: the assembled assistant `message` and why it stopped.
    ///
    /// An answer without tool calls completes the turn. Tool calls are checked against the
    /// configured permission defaults ([`RunConfig::permissions`], without rules): allowed calls
    /// (and calls of unknown tools, which run nothing) become ready, `Ask` calls wait for
    /// approval, denied calls are settled with an error result at once and returned, so the
    /// driver can show them.
    pub fn model_answered(
        &mut self,
        message: Message,
        stop: StopReason,
    ) -> Result<Vec<SettledCall>, RunError> {
        let defaults = self.config.permissions.clone();
        self.model_answered_with(message, stop, |call, effect| defaults.decide(&call.name, effect))
    }

    /// [`Run::model_answered`], each call of a known tool given its permission by `check` (a
    /// runner's [`crate::Permissions`], which knows every rule and what the call touches).
    pub fn model_answered_with(
        &mut self,
        message: Message,
        stop: StopReason,
        mut check: impl FnMut(&ToolCall, ToolEffect) -> Permission,
    ) -> Result<Vec<SettledCall>, RunError> {
        if self.phase != Phase::Model {
            return Err(self.unexpected("a model answer"));
        }
        self.iterations += 1;
        self.last_stop = Some(stop);
        let calls: Vec<ToolCall> = message.tool_calls().cloned().collect();
        if calls.is_empty() {
            // Some vendors reject an empty assistant message when the conversation goes on.
            if !message.parts.is_empty() {
                self.messages.push(message);
            }
            self.phase = Phase::Done { outcome: TurnOutcome::Completed };
            return Ok(Vec::new());
        }
        self.messages.push(message);
        let mut settled = Vec::new();
        let open = calls
            .into_iter()
            .map(|call| {
                let effect = self.config.effect_of(&call.name);
                let permission = effect.map(|e| check(&call, e));
                // An unknown tool runs nothing, so there is nothing to approve: the driver answers
                // it with the list of tools that do exist.
                let state = match permission {
                    None => CallState::Ready,
                    Some(permission) => state_for(&call, permission, &mut settled),
                };
                OpenCall { call, effect, permission, state }
            })
            .collect();
        self.phase = Phase::Tools { calls: open };
        self.close_tools_if_settled();
        Ok(settled)
    }

    /// [`Run::model_answered`] with a whole [`ChatResponse`].
    pub fn model_responded(&mut self, response: ChatResponse) -> Result<Vec<SettledCall>, RunError> {
        self.model_answered(response.message, response.stop_reason)
    }

    /// Reports the user's decision on the call `call_id`. A denial settles the call with an error
    /// result, returned so the driver can show it. (What an approval "for this session" or
    /// "always" remembers is the driver's to keep, in its [`crate::Permissions`].)
    pub fn approval(&mut self, call_id: &str, decision: Decision) -> Result<Option<SettledCall>, RunError> {
        let Phase::Tools { calls } = &mut self.phase else {
            return Err(self.unexpected("an approval"));
        };
        let Some(open) = calls.iter_mut().find(|c| c.call.id == call_id && c.state == CallState::Approval)
        else {
            return Err(RunError::UnknownCall(call_id.to_owned()));
        };
        let refused = match decision {
            Decision::Approve | Decision::ApproveForSession | Decision::ApproveAlways => None,
            Decision::Deny => Some("the user denied this call; do not retry it unless the user asks"),
            Decision::Unattended => Some(
                "it needs a person's approval and this agent runs unattended, with nobody to ask; do \
                 not retry it: tell the user it needs approval (an operator can allow the tool under \
                 [permissions])",
            ),
        };
        let settled = match refused {
            None => {
                open.state = CallState::Ready;
                None
            }
            Some(why) => {
                let result = denied(&open.call, why);
                open.state = CallState::Finished { result: result.clone() };
                Some(SettledCall { call: open.call.clone(), result })
            }
        };
        self.close_tools_if_settled();
        Ok(settled)
    }

    /// The calls of the last answer that are neither started nor settled (waiting for approval,
    /// or ready), with their tools' effects (`None` for a tool the run does not know), in call
    /// order: what a driver's hooks look at before anything runs ([`crate::Hook::before_tool`]).
    pub fn pending_calls(&self) -> impl Iterator<Item = (&ToolCall, Option<ToolEffect>)> {
        let calls = match &self.phase {
            Phase::Tools { calls } => calls.as_slice(),
            Phase::Model | Phase::Done { .. } => &[],
        };
        calls
            .iter()
            .filter(|c| matches!(c.state, CallState::Approval | CallState::Ready))
            .map(|c| (&c.call, c.effect))
    }

    /// Replaces the arguments a pending call (see [`Run::pending_calls`]) will run with; the
    /// approval request, the tool and a checkpoint see the new ones. The model's own message keeps
    /// what the model wrote.
    pub fn rewrite_call(&mut self, call_id: &str, arguments: serde_json::Value) -> Result<(), RunError> {
        let open = self.pending_mut(call_id, "a rewritten call")?;
        open.call.arguments = arguments;
        Ok(())
    }

    /// Settles a pending call (see [`Run::pending_calls`]) with `content` without running it: a
    /// hook answered it. Returned, so the driver can show it.
    pub fn answer_call(
        &mut self,
        call_id: &str,
        content: String,
        is_error: bool,
    ) -> Result<SettledCall, RunError> {
        let open = self.pending_mut(call_id, "an answered call")?;
        let result = ToolResult { call_id: open.call.id.clone(), content, is_error };
        open.state = CallState::Finished { result: result.clone() };
        let settled = SettledCall { call: open.call.clone(), result };
        self.close_tools_if_settled();
        Ok(settled)
    }

    /// Gives a pending call (see [`Run::pending_calls`]) a new permission, as decided again after
    /// a hook rewrote its arguments: it becomes ready, waits for approval, or is settled as
    /// denied (returned, so the driver can show it).
    pub fn reconsider(
        &mut self,
        call_id: &str,
        permission: Permission,
    ) -> Result<Option<SettledCall>, RunError> {
        let open = self.pending_mut(call_id, "a reconsidered call")?;
        let mut settled = Vec::new();
        open.permission = Some(permission);
        open.state = state_for(&open.call, permission, &mut settled);
        self.close_tools_if_settled();
        Ok(settled.pop())
    }

    fn pending_mut(&mut self, call_id: &str, got: &'static str) -> Result<&mut OpenCall, RunError> {
        if !matches!(self.phase, Phase::Tools { .. }) {
            return Err(self.unexpected(got));
        }
        let Phase::Tools { calls } = &mut self.phase else {
            return Err(RunError::UnknownCall(call_id.to_owned()));
        };
        calls
            .iter_mut()
            .find(|c| c.call.id == call_id && matches!(c.state, CallState::Approval | CallState::Ready))
            .ok_or_else(|| RunError::UnknownCall(call_id.to_owned()))
    }

    /// Reports that these ready calls started, so that a checkpoint taken while they run says so
    /// (see [`Run::recover_interrupted`]). Nothing changes when any id fails to match a ready call.
    pub fn tools_started<S: AsRef<str>>(&mut self, call_ids: &[S]) -> Result<(), RunError> {
        let Phase::Tools { calls } = &mut self.phase else {
            return Err(self.unexpected("started tools"));
        };
        let mut targets = Vec::with_capacity(call_ids.len());
        for id in call_ids {
            let id = id.as_ref();
            let slot = calls
                .iter()
                .enumerate()
                .position(|(i, c)| c.call.id == id && c.state == CallState::Ready && !targets.contains(&i));
            match slot {
                Some(i) => targets.push(i),
                None => return Err(RunError::UnknownCall(id.to_owned())),
            }
        }
        for i in targets {
            calls[i].state = CallState::Running;
        }
        Ok(())
    }

    /// Reports results of ready or running calls, in any order and any number at a time (one at a
    /// time as each finishes keeps the most in a checkpoint). When every call of the answer is
    /// settled, their results go into one tool message, in the order the model made the calls, and
    /// the next step is a model call. Nothing changes when any result fails to match an open call.
    pub fn tools_finished(&mut self, results: Vec<ToolResult>) -> Result<(), RunError> {
        let Phase::Tools { calls } = &mut self.phase else {
            return Err(self.unexpected("tool results"));
        };
        // Match every result before changing anything, so a bad batch leaves the run as it was.
        let mut targets = Vec::with_capacity(results.len());
        for result in &results {
            let slot = calls.iter().enumerate().position(|(i, c)| {
                c.call.id == result.call_id
                    && matches!(c.state, CallState::Ready | CallState::Running)
                    && !targets.contains(&i)
            });
            match slot {
                Some(i) => targets.push(i),
                None => return Err(RunError::UnknownCall(result.call_id.clone())),
            }
        }
        for (i, result) in targets.into_iter().zip(results) {
            calls[i].state = CallState::Finished { result };
        }
        self.close_tools_if_settled();
        Ok(())
    }

    /// Ends the turn as cancelled. `partial` is the assistant message streamed before the cancel,
    /// if any: its text is kept (without thinking or tool calls). Open tool calls are dropped, see
    /// the module docs. Does nothing when the turn is already over.
    pub fn cancel(&mut self, partial: Option<Message>) {
        self.end(TurnOutcome::Cancelled, partial);
    }

    /// Ends the turn as failed, dropping open tool calls. Does nothing when the turn is already
    /// over.
    pub fn fail(&mut self) {
        self.end(TurnOutcome::Failed, None);
    }

    /// Records one model call's usage, kept with the run so a resumed turn commits all of it.
    pub fn record_usage(&mut self, record: UsageRecord) {
        self.usage.push(record);
    }

    /// This turn's new messages so far: the input, then the assistant and tool messages. Always
    /// keeps the pairing invariant (see the module docs), except while tool calls are open.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The conversation before this turn; empty in a run deserialised and not yet given it back
    /// with [`Run::resume`].
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// The turn's fixed configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// How many model answers the turn has had.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Why the model stopped its last answer.
    pub fn last_stop_reason(&self) -> Option<&StopReason> {
        self.last_stop.as_ref()
    }

    /// The usage recorded so far, one record per model call.
    pub fn usage(&self) -> &[UsageRecord] {
        &self.usage
    }

    /// How the turn ended, once it has.
    pub fn outcome(&self) -> Option<TurnOutcome> {
        match self.phase {
            Phase::Done { outcome } => Some(outcome),
            Phase::Model | Phase::Tools { .. } => None,
        }
    }

    /// Whether the turn is over.
    pub fn is_done(&self) -> bool {
        self.outcome().is_some()
    }

    /// Rough size of the next request, in characters: the system prompt, every message's content
    /// and the tool specs. Used to estimate tokens when a provider does not report them.
    pub fn prompt_chars(&self) -> usize {
        let system = self.config.system.as_deref().map_or(0, |s| s.chars().count());
        let tools: usize = self
            .config
            .tools
            .iter()
            .map(|t| {
                t.spec.name.chars().count()
                    + t.spec.description.chars().count()
                    + t.spec.input_schema.to_string().len()
            })
            .sum();
        system + tools + self.history.iter().chain(&self.messages).map(message_chars).sum::<usize>()
    }

    /// Consumes the run: this turn's messages, its usage and its outcome (`None` if it is not over).
    pub fn into_parts(self) -> (Vec<Message>, Vec<UsageRecord>, Option<TurnOutcome>) {
        let outcome = self.outcome();
        (self.messages, self.usage, outcome)
    }

    fn end(&mut self, outcome: TurnOutcome, partial: Option<Message>) {
        if self.is_done() {
            return;
        }
        if matches!(self.phase, Phase::Tools { .. })
            && let Some(last) = self.messages.pop()
        {
            // The assistant message whose calls are open; its text may stay, its calls may not.
            if let Some(text) = text_only(last) {
                self.messages.push(text);
            }
        }
        if let Some(text) = partial.and_then(text_only) {
            self.messages.push(text);
        }
        self.phase = Phase::Done { outcome };
    }

    fn close_tools_if_settled(&mut self) {
        if let Phase::Tools { calls } = &self.phase
            && calls.iter().all(|c| matches!(c.state, CallState::Finished { .. }))
        {
            self.close_tools();
        }
    }

    /// Moves every settled result into one tool message, in call order, and goes back to the model.
    fn close_tools(&mut self) {
        let Phase::Tools { calls } = std::mem::replace(&mut self.phase, Phase::Model) else {
            return;
        };
        let results = calls.into_iter().map(|c| match c.state {
            CallState::Finished { result } => result,
            // Only a hand-edited stored run gets here; an answer keeps every call paired.
            CallState::Approval | CallState::Ready | CallState::Running => {
                ToolResult { call_id: c.call.id, content: "the call was not run".to_owned(), is_error: true }
            }
        });
        self.messages.push(Message::tool_results(results));
    }

    fn unexpected(&self, got: &'static str) -> RunError {
        let expected = match &self.phase {
            Phase::Model => "a model answer",
            Phase::Tools { calls } if calls.iter().any(|c| c.state == CallState::Approval) => "approvals",
            Phase::Tools { .. } => "tool results",
            Phase::Done { .. } => "nothing (the turn is over)",
        };
        RunError::UnexpectedInput { expected, got }
    }
}

/// Where a call of a known tool goes with `permission`; a denial is settled and added to `settled`.
fn state_for(call: &ToolCall, permission: Permission, settled: &mut Vec<SettledCall>) -> CallState {
    match permission {
        Permission::Allow => CallState::Ready,
        Permission::Ask => CallState::Approval,
        Permission::Deny => {
            let result = denied(
                call,
                "the user's permission settings do not allow this call; do not retry it, ask the user \
                 or find another way",
            );
            settled.push(SettledCall { call: call.clone(), result: result.clone() });
            CallState::Finished { result }
        }
    }
}

fn denied(call: &ToolCall, why: &str) -> ToolResult {
    ToolResult {
        call_id: call.id.clone(),
        content: format!("permission denied: `{}` was not run: {why}", call.name),
        is_error: true,
    }
}

/// The assistant message holding only `message`'s text parts, or `None` if it has no text.
fn text_only(mut message: Message) -> Option<Message> {
    message.parts.retain(|p| matches!(p, Part::Text { text } if !text.is_empty()));
    if message.parts.is_empty() {
        return None;
    }
    message.role = Role::Assistant;
    Some(message)
}

pub(crate) fn message_chars(message: &Message) -> usize {
    message
        .parts
        .iter()
        .map(|p| match p {
            Part::Text { text } | Part::Thinking { text, .. } => text.chars().count(),
            Part::ToolCall(call) => call.name.chars().count() + call.arguments.to_string().len(),
            Part::ToolResult(result) => result.content.chars().count(),
            // Vendors bill images by size, not by their encoding; a fixed guess will do.
            Part::Image { .. } => 4 * 1_000,
        })
        .sum()
}

/// Whether `messages` keep the pairing invariant: every tool call of an assistant message is
/// answered in the tool message(s) right after it, and every tool result answers such a call.
pub fn tool_calls_paired(messages: &[Message]) -> bool {
    let mut open: HashSet<&str> = HashSet::new();
    for message in messages {
        match message.role {
            Role::Tool => {
                for part in &message.parts {
                    if let Part::ToolResult(result) = part
                        && !open.remove(result.call_id.as_str())
                    {
                        return false;
                    }
                }
            }
            Role::Assistant | Role::User | Role::System => {
                if !open.is_empty() {
                    return false;
                }
                if message.role == Role::Assistant {
                    open.extend(message.tool_calls().map(|c| c.id.as_str()));
                }
            }
        }
    }
    open.is_empty()
}

#[cfg(test)]
mod tests;
