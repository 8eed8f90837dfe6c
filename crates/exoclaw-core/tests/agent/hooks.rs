//! Hooks change what a turn does; monitors watch it.

use super::*;
use exoclaw_core::{
    DenyToolsHook, Hook, HookContext, ModelAction, Monitor, RedactHook, ResultAction, ToolAction, TurnResult,
};
use pretty_assertions::assert_eq;

/// A hook that does one thing, given as closures over what it is shown.
#[derive(Default)]
struct Scripted {
    model: Option<fn(&ChatRequest) -> ModelAction>,
    tool: Option<fn(&ToolCall) -> ToolAction>,
    result: Option<fn(&ToolResult) -> ResultAction>,
    turns: Mutex<Vec<(TurnOutcome, usize)>>,
}

#[async_trait]
impl Hook for Scripted {
    async fn before_model(&self, _cx: &HookContext<'_>, request: &ChatRequest) -> ModelAction {
        self.model.map_or(ModelAction::Continue, |f| f(request))
    }
    async fn before_tool(
        &self,
        _cx: &HookContext<'_>,
        call: &ToolCall,
        _effect: Option<ToolEffect>,
    ) -> ToolAction {
        self.tool.map_or(ToolAction::Allow, |f| f(call))
    }
    async fn after_tool(&self, _cx: &HookContext<'_>, _call: &ToolCall, result: &ToolResult) -> ResultAction {
        self.result.map_or(ResultAction::Pass, |f| f(result))
    }
    async fn after_turn(&self, _cx: &HookContext<'_>, turn: &TurnResult) {
        self.turns.lock().unwrap().push((turn.outcome, turn.messages.len()));
    }
}

fn hooked(h: Harness, hook: impl Hook + 'static) -> Harness {
    Harness { runner: h.runner.clone().with_hook(Arc::new(hook)), ..h }
}

/// A turn in which the model calls `echo` with `text`, then answers.
fn echoing(text_arg: &str) -> Harness {
    harness([
        Script::Answer(calls(&[("e", "echo", json!({ "text": text_arg }))])),
        Script::Answer(text("Done.")),
    ])
}

#[tokio::test]
async fn a_hook_rewrites_a_calls_arguments_and_the_tool_runs_with_them() {
    let hook =
        Scripted { tool: Some(|_| ToolAction::Rewrite(json!({"text": "rewritten"}))), ..Default::default() };
    let h = hooked(echoing("original"), hook);
    let out = turn(&h, "echo").await;
    assert_eq!(results_sent(&h, 1)[0].content, "rewritten");
    // The model's own message keeps what it wrote.
    assert_eq!(out.result.messages[1].tool_calls().next().unwrap().arguments, json!({"text": "original"}));
}

#[tokio::test]
async fn a_hook_answers_a_call_itself_and_nothing_runs_nor_asks() {
    let hook = Scripted {
        tool: Some(|_| ToolAction::Answer { content: "written (dry run)".into(), is_error: false }),
        ..Default::default()
    };
    let h = hooked(
        harness([Script::Answer(calls(&[("w", "write", json!({}))])), Script::Answer(text("OK."))]),
        hook,
    );
    let out = turn(&h, "write it").await;
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 0);
    assert!(!out.labels().iter().any(|l| l.starts_with("approval")), "{:?}", out.labels());
    assert!(out.labels().contains(&"result w".to_owned()));
    assert_eq!(
        results_sent(&h, 1),
        vec![ToolResult { call_id: "w".into(), content: "written (dry run)".into(), is_error: false }]
    );
}

#[tokio::test]
async fn a_hook_that_stops_before_a_tool_fails_the_turn_with_its_reason() {
    let hook = Scripted {
        tool: Some(|_| ToolAction::Stop { reason: "quota of tool calls used".into() }),
        ..Default::default()
    };
    let h = hooked(echoing("x"), hook);
    let out = turn(&h, "echo").await;
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(
        out.error(),
        Some((
            "hook_stopped".to_owned(),
            "an operator's hook stopped the turn before the tool call `echo`: quota of tool calls used"
                .to_owned()
        ))
    );
    assert_eq!(h.provider.requests().len(), 1);
    assert_eq!(out.roles(), vec![Role::User]);
}

#[tokio::test]
async fn a_hook_that_stops_before_the_model_call_keeps_the_provider_out_of_it() {
    let hook = Scripted {
        model: Some(|_| ModelAction::Stop { reason: "outside office hours".into() }),
        ..Default::default()
    };
    let h = hooked(harness([Script::Answer(text("never"))]), hook);
    let out = turn(&h, "hi").await;
    assert!(h.provider.requests().is_empty());
    assert_eq!(out.labels(), vec!["started fake/fake-model", "error hook_stopped", "done Failed"]);
    assert!(out.error().unwrap().1.ends_with("before a model call: outside office hours"));
}

#[tokio::test]
async fn a_hook_rewrites_the_model_request() {
    let hook = Scripted {
        model: Some(|request| {
            ModelAction::Rewrite(Box::new(ChatRequest {
                system: Some("Answer in French.".into()),
                ..request.clone()
            }))
        }),
        ..Default::default()
    };
    let h = hooked(harness([Script::Answer(text("Bonjour."))]), hook);
    turn(&h, "hi").await;
    assert_eq!(h.provider.requests()[0].system.as_deref(), Some("Answer in French."));
}

#[tokio::test]
async fn a_hook_rewrites_a_result_before_the_user_and_the_model_see_it() {
    let hook = Scripted {
        result: Some(|r| ResultAction::Rewrite(format!("{} (checked)", r.content))),
        ..Default::default()
    };
    let h = hooked(echoing("pong"), hook);
    let out = turn(&h, "echo").await;
    assert_eq!(results_sent(&h, 1)[0].content, "pong (checked)");
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolResult { content, .. } if content == "pong (checked)"))
    );
}

#[tokio::test]
async fn the_redact_hook_removes_secrets_from_tool_output() {
    let secret = format!("sk-{}", "A1b2".repeat(6));
    let h = hooked(echoing(&format!("key={secret} ok")), RedactHook::new(["sk-[A-Za-z0-9]{20,}"]).unwrap());
    let out = turn(&h, "show the key").await;
    assert_eq!(results_sent(&h, 1)[0].content, "key=[redacted] ok");
    let shown = out.events.iter().find_map(|e| match e {
        AgentEvent::ToolResult { content, .. } => Some(content.clone()),
        _ => None,
    });
    assert_eq!(shown.as_deref(), Some("key=[redacted] ok"));
}

#[tokio::test]
async fn the_deny_tools_hook_refuses_matching_tools_without_asking() {
    let h = hooked(
        harness([
            Script::Answer(calls(&[("w", "write", json!({})), ("e", "echo", json!({"text": "fine"}))])),
            Script::Answer(text("OK.")),
        ]),
        DenyToolsHook::new(["wr*", "shell"]),
    );
    let out = turn(&h, "write it").await;
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 0);
    assert!(!out.labels().iter().any(|l| l.starts_with("approval")), "{:?}", out.labels());
    let sent = results_sent(&h, 1);
    assert!(sent[0].is_error);
    assert!(
        sent[0].content.contains("an operator's hook refuses this tool (pattern `wr*`)"),
        "{}",
        sent[0].content
    );
    assert_eq!(sent[1].content, "fine");
}

#[tokio::test]
async fn after_turn_sees_what_the_turn_produced() {
    let hook = Arc::new(Scripted::default());
    let h = harness([Script::Answer(text("Hi."))]);
    let h = Harness { runner: h.runner.clone().with_hook(hook.clone()), ..h };
    turn(&h, "hi").await;
    assert_eq!(*hook.turns.lock().unwrap(), vec![(TurnOutcome::Completed, 2)]);
}

/// Notes every event it is shown, with the session it belongs to.
#[derive(Default)]
struct Watching {
    seen: Mutex<Vec<(SessionId, String)>>,
}

impl Monitor for Watching {
    fn event(&self, cx: &HookContext<'_>, event: &AgentEvent) {
        self.seen.lock().unwrap().push((cx.session_id, label(event)));
    }
}

#[tokio::test]
async fn a_monitor_sees_every_event_in_order() {
    let monitor = Arc::new(Watching::default());
    let h = echoing("pong");
    let h = Harness { runner: h.runner.clone().with_monitor(monitor.clone()), ..h };
    let out = turn(&h, "echo").await;
    let seen = monitor.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(), out.labels());
    let Some(AgentEvent::TurnStarted { session_id, .. }) = out.events.first() else { panic!() };
    assert!(seen.iter().all(|(id, _)| id == session_id));
}
