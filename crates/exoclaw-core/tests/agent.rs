//! The agent loop end to end, against a provider that replays scripted answers and fake tools.
//!
//! Timing-sensitive tests (parallel tools, timeouts) run on tokio's paused clock: time only moves
//! when every task waits, so "two 1 s tools took 1 s" is a deterministic fact, not a wall-clock race.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw_core::{
    AgentRunner, ApprovalRequest, Approver, BudgetScope, BudgetSpec, BudgetWindow, Budgets, CallScope,
    Decision, ErrorKind, EventSink, EventStream, Limits, Metering, Permission, PermissionPolicy, Price,
    PriceTable, Provider, ProviderError, Step, SystemClock, Tool, ToolContext, ToolError, ToolRegistry,
    tool_calls_paired,
};
use exoclaw_types::{
    AgentEvent, ChatRequest, GenerationParams, Message, Part, Role, SessionId, StopReason, StreamEvent,
    ToolCall, ToolEffect, ToolResult, ToolSpec, TurnOutcome, Usage,
};
use futures::stream;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// The scripted provider

/// What the provider does on one call.
#[derive(Debug)]
enum Script {
    /// Streams these events and ends.
    Answer(Vec<StreamEvent>),
    /// Fails before the first event.
    Refuse(ProviderError),
    /// Streams these events, then fails.
    Break(Vec<StreamEvent>, ProviderError),
    /// Streams these events, then never ends.
    Hang(Vec<StreamEvent>),
}

/// Replays one [`Script`] per call, in order, and keeps every request it was sent.
#[derive(Debug, Default)]
struct FakeProvider {
    scripts: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl FakeProvider {
    fn new(scripts: impl IntoIterator<Item = Script>) -> Arc<Self> {
        Arc::new(Self { scripts: Mutex::new(scripts.into_iter().collect()), requests: Mutex::default() })
    }

    fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.requests.lock().unwrap().push(request);
        let script = self.scripts.lock().unwrap().pop_front();
        let ok = |events: Vec<StreamEvent>| stream::iter(events.into_iter().map(Ok));
        match script {
            None => Err(ProviderError::new(ErrorKind::InvalidRequest, "fake", "no more scripted answers")),
            Some(Script::Answer(events)) => Ok(Box::pin(ok(events))),
            Some(Script::Refuse(err)) => Err(err),
            Some(Script::Break(events, err)) => {
                Ok(Box::pin(futures::StreamExt::chain(ok(events), stream::iter([Err(err)]))))
            }
            Some(Script::Hang(events)) => {
                Ok(Box::pin(futures::StreamExt::chain(ok(events), stream::pending())))
            }
        }
    }
}

fn reported() -> Usage {
    Usage { input_tokens: Some(12), output_tokens: Some(7), ..Usage::default() }
}

/// A text answer streamed a word at a time, with usage.
fn text(answer: &str) -> Vec<StreamEvent> {
    let mut events: Vec<StreamEvent> =
        answer.split_inclusive(' ').map(|w| StreamEvent::TextDelta { text: w.to_owned() }).collect();
    events.push(StreamEvent::Usage(reported()));
    events.push(StreamEvent::Finish { reason: StopReason::EndTurn });
    events
}

/// An answer that calls tools, as `(id, name, arguments)`.
fn calls(calls: &[(&str, &str, Value)]) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    for (index, (id, name, arguments)) in (0u32..).zip(calls) {
        events.push(StreamEvent::ToolCallStart { index, id: (*id).into(), name: (*name).into() });
        events.push(StreamEvent::ToolCallArgsDelta { index, fragment: arguments.to_string() });
        events.push(StreamEvent::ToolCall {
            index,
            call: ToolCall { id: (*id).into(), name: (*name).into(), arguments: arguments.clone() },
        });
    }
    events.push(StreamEvent::Usage(reported()));
    events.push(StreamEvent::Finish { reason: StopReason::ToolUse });
    events
}

// ---------------------------------------------------------------------------------------------
// Fake tools

fn spec(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("the {name} tool"),
        input_schema: json!({"type": "object"}),
    }
}

/// Returns its `text` argument.
struct Echo;

#[async_trait]
impl Tool for Echo {
    fn spec(&self) -> ToolSpec {
        spec("echo")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        Ok(args["text"].as_str().unwrap_or_default().to_owned())
    }
}

/// Always fails.
struct Failing;

#[async_trait]
impl Tool for Failing {
    fn spec(&self) -> ToolSpec {
        spec("fail")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        Err(ToolError::Failed("disk on fire".into()))
    }
}

/// Never finishes; says when it started, and leaves a watcher that notes when its token is
/// cancelled (what a tool that started a process would do to clean up).
#[derive(Default)]
struct Hanging {
    started: Notify,
    cleaned_up: Arc<AtomicBool>,
}

#[async_trait]
impl Tool for Hanging {
    fn spec(&self) -> ToolSpec {
        spec("hang")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, _args: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        let token = ctx.cancel.clone();
        let cleaned_up = self.cleaned_up.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            cleaned_up.store(true, Ordering::SeqCst);
        });
        self.started.notify_one();
        std::future::pending().await
    }
}

/// Sleeps for its `ms` argument, then answers.
struct Slow;

#[async_trait]
impl Tool for Slow {
    fn spec(&self) -> ToolSpec {
        spec("slow")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let ms = args["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(format!("slept {ms} ms"))
    }
}

/// A mutating tool that counts its runs.
#[derive(Default)]
struct Write {
    runs: AtomicUsize,
}

#[async_trait]
impl Tool for Write {
    fn spec(&self) -> ToolSpec {
        spec("write")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }
    async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok("written".into())
    }
}

/// Gives a fixed answer and remembers what it was asked.
struct Recording {
    decision: Decision,
    asked: Mutex<Vec<ApprovalRequest>>,
}

#[async_trait]
impl Approver for Recording {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        self.asked.lock().unwrap().push(request.clone());
        self.decision
    }
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Harness {
    provider: Arc<FakeProvider>,
    runner: AgentRunner,
    write: Arc<Write>,
    hanging: Arc<Hanging>,
}

fn harness(scripts: impl IntoIterator<Item = Script>) -> Harness {
    let provider = FakeProvider::new(scripts);
    let write = Arc::new(Write::default());
    let hanging = Arc::new(Hanging::default());
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(Echo));
    tools.register(Arc::new(Failing));
    tools.register(Arc::new(Slow));
    tools.register(write.clone());
    tools.register(hanging.clone());
    let runner = AgentRunner::new(provider.clone(), "fake-model", "fake/fake-model")
        .with_agent("tester")
        .with_system("You are a test.")
        .with_tools(tools)
        .with_limits(Limits { max_iterations: 5, tool_timeout: Duration::from_secs(5) });
    Harness { provider, runner, write, hanging }
}

/// Which events trip a [`Recorder`]'s cancellation.
type Trigger = fn(&AgentEvent) -> bool;

/// Collects events; optionally cancels a token on the first event its trigger accepts.
struct Recorder {
    events: Mutex<Vec<AgentEvent>>,
    cancel_on: Option<(Trigger, CancellationToken)>,
}

impl Recorder {
    fn new() -> Self {
        Self { events: Mutex::default(), cancel_on: None }
    }

    fn events(&self) -> Vec<AgentEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl EventSink for Recorder {
    fn emit(&self, event: AgentEvent) {
        if let Some((trigger, token)) = &self.cancel_on
            && trigger(&event)
        {
            token.cancel();
        }
        self.events.lock().unwrap().push(event);
    }
}

struct Outcome {
    result: exoclaw_core::TurnResult,
    events: Vec<AgentEvent>,
}

/// One event as a short label, for order assertions.
fn label(event: &AgentEvent) -> String {
    match event {
        AgentEvent::TurnStarted { model, .. } => format!("started {model}"),
        AgentEvent::Text { text } => format!("text {text}"),
        AgentEvent::Thinking { text } => format!("thinking {text}"),
        AgentEvent::ToolUse { call } => format!("tool_use {} {}", call.id, call.name),
        AgentEvent::ApprovalNeeded { call, .. } => format!("approval {}", call.id),
        AgentEvent::ToolResult { call_id, is_error, .. } => {
            format!("result {call_id}{}", if *is_error { " error" } else { "" })
        }
        AgentEvent::Usage { .. } => "usage".to_owned(),
        AgentEvent::Warning { message } => format!("warning {message}"),
        AgentEvent::Error { code, .. } => format!("error {code}"),
        AgentEvent::Done { outcome, .. } => format!("done {outcome:?}"),
    }
}

impl Outcome {
    /// The events, one short label each, for order assertions.
    fn labels(&self) -> Vec<String> {
        self.events.iter().map(label).collect()
    }

    fn error(&self) -> Option<(String, String)> {
        self.events.iter().find_map(|e| match e {
            AgentEvent::Error { code, message } => Some((code.to_string(), message.clone())),
            _ => None,
        })
    }

    fn roles(&self) -> Vec<Role> {
        self.result.messages.iter().map(|m| m.role).collect()
    }
}

/// Runs one turn and checks what every turn must do: `TurnStarted` first, `Done` last and once,
/// with the outcome the result reports; the user's message first; tool calls and results paired.
async fn turn_with(h: &Harness, input: &str, cancel: &CancellationToken, recorder: &Recorder) -> Outcome {
    let history = vec![Message::user("earlier"), Message::assistant("noted")];
    let result = h.runner.run_turn(SessionId::new(), history, Message::user(input), cancel, recorder).await;
    checked(result, recorder, input)
}

/// What every turn must do (see [`turn_with`]), checked on a finished one.
fn checked(result: exoclaw_core::TurnResult, recorder: &Recorder, input: &str) -> Outcome {
    let events = recorder.events();
    assert!(matches!(events.first(), Some(AgentEvent::TurnStarted { .. })), "{events:#?}");
    assert!(
        matches!(events.last(), Some(AgentEvent::Done { outcome, .. }) if *outcome == result.outcome),
        "{events:#?}"
    );
    assert_eq!(events.iter().filter(|e| matches!(e, AgentEvent::Done { .. })).count(), 1);
    assert_eq!(events.iter().filter(|e| matches!(e, AgentEvent::TurnStarted { .. })).count(), 1);
    assert_eq!(result.messages[0].text(), input);
    assert!(tool_calls_paired(&result.messages), "{:#?}", result.messages);
    Outcome { result, events }
}

async fn turn(h: &Harness, input: &str) -> Outcome {
    turn_with(h, input, &CancellationToken::new(), &Recorder::new()).await
}

/// The tool results the model was sent in request `n`, as `(call_id, content, is_error)`.
fn results_sent(h: &Harness, n: usize) -> Vec<ToolResult> {
    let request = &h.provider.requests()[n];
    let last = request.messages.last().unwrap();
    assert_eq!(last.role, Role::Tool);
    last.parts
        .iter()
        .map(|p| match p {
            Part::ToolResult(r) => r.clone(),
            other => panic!("not a tool result: {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_one_shot_answer_streams_text_and_completes() {
    let h = harness([Script::Answer(text("Paris is the capital."))]);
    let out = turn(&h, "capital of France?").await;
    assert_eq!(
        out.labels(),
        vec![
            "started fake/fake-model",
            "text Paris ",
            "text is ",
            "text the ",
            "text capital.",
            "usage",
            "done Completed"
        ]
    );
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant]);
    assert_eq!(out.result.messages[1].text(), "Paris is the capital.");

    let requests = h.provider.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].system.as_deref(), Some("You are a test."));
    assert_eq!(requests[0].messages.len(), 3, "history and the new user message");
    assert_eq!(requests[0].tools.len(), 5);

    let [usage] = out.result.usage.as_slice() else { panic!("{:?}", out.result.usage) };
    assert_eq!(usage.usage, reported());
    assert!(!usage.estimated);
    assert_eq!(
        (usage.provider.as_str(), usage.model.as_str(), usage.agent.as_str()),
        ("fake", "fake-model", "tester")
    );
    assert!(usage.ttft_ms.is_some());
    assert!(usage.ttft_ms <= Some(usage.latency_ms));
}

#[tokio::test]
async fn a_tool_call_runs_and_its_result_goes_back_to_the_model() {
    let h = harness([
        Script::Answer(calls(&[("c1", "echo", json!({"text": "pong"}))])),
        Script::Answer(text("It said pong.")),
    ]);
    let out = turn(&h, "ping it").await;
    assert_eq!(
        out.labels(),
        vec![
            "started fake/fake-model",
            "tool_use c1 echo",
            "usage",
            "result c1",
            "text It ",
            "text said ",
            "text pong.",
            "usage",
            "done Completed"
        ]
    );
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]);
    assert_eq!(
        results_sent(&h, 1),
        vec![ToolResult { call_id: "c1".into(), content: "pong".into(), is_error: false }]
    );
    assert_eq!(out.result.usage.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn parallel_tool_calls_run_at_once_and_report_in_call_order() {
    let h = harness([
        Script::Answer(calls(&[("a", "slow", json!({"ms": 2000})), ("b", "slow", json!({"ms": 1000}))])),
        Script::Answer(text("both done")),
    ]);
    let start = tokio::time::Instant::now();
    let out = turn(&h, "sleep twice").await;
    // On the paused clock: run one after the other they would take 3 s.
    assert!(start.elapsed() < Duration::from_millis(3000), "took {:?}", start.elapsed());
    // The quicker call reports first; the model still gets the results in call order.
    let results: Vec<String> = out.labels().into_iter().filter(|l| l.starts_with("result")).collect();
    assert_eq!(results, vec!["result b", "result a"]);
    let sent = results_sent(&h, 1);
    assert_eq!(sent.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(sent[0].content, "slept 2000 ms");
    let durations: Vec<u64> = out
        .events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .collect();
    assert_eq!(durations, vec![1000, 2000]);
}

#[tokio::test]
async fn a_failing_tool_shows_the_model_its_error() {
    let h = harness([Script::Answer(calls(&[("f", "fail", json!({}))])), Script::Answer(text("Sorry."))]);
    let out = turn(&h, "try it").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    assert_eq!(
        results_sent(&h, 1),
        vec![ToolResult { call_id: "f".into(), content: "disk on fire".into(), is_error: true }]
    );
    assert!(out.labels().contains(&"result f error".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_tool_times_out_and_its_token_is_cancelled() {
    let h = harness([Script::Answer(calls(&[("h", "hang", json!({}))])), Script::Answer(text("It hung."))]);
    let out = turn(&h, "hang").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    let sent = results_sent(&h, 1);
    assert_eq!(sent[0].content, "timed out after 5s");
    assert!(sent[0].is_error);
    // The tool's watcher saw its token cancelled, so it could clean up.
    let cleaned = tokio::time::timeout(Duration::from_secs(1), async {
        while !h.hanging.cleaned_up.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(cleaned.is_ok(), "the tool's token was not cancelled");
}

#[tokio::test]
async fn an_unknown_tool_is_answered_with_the_tools_that_exist() {
    let h = harness([Script::Answer(calls(&[("u", "nope", json!({}))])), Script::Answer(text("Oops."))]);
    let out = turn(&h, "call nope").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    let sent = results_sent(&h, 1);
    assert!(sent[0].is_error);
    assert_eq!(
        sent[0].content,
        "unknown tool `nope`; the available tools are: `echo`, `fail`, `hang`, `slow`, `write`"
    );
}

#[tokio::test]
async fn the_iteration_limit_stops_a_model_that_keeps_calling_tools() {
    let scripts =
        (0..5).map(|i| Script::Answer(calls(&[(&format!("c{i}"), "echo", json!({"text": "again"}))])));
    let h = harness(scripts);
    let out = turn(&h, "loop forever").await;
    assert_eq!(out.result.outcome, TurnOutcome::MaxIterations);
    assert_eq!(h.provider.requests().len(), 5);
    let (code, message) = out.error().unwrap();
    assert_eq!(code, "max_iterations");
    assert!(message.contains("after 5 model calls") && message.contains("`max_iterations`"), "{message}");
    let labels = out.labels();
    assert_eq!(&labels[labels.len() - 2..], ["error max_iterations", "done MaxIterations"]);
    assert_eq!(out.result.messages.len(), 1 + 5 * 2);
    assert_eq!(out.result.usage.len(), 5);
}

#[tokio::test]
async fn cancelling_during_the_stream_stops_it_and_keeps_the_partial_text() {
    let h = harness([Script::Hang(vec![
        StreamEvent::TextDelta { text: "The answer ".into() },
        StreamEvent::ToolCallStart { index: 0, id: "x".into(), name: "echo".into() },
    ])]);
    let cancel = CancellationToken::new();
    let recorder = Recorder {
        cancel_on: Some((|e| matches!(e, AgentEvent::Text { .. }), cancel.clone())),
        ..Recorder::new()
    };
    let out = turn_with(&h, "answer slowly", &cancel, &recorder).await;
    assert_eq!(out.result.outcome, TurnOutcome::Cancelled);
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant]);
    assert_eq!(out.result.messages[1].parts, vec![Part::text("The answer ")]);
    let [usage] = out.result.usage.as_slice() else { panic!("{:?}", out.result.usage) };
    assert!(usage.estimated);
    assert_eq!(out.error(), None);
}

#[tokio::test]
async fn cancelling_during_a_tool_stops_it_and_drops_the_open_calls() {
    let h = harness([Script::Answer({
        let mut events = vec![StreamEvent::TextDelta { text: "Working on it.".into() }];
        events.extend(calls(&[("h", "hang", json!({})), ("e", "echo", json!({"text": "hi"}))]));
        events
    })]);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let hanging = h.hanging.clone();
    tokio::spawn(async move {
        hanging.started.notified().await;
        trigger.cancel();
    });
    let out = turn_with(&h, "hang", &cancel, &Recorder::new()).await;
    assert_eq!(out.result.outcome, TurnOutcome::Cancelled);
    // The assistant's text stays; its calls, answered or not, go.
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant]);
    assert_eq!(out.result.messages[1].parts, vec![Part::text("Working on it.")]);
    assert_eq!(h.provider.requests().len(), 1);
    let cleaned = tokio::time::timeout(Duration::from_secs(5), async {
        while !h.hanging.cleaned_up.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(cleaned.is_ok(), "the tool's token was not cancelled");
}

#[tokio::test]
async fn a_turn_cancelled_before_it_starts_calls_nothing() {
    let h = harness([Script::Answer(text("never"))]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = turn_with(&h, "hi", &cancel, &Recorder::new()).await;
    assert_eq!(out.labels(), vec!["started fake/fake-model", "done Cancelled"]);
    assert_eq!(out.roles(), vec![Role::User]);
    assert!(h.provider.requests().is_empty());
}

#[tokio::test]
async fn a_denied_tool_never_runs_and_the_model_is_told() {
    let h = harness([Script::Answer(calls(&[("w", "write", json!({}))])), Script::Answer(text("OK."))]);
    let runner = h.runner.clone().with_permissions(
        PermissionPolicy::default().with_tool("write", Permission::Deny).with_auto_approve(true),
        Arc::new(exoclaw_core::FixedApprover(Decision::Approve)),
    );
    let h = Harness { runner, ..h };
    let out = turn(&h, "write it").await;
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 0);
    assert!(!out.labels().iter().any(|l| l.starts_with("approval")));
    assert!(out.labels().contains(&"result w error".to_owned()));
    let sent = results_sent(&h, 1);
    assert!(sent[0].is_error && sent[0].content.contains("permission denied"), "{:?}", sent[0]);
}

async fn with_approver(decision: Decision) -> (Harness, Outcome, Arc<Recording>) {
    let h = harness([
        Script::Answer(calls(&[("w", "write", json!({"path": "a"}))])),
        Script::Answer(text("OK.")),
    ]);
    let approver = Arc::new(Recording { decision, asked: Mutex::default() });
    let runner = h.runner.clone().with_permissions(PermissionPolicy::default(), approver.clone());
    let h = Harness { runner, ..h };
    let out = turn(&h, "write it").await;
    (h, out, approver)
}

#[tokio::test]
async fn ask_runs_the_tool_when_the_user_approves() {
    let (h, out, approver) = with_approver(Decision::Approve).await;
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 1);
    let asked = approver.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].call.id.as_str(), asked[0].effect), ("w", ToolEffect::Mutating));
    assert_eq!(
        out.labels()[..5],
        ["started fake/fake-model", "tool_use w write", "usage", "approval w", "result w"]
    );
    assert_eq!(results_sent(&h, 1)[0].content, "written");
    assert!(out.events.iter().any(|e| matches!(e,
        AgentEvent::ApprovalNeeded { effect: ToolEffect::Mutating, call } if call.arguments == json!({"path": "a"}))));
}

#[tokio::test]
async fn ask_skips_the_tool_when_the_user_denies() {
    let (h, out, _) = with_approver(Decision::Deny).await;
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 0);
    assert!(out.labels().contains(&"result w error".to_owned()));
    let sent = results_sent(&h, 1);
    assert!(sent[0].is_error && sent[0].content.contains("the user denied"), "{:?}", sent[0]);
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
}

#[tokio::test]
async fn auto_approve_runs_mutating_tools_without_asking() {
    let h = harness([Script::Answer(calls(&[("w", "write", json!({}))])), Script::Answer(text("OK."))]);
    let approver = Arc::new(Recording { decision: Decision::Deny, asked: Mutex::default() });
    let runner = h
        .runner
        .clone()
        .with_permissions(PermissionPolicy::default().with_auto_approve(true), approver.clone());
    let h = Harness { runner, ..h };
    let out = turn(&h, "write it").await;
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 1);
    assert!(approver.asked.lock().unwrap().is_empty());
    assert!(!out.labels().iter().any(|l| l.starts_with("approval")));
}

#[tokio::test]
async fn a_provider_error_before_the_first_token_fails_the_turn() {
    let err = ProviderError::new(ErrorKind::Auth, "fake", "invalid x-api-key").with_status(401);
    let h = harness([Script::Refuse(err.clone())]);
    let out = turn(&h, "hi").await;
    assert_eq!(out.labels(), vec!["started fake/fake-model", "error auth", "done Failed"]);
    assert_eq!(out.error(), Some(("auth".to_owned(), err.to_string())));
    assert!(out.error().unwrap().1.contains("invalid x-api-key"));
    assert_eq!(out.roles(), vec![Role::User]);
    assert!(out.result.usage.is_empty());
}

#[tokio::test]
async fn a_stream_that_breaks_midway_fails_the_turn_and_drops_the_partial_answer() {
    let h = harness([Script::Break(
        vec![StreamEvent::TextDelta { text: "Half an ans".into() }],
        ProviderError::new(ErrorKind::Connect, "fake", "connection reset"),
    )]);
    let out = turn(&h, "hi").await;
    assert_eq!(
        out.labels(),
        vec!["started fake/fake-model", "text Half an ans", "usage", "error connect", "done Failed"]
    );
    assert_eq!(out.roles(), vec![Role::User]);
    assert_eq!(out.result.usage.len(), 1);
}

#[tokio::test]
async fn a_stream_without_a_finish_event_is_a_protocol_failure() {
    let h = harness([Script::Answer(vec![StreamEvent::TextDelta { text: "cut".into() }])]);
    let out = turn(&h, "hi").await;
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(out.error().unwrap().0, "protocol");
}

#[tokio::test]
async fn a_failure_after_a_tool_exchange_keeps_the_completed_exchange() {
    let h = harness([
        Script::Answer(calls(&[("c1", "echo", json!({"text": "x"}))])),
        Script::Refuse(ProviderError::new(ErrorKind::Overloaded, "fake", "busy")),
    ]);
    let out = turn(&h, "go").await;
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant, Role::Tool]);
    assert_eq!(out.error().unwrap().0, "overloaded");
}

#[tokio::test]
async fn unreported_usage_is_estimated_and_marked() {
    let h = harness([Script::Answer(vec![
        StreamEvent::TextDelta { text: "a".repeat(400) },
        StreamEvent::Finish { reason: StopReason::EndTurn },
    ])]);
    let out = turn(&h, "hi").await;
    let [record] = out.result.usage.as_slice() else { panic!() };
    assert!(record.estimated);
    assert_eq!(record.usage.output_tokens, Some(100));
    assert!(record.usage.input_tokens.unwrap() > 0);
    // The event carries only what the provider said.
    assert!(out.events.contains(&AgentEvent::Usage { usage: Usage::default() }));
}

#[tokio::test]
async fn a_run_persisted_mid_turn_resumes_with_the_runner() {
    let h = harness([Script::Answer(text("Resumed fine."))]);
    let mut run = h.runner.start(vec![], Message::user("resume me"));
    assert!(matches!(run.next_step(), Step::CallModel(_)));
    let assistant = Message::new(
        Role::Assistant,
        vec![Part::ToolCall(ToolCall {
            id: "c1".into(),
            name: "echo".into(),
            arguments: json!({"text": "hi"}),
        })],
    );
    run.model_answered(assistant, StopReason::ToolUse).unwrap();
    let stored = serde_json::to_string(&run).unwrap();

    let restored: exoclaw_core::Run = serde_json::from_str(&stored).unwrap();
    let recorder = Recorder::new();
    let result = h.runner.drive(restored, SessionId::new(), &CancellationToken::new(), &recorder).await;
    assert_eq!(result.outcome, TurnOutcome::Completed);
    let roles: Vec<Role> = result.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]);
    assert_eq!(results_sent(&h, 0)[0].content, "hi");
    assert!(tool_calls_paired(&result.messages));
}

#[tokio::test]
async fn a_turn_can_be_spawned_and_report_through_a_channel() {
    let h = harness([
        Script::Answer(calls(&[("c1", "echo", json!({"text": "x"}))])),
        Script::Answer(text("done")),
    ]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = h.runner.clone();
    // Spawning proves the turn's future is `Send`, as the gateway needs.
    let task = tokio::spawn(async move {
        let cancel = CancellationToken::new();
        runner.run_turn(SessionId::new(), vec![], Message::user("hi"), &cancel, &tx).await
    });
    let result = task.await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        events.last(),
        Some(&AgentEvent::Done { outcome: TurnOutcome::Completed, stop_reason: Some(StopReason::EndTurn) })
    );
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ToolResult { name, .. } if name == "echo")));
}

// ---------------------------------------------------------------------------------------------
// Metering

/// `fake/fake-model` at $3 in and $15 out per million tokens, and these budgets.
fn metered(budgets: Vec<BudgetSpec>) -> Arc<Metering> {
    let mut prices = PriceTable::shipped();
    prices.set("fake/fake-model", Price::new(3.0, 15.0));
    Arc::new(Metering::new(prices, Budgets::new(budgets, Arc::new(SystemClock))))
}

fn global_tokens(max: u64) -> BudgetSpec {
    BudgetSpec {
        name: "cap".into(),
        scope: BudgetScope::Global,
        window: BudgetWindow::Daily,
        max_tokens: Some(max),
        max_usd: None,
    }
}

/// (spent, held) tokens of the budgets `agent` falls under.
fn budget_spend(metering: &Metering) -> (u64, u64) {
    let status = metering.budgets.status(&CallScope { session: None, agent: "tester" });
    (status[0].spent_tokens, status[0].held_tokens)
}

#[tokio::test]
async fn every_usage_record_is_costed_from_the_price_table() {
    let h = harness([Script::Answer(text("Priced."))]);
    let runner = h.runner.clone().with_metering(metered(Vec::new()));
    let out = turn(&Harness { runner, ..h }, "what does it cost?").await;
    let [record] = out.result.usage.as_slice() else { panic!("{:?}", out.result.usage) };
    // 12 prompt tokens at $3/M and 7 answer tokens at $15/M.
    let cost = record.cost_usd.unwrap();
    assert!((cost - (12.0 * 3.0 + 7.0 * 15.0) / 1e6).abs() < 1e-12, "{cost}");

    // Without metering configured, the shipped prices apply: they know no `fake` provider.
    let h = harness([Script::Answer(text("Unpriced."))]);
    let out = turn(&h, "and now?").await;
    assert_eq!(out.result.usage[0].cost_usd, None);
}

#[tokio::test]
async fn a_spent_budget_refuses_the_call_before_the_provider_is_asked() {
    let h = harness([Script::Answer(text("Never sent."))]);
    let metering = metered(vec![global_tokens(10)]);
    let runner = h.runner.clone().with_metering(metering.clone());
    let h = Harness { runner, ..h };
    let out = turn(&h, "hi").await;
    assert!(h.provider.requests().is_empty(), "the provider was called");
    assert_eq!(out.labels(), vec!["started fake/fake-model", "error budget_exceeded", "done Failed"]);
    let (_, message) = out.error().unwrap();
    assert!(
        message.starts_with("fake/fake-model was not called: budget `cap` (all agents together, daily) would be exceeded: 0 tokens of 10 tokens spent today (UTC)"),
        "{message}"
    );
    assert!(
        message
            .contains("raise `max_tokens` of this budget in config.toml, or wait for the window to reset at")
    );
    assert_eq!(out.roles(), vec![Role::User]);
    assert!(out.result.usage.is_empty());
    assert_eq!(budget_spend(&metering), (0, 0));
}

#[tokio::test]
async fn each_call_is_settled_with_its_usage_and_a_turn_stops_when_the_budget_runs_out() {
    let h = harness([
        Script::Answer(calls(&[("c1", "echo", json!({"text": "x"}))])),
        Script::Answer(text("Never sent.")),
    ]);
    let max_tokens = 100;
    let runner =
        h.runner.clone().with_params(GenerationParams { max_tokens: Some(max_tokens), ..Default::default() });
    // Room for the first call's estimate (its prompt at four characters a token, plus
    // `max_tokens`) and a little more: not for the second, whose prompt is longer.
    let history = vec![Message::user("earlier"), Message::assistant("noted")];
    let first_estimate = runner.start(history, Message::user("go")).prompt_chars().div_ceil(4) as u64 + 100;
    let metering = metered(vec![global_tokens(first_estimate + 5)]);
    let h = Harness { runner: runner.with_metering(metering.clone()), ..h };
    let out = turn(&h, "go").await;

    assert_eq!(h.provider.requests().len(), 1);
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(out.error().unwrap().0, "budget_exceeded");
    // The finished exchange is kept, calls paired with results.
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant, Role::Tool]);
    // The first call was charged what it used (12 + 7), not what it reserved; nothing is held.
    assert_eq!(budget_spend(&metering), (19, 0));
    assert_eq!(out.result.usage.len(), 1);
}

#[tokio::test]
async fn a_cancelled_call_is_charged_what_it_streamed_and_holds_nothing() {
    let h = harness([Script::Hang(vec![StreamEvent::TextDelta { text: "a".repeat(40) }])]);
    let metering = metered(vec![global_tokens(1_000_000)]);
    let h = Harness { runner: h.runner.clone().with_metering(metering.clone()), ..h };
    let cancel = CancellationToken::new();
    let recorder = Recorder {
        cancel_on: Some((|e| matches!(e, AgentEvent::Text { .. }), cancel.clone())),
        ..Recorder::new()
    };
    let out = turn_with(&h, "answer slowly", &cancel, &recorder).await;
    assert_eq!(out.result.outcome, TurnOutcome::Cancelled);
    let [record] = out.result.usage.as_slice() else { panic!("{:?}", out.result.usage) };
    assert!(record.estimated);
    let tokens = record.usage.input_tokens.unwrap() + record.usage.output_tokens.unwrap();
    assert_eq!(record.usage.output_tokens, Some(10), "40 characters streamed");
    assert_eq!(budget_spend(&metering), (tokens, 0));
    assert!(record.cost_usd.unwrap() > 0.0);

    // A call cancelled before it began holds nothing and is charged nothing.
    let h = harness([Script::Answer(text("late"))]);
    let metering = metered(vec![global_tokens(1_000_000)]);
    let h = Harness { runner: h.runner.clone().with_metering(metering.clone()), ..h };
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = turn_with(&h, "never mind", &cancel, &Recorder::new()).await;
    assert_eq!(out.result.outcome, TurnOutcome::Cancelled);
    assert_eq!(budget_spend(&metering), (0, 0));
}

#[tokio::test]
async fn a_dollar_budget_prices_a_routed_call_as_its_primary_target_and_refuses_an_unpriced_one() {
    let usd_budget = BudgetSpec { max_tokens: None, max_usd: Some(1.0), ..global_tokens(0) };
    let mut prices = PriceTable::empty();
    prices.set("primary/big-model", Price::new(1.0, 1.0));
    let metering = Arc::new(Metering::new(prices, Budgets::new(vec![usd_budget], Arc::new(SystemClock))));
    // A router's own name has no price; the display name shows where it sends the call.
    let provider = FakeProvider::new([Script::Answer(text("Routed."))]);
    let runner = AgentRunner::new(provider.clone(), "fake-model", "primary/big-model")
        .with_agent("tester")
        .with_metering(metering.clone());
    let h = Harness { provider, runner, write: Arc::default(), hanging: Arc::default() };
    let out = turn(&h, "hi").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    // What it cost is priced by the record (`fake/fake-model`), which has no price here.
    assert_eq!(out.result.usage[0].cost_usd, None);

    let provider = FakeProvider::new([Script::Answer(text("Never sent."))]);
    let runner =
        AgentRunner::new(provider.clone(), "fake-model", "unknown/model").with_metering(metering.clone());
    let h = Harness { provider, runner, write: Arc::default(), hanging: Arc::default() };
    let out = turn(&h, "hi").await;
    assert!(h.provider.requests().is_empty());
    let (code, message) = out.error().unwrap();
    assert_eq!(code, "budget_unpriced");
    assert!(
        message.starts_with("unknown/model was not called: budget `cap` caps spending in US dollars"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Checkpoints, hooks and monitors

#[path = "agent/abort.rs"]
mod abort;
#[path = "agent/checkpoints.rs"]
mod checkpoints;
#[path = "agent/hooks.rs"]
mod hooks;
#[path = "agent/payer.rs"]
mod payer;
#[path = "agent/permissions.rs"]
mod permissions;
