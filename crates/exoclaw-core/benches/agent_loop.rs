//! The agent loop's own overhead per turn, with a provider and a tool that answer instantly:
//! - `turn/plain_answer_50_deltas`: one model call streaming ~50 text deltas;
//! - `turn/one_tool_call_then_answer`: a model call that calls one tool, the tool, then a model
//!   call streaming ~50 text deltas.
//!
//! Everything the runner does is included (building requests, forwarding events, assembling
//! answers, permission checks, the tool's timeout, usage records, the run's bookkeeping), plus the
//! fake provider's cloning of its scripted events. Target: ≤ 100 µs per turn.
//!
//! And what a checkpoint costs the agent loop (the store's write comes on top):
//! - `checkpoint/serialize_mid_turn_10k_history`: serialising a run waiting for two tool results
//!   after a 10,000-message session, as [`exoclaw_core::Checkpoints::save`] is handed it. The
//!   history is not part of a checkpoint, so this must not grow with the session. Target: ≪ 1 ms.
//!
//! Run: `cargo bench -p exoclaw-core --bench agent_loop`.

#![allow(clippy::expect_used, missing_docs)] // a benchmark over fixed inputs; failing loudly is right

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_core::{
    AgentRunner, EventStream, PermissionPolicy, Provider, ProviderError, Tool, ToolContext, ToolError,
    ToolRegistry,
};
use exoclaw_types::{
    AgentEvent, ChatRequest, Message, Role, SessionId, StopReason, StreamEvent, ToolCall, ToolEffect,
    ToolSpec, Usage,
};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Words the synthetic answer is made of: short tokens, like a real model's.
const WORDS: [&str; 8] = ["The", " capital", " of", " France", " is", " Paris", ".", " Indeed"];

/// Answers at once: with a tool call when `call_tool` is set and the conversation does not end
/// with tool results yet, otherwise with ~50 text deltas.
#[derive(Debug)]
struct InstantProvider {
    answer: Vec<StreamEvent>,
    tool_call: Vec<StreamEvent>,
    call_tool: bool,
}

impl InstantProvider {
    fn new(call_tool: bool) -> Self {
        let usage =
            StreamEvent::Usage(Usage { input_tokens: Some(40), output_tokens: Some(50), ..Usage::default() });
        let mut answer: Vec<StreamEvent> =
            (0..50).map(|i| StreamEvent::TextDelta { text: WORDS[i % WORDS.len()].to_owned() }).collect();
        answer.push(usage.clone());
        answer.push(StreamEvent::Finish { reason: StopReason::EndTurn });
        let call = ToolCall { id: "call_1".into(), name: "echo".into(), arguments: json!({"text": "pong"}) };
        let tool_call = vec![
            StreamEvent::ToolCallStart { index: 0, id: call.id.clone(), name: call.name.clone() },
            StreamEvent::ToolCallArgsDelta { index: 0, fragment: call.arguments.to_string() },
            StreamEvent::ToolCall { index: 0, call },
            usage,
            StreamEvent::Finish { reason: StopReason::ToolUse },
        ];
        Self { answer, tool_call, call_tool }
    }
}

#[async_trait]
impl Provider for InstantProvider {
    fn name(&self) -> &str {
        "instant"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let after_tools = request.messages.last().is_some_and(|m| m.role == Role::Tool);
        let events = if self.call_tool && !after_tools { &self.tool_call } else { &self.answer };
        Ok(Box::pin(futures::stream::iter(events.clone().into_iter().map(Ok))))
    }
}

/// Returns its `text` argument at once.
struct Echo;

#[async_trait]
impl Tool for Echo {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "echo".into(),
            description: "Returns its text.".into(),
            input_schema: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        }
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        Ok(args["text"].as_str().unwrap_or_default().to_owned())
    }
}

fn runner(call_tool: bool) -> AgentRunner {
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(Echo));
    AgentRunner::new(Arc::new(InstantProvider::new(call_tool)), "instant-model", "instant/instant-model")
        .with_system("You are a helpful assistant.")
        .with_tools(tools)
        .with_permissions(
            PermissionPolicy::default(),
            Arc::new(exoclaw_core::FixedApprover(exoclaw_core::Decision::Deny)),
        )
}

fn bench_turns(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let cancel = CancellationToken::new();
    let sink = |event: AgentEvent| {
        black_box(event);
    };
    let mut group = c.benchmark_group("turn");
    for (name, call_tool) in [("plain_answer_50_deltas", false), ("one_tool_call_then_answer", true)] {
        let runner = runner(call_tool);
        // Check once that the scenario does what its name says.
        let result =
            rt.block_on(runner.run_turn(SessionId::new(), Vec::new(), Message::user("hi"), &cancel, &sink));
        assert_eq!(result.messages.len(), if call_tool { 4 } else { 2 }, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(runner.run_turn(
                    SessionId::new(),
                    Vec::new(),
                    Message::user("What is the capital of France?"),
                    &cancel,
                    &sink,
                ))
            });
        });
    }
    group.finish();
}

fn bench_checkpoint(c: &mut Criterion) {
    let history: Vec<Message> = (0..10_000)
        .map(|i| {
            if i % 2 == 0 {
                Message::user(format!("question {i}"))
            } else {
                Message::assistant(WORDS.concat())
            }
        })
        .collect();
    let mut run = runner(true).start(history, Message::user("What is the capital of France?"));
    run.next_step();
    let calls = ["call_1", "call_2"].map(|id| {
        exoclaw_types::Part::ToolCall(ToolCall {
            id: id.into(),
            name: "echo".into(),
            arguments: json!({"text": id}),
        })
    });
    run.model_answered(Message::new(Role::Assistant, calls.to_vec()), StopReason::ToolUse)
        .expect("the run takes the answer");
    run.tools_started(&["call_1", "call_2"]).expect("both calls are ready");
    let size = serde_json::to_vec(&run).expect("a run serialises").len();
    assert!(size < 4_096, "the checkpoint holds the history: {size} bytes");
    c.bench_function("checkpoint/serialize_mid_turn_10k_history", |b| {
        b.iter(|| serde_json::to_vec(black_box(&run)).expect("a run serialises"));
    });
}

criterion_group!(benches, bench_turns, bench_checkpoint);
criterion_main!(benches);
