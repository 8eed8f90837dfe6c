//! Messages, usage records and keys for the scenarios.

use chrono::{DateTime, SubsecRound, Utc};
use exoclaw_core::{Run, RunConfig};
use exoclaw_types::{
    ImageSource, Message, MessageId, Part, Role, SessionId, SessionKey, StopReason, ToolCall, ToolResult,
    Usage, UsageRecord,
};
use serde_json::json;

/// Now, to the microsecond: the precision both databases keep.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A message stamped now (to the microsecond, so it compares equal after a round trip).
pub fn message(role: Role, parts: Vec<Part>) -> Message {
    Message { id: MessageId::new(), role, parts, created_at: now() }
}

/// A plain user + assistant turn.
pub fn turn(n: usize) -> Vec<Message> {
    vec![
        message(Role::User, vec![Part::text(format!("question {n}"))]),
        message(Role::Assistant, vec![Part::text(format!("answer {n}"))]),
    ]
}

/// A turn in progress, as the agent checkpoints it: `question` asked, the model's answer a tool
/// call (of a tool the run does not know, so it needs no approval) waiting for its result.
pub fn run(question: &str) -> Run {
    let mut config = RunConfig::new("claude-sonnet-4-5");
    config.system = Some("You are terse. Ünïcødé ✓".into());
    let mut run = Run::new(config, Vec::new(), message(Role::User, vec![Part::text(question)]));
    let answer = message(
        Role::Assistant,
        vec![
            Part::text("Let me look."),
            Part::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "read_file".into(),
                arguments: json!({"zeta": 1, "alpha": "src/lib.rs"}),
            }),
        ],
    );
    run.model_answered(answer, StopReason::ToolUse).unwrap();
    run.record_usage(usage(None, 1200, 80));
    run
}

/// A routing key.
pub fn key(peer: &str) -> SessionKey {
    SessionKey { agent: "main".into(), channel: "slack".into(), account: "T0123".into(), peer: peer.into() }
}

/// One model call's usage.
pub fn usage(session: Option<SessionId>, input: u64, output: u64) -> UsageRecord {
    UsageRecord {
        at: now(),
        session_id: session,
        agent: "main".into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        usage: Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            cache_read_tokens: Some(0),
            cache_write_tokens: None,
        },
        latency_ms: 1234,
        ttft_ms: Some(321),
        cost_usd: Some(0.004_5),
        estimated: false,
        purpose: exoclaw_types::CallPurpose::Answer,
    }
}

/// A turn that uses every kind of part, with awkward content: tool-call arguments whose keys are
/// not in alphabetical order, arguments that are not valid JSON, NUL and non-ASCII text.
pub fn every_part_kind() -> Vec<Message> {
    vec![
        message(Role::System, vec![Part::text("You are terse.")]),
        message(
            Role::User,
            vec![
                Part::text("What is in these pictures? Ünïcødé ✓ 🦀"),
                Part::Image {
                    source: ImageSource::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    },
                },
                Part::Image { source: ImageSource::Url { url: "https://example.com/cat.jpg".into() } },
            ],
        ),
        message(
            Role::Assistant,
            vec![
                Part::Thinking {
                    text: "The user wants a listing.".into(),
                    signature: Some("sig-Zm9v".into()),
                },
                Part::Thinking { text: "No signature here.".into(), signature: None },
                Part::text("Let me look."),
                Part::ToolCall(ToolCall {
                    id: "call_1".into(),
                    name: "list_files".into(),
                    arguments: json!({"zeta": 1, "alpha": {"nested": [1, 2.5, null, true]}, "mid": "x"}),
                }),
                Part::ToolCall(ToolCall {
                    id: "call_2".into(),
                    name: "read_file".into(),
                    arguments: json!("{\"path\": \"unterminated"),
                }),
            ],
        ),
        message(
            Role::Tool,
            vec![
                Part::ToolResult(ToolResult {
                    call_id: "call_1".into(),
                    content: "a.txt\nb\u{0}.bin\n".into(),
                    is_error: false,
                }),
                Part::ToolResult(ToolResult {
                    call_id: "call_2".into(),
                    content: "arguments are not valid JSON".into(),
                    is_error: true,
                }),
            ],
        ),
        message(Role::Assistant, vec![Part::text("Two files: a.txt and b.bin.")]),
    ]
}
