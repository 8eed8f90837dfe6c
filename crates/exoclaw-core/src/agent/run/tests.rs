//! The run, step by step: each test one behaviour a driver (and so a user) relies on.

use super::*;
use crate::agent::permission::Permission;
use pretty_assertions::assert_eq;
use serde_json::json;

fn tool(name: &str, effect: ToolEffect) -> RunTool {
    RunTool {
        spec: ToolSpec { name: name.into(), description: format!("{name} tool"), input_schema: json!({}) },
        effect,
    }
}

fn config() -> RunConfig {
    RunConfig {
        system: Some("be brief".into()),
        tools: vec![tool("read", ToolEffect::ReadOnly), tool("write", ToolEffect::Mutating)],
        ..RunConfig::new("m")
    }
}

fn call(id: &str, name: &str) -> ToolCall {
    ToolCall { id: id.into(), name: name.into(), arguments: json!({"path": "a.txt"}) }
}

fn calling(text: &str, calls: &[ToolCall]) -> Message {
    let mut parts = vec![Part::text(text)];
    parts.extend(calls.iter().cloned().map(Part::ToolCall));
    Message::new(Role::Assistant, parts)
}

fn ok(id: &str, content: &str) -> ToolResult {
    ToolResult { call_id: id.into(), content: content.into(), is_error: false }
}

fn roles(messages: &[Message]) -> Vec<Role> {
    messages.iter().map(|m| m.role).collect()
}

#[test]
fn a_plain_answer_completes_the_turn() {
    let history = vec![Message::user("earlier"), Message::assistant("sure")];
    let mut run = Run::new(config(), history, Message::user("hi"));
    let Step::CallModel(request) = run.next_step() else { panic!("expected a model call") };
    assert_eq!(request.system.as_deref(), Some("be brief"));
    assert_eq!(request.messages.len(), 3);
    assert_eq!(request.tools.len(), 2);
    assert_eq!(run.model_answered(Message::assistant("hello"), StopReason::EndTurn).unwrap(), vec![]);
    assert_eq!(run.next_step(), Step::Done(TurnOutcome::Completed));
    assert_eq!(roles(run.messages()), vec![Role::User, Role::Assistant]);
    assert_eq!(run.iterations(), 1);
}

#[test]
fn tool_calls_run_then_their_results_go_back_to_the_model_in_call_order() {
    let mut run = Run::new(config(), vec![], Message::user("read two"));
    run.next_step();
    run.model_answered(calling("reading", &[call("c1", "read"), call("c2", "read")]), StopReason::ToolUse)
        .unwrap();
    assert_eq!(run.next_step(), Step::CallTools(vec![call("c1", "read"), call("c2", "read")]));
    // Results arrive out of order, one at a time.
    run.tools_finished(vec![ok("c2", "two")]).unwrap();
    assert_eq!(run.next_step(), Step::CallTools(vec![call("c1", "read")]));
    run.tools_finished(vec![ok("c1", "one")]).unwrap();
    let Step::CallModel(request) = run.next_step() else { panic!("expected a model call") };
    let tool_message = request.messages.last().unwrap();
    assert_eq!(tool_message.role, Role::Tool);
    assert_eq!(
        tool_message.parts,
        vec![Part::ToolResult(ok("c1", "one")), Part::ToolResult(ok("c2", "two"))]
    );
    run.model_answered(Message::assistant("done"), StopReason::EndTurn).unwrap();
    assert_eq!(run.next_step(), Step::Done(TurnOutcome::Completed));
    assert_eq!(roles(run.messages()), vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]);
    assert!(tool_calls_paired(run.messages()));
}

#[test]
fn an_unattended_refusal_tells_the_model_nobody_can_approve_it() {
    let mut run = Run::new(config(), vec![], Message::user("write"));
    run.next_step();
    run.model_answered(calling("", &[call("w1", "write")]), StopReason::ToolUse).unwrap();
    let Step::AwaitApproval(_) = run.next_step() else { panic!("expected an approval") };
    let refused = run.approval("w1", Decision::Unattended).unwrap().unwrap();
    assert!(refused.result.is_error);
    let content = &refused.result.content;
    assert!(content.contains("runs unattended") && content.contains("do not retry"), "{content}");
    let Step::CallModel(_) = run.next_step() else { panic!("the model is told, and the turn goes on") };
}

#[test]
fn ask_waits_for_approval_and_a_denial_becomes_an_error_result() {
    let mut run = Run::new(config(), vec![], Message::user("write"));
    run.next_step();
    run.model_answered(calling("", &[call("w1", "write"), call("w2", "write")]), StopReason::ToolUse)
        .unwrap();
    let Step::AwaitApproval(asks) = run.next_step() else { panic!("expected approvals") };
    assert_eq!(asks.iter().map(|a| a.call.id.as_str()).collect::<Vec<_>>(), vec!["w1", "w2"]);
    assert_eq!(asks[0].effect, ToolEffect::Mutating);
    assert_eq!(run.approval("w1", Decision::Approve).unwrap(), None);
    let denied = run.approval("w2", Decision::Deny).unwrap().unwrap();
    assert!(denied.result.is_error);
    assert!(denied.result.content.contains("denied"), "{}", denied.result.content);
    assert_eq!(run.next_step(), Step::CallTools(vec![call("w1", "write")]));
    run.tools_finished(vec![ok("w1", "written")]).unwrap();
    let Step::CallModel(request) = run.next_step() else { panic!("expected a model call") };
    let results: Vec<_> = request.messages.last().unwrap().parts.clone();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1], Part::ToolResult(denied.result));
}

#[test]
fn denied_tools_are_settled_at_once_and_unknown_tools_pass_to_the_driver() {
    let mut cfg = config();
    cfg.permissions = PermissionPolicy::default().with_tool("read", Permission::Deny);
    let mut run = Run::new(cfg, vec![], Message::user("x"));
    run.next_step();
    let settled = run
        .model_answered(calling("", &[call("a", "read"), call("b", "nope")]), StopReason::ToolUse)
        .unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].call.id, "a");
    assert_eq!(run.next_step(), Step::CallTools(vec![call("b", "nope")]));
}

#[test]
fn every_call_denied_goes_straight_back_to_the_model() {
    let mut cfg = config();
    cfg.permissions.read_only = Permission::Deny;
    let mut run = Run::new(cfg, vec![], Message::user("x"));
    run.next_step();
    run.model_answered(calling("", &[call("a", "read")]), StopReason::ToolUse).unwrap();
    assert!(matches!(run.next_step(), Step::CallModel(_)));
    assert!(tool_calls_paired(run.messages()));
}

#[test]
fn the_iteration_limit_ends_the_turn_after_the_last_tool_results() {
    let mut cfg = config();
    cfg.max_iterations = 2;
    let mut run = Run::new(cfg, vec![], Message::user("loop"));
    for i in 0..2 {
        assert!(matches!(run.next_step(), Step::CallModel(_)));
        let id = format!("c{i}");
        run.model_answered(calling("", &[call(&id, "read")]), StopReason::ToolUse).unwrap();
        assert!(matches!(run.next_step(), Step::CallTools(_)));
        run.tools_finished(vec![ok(&id, "x")]).unwrap();
    }
    assert_eq!(run.next_step(), Step::Done(TurnOutcome::MaxIterations));
    assert_eq!(run.outcome(), Some(TurnOutcome::MaxIterations));
    assert_eq!(run.iterations(), 2);
    assert!(tool_calls_paired(run.messages()));
}

#[test]
fn cancelling_with_open_calls_keeps_the_text_and_drops_the_calls() {
    let mut run = Run::new(config(), vec![], Message::user("x"));
    run.next_step();
    run.model_answered(calling("let me look", &[call("a", "read")]), StopReason::ToolUse).unwrap();
    run.cancel(None);
    assert_eq!(run.next_step(), Step::Done(TurnOutcome::Cancelled));
    assert_eq!(roles(run.messages()), vec![Role::User, Role::Assistant]);
    assert_eq!(run.messages()[1].parts, vec![Part::text("let me look")]);
    assert!(tool_calls_paired(run.messages()));
}

#[test]
fn failing_with_open_calls_and_no_text_drops_the_assistant_message() {
    let mut run = Run::new(config(), vec![], Message::user("x"));
    run.next_step();
    run.model_answered(calling("", &[call("a", "read")]), StopReason::ToolUse).unwrap();
    run.fail();
    assert_eq!(roles(run.messages()), vec![Role::User]);
    // The first ending wins.
    run.cancel(Some(Message::assistant("late")));
    assert_eq!(run.outcome(), Some(TurnOutcome::Failed));
    assert_eq!(roles(run.messages()), vec![Role::User]);
}

#[test]
fn a_cancelled_stream_keeps_its_partial_text_without_tool_calls() {
    let mut run = Run::new(config(), vec![], Message::user("x"));
    run.next_step();
    let partial = Message::new(
        Role::Assistant,
        vec![
            Part::Thinking { text: "hmm".into(), signature: None },
            Part::text("The answer is"),
            Part::ToolCall(call("a", "read")),
        ],
    );
    run.cancel(Some(partial));
    assert_eq!(run.messages()[1].parts, vec![Part::text("The answer is")]);
    assert!(tool_calls_paired(run.messages()));
}

#[test]
fn a_run_in_the_middle_of_a_turn_survives_a_serde_round_trip_and_resumes() {
    let history = vec![Message::user("old")];
    let mut run = Run::new(config(), history.clone(), Message::user("read and write"));
    run.next_step();
    run.model_answered(calling("", &[call("r", "read"), call("w", "write")]), StopReason::ToolUse).unwrap();
    let Step::AwaitApproval(_) = run.next_step() else { panic!("expected approvals") };

    let json = serde_json::to_string(&run).unwrap();
    let mut resumed = serde_json::from_str::<Run>(&json).unwrap().resume(history);
    assert_eq!(resumed, run);

    let Step::AwaitApproval(asks) = resumed.next_step() else { panic!("expected approvals") };
    assert_eq!(asks.len(), 1);
    resumed.approval("w", Decision::Approve).unwrap();
    assert_eq!(resumed.next_step(), Step::CallTools(vec![call("r", "read"), call("w", "write")]));
    resumed.tools_finished(vec![ok("r", "read it"), ok("w", "wrote it")]).unwrap();
    assert!(matches!(resumed.next_step(), Step::CallModel(_)));
    resumed.model_answered(Message::assistant("all done"), StopReason::EndTurn).unwrap();
    assert_eq!(resumed.next_step(), Step::Done(TurnOutcome::Completed));
    assert!(tool_calls_paired(resumed.messages()));
    assert_eq!(resumed.history().len(), 1);
}

/// `run` as a checkpoint stores it, then restored with `history`.
fn restored(run: &Run, history: Vec<Message>) -> Run {
    let json = serde_json::to_string(run).unwrap();
    serde_json::from_str::<Run>(&json).unwrap().resume(history)
}

/// A run whose model called `calls`, all allowed, started with [`Run::tools_started`].
fn running(calls: &[ToolCall]) -> Run {
    let mut run = Run::new(config(), vec![], Message::user("go"));
    run.next_step();
    run.model_answered(calling("", calls), StopReason::ToolUse).unwrap();
    let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    run.tools_started(&ids).unwrap();
    run
}

/// The tool results the next model call would send.
fn results_of_next_request(run: &mut Run) -> Vec<Part> {
    let Step::CallModel(request) = run.next_step() else { panic!("expected a model call") };
    request.messages.last().unwrap().parts.clone()
}

#[test]
fn a_checkpoint_leaves_out_the_history_and_resume_puts_it_back() {
    let history: Vec<Message> = (0..1_000).map(|i| Message::user(format!("old message {i}"))).collect();
    let mut run = Run::new(config(), history.clone(), Message::user("new question"));
    run.next_step();
    let json = serde_json::to_string(&run).unwrap();
    assert!(!json.contains("old message"), "the history was stored: {} bytes", json.len());
    assert!(json.contains("new question"));

    let stored: Run = serde_json::from_str(&json).unwrap();
    assert!(stored.history().is_empty());
    let mut resumed = stored.resume(history);
    assert_eq!(resumed, run);
    let Step::CallModel(request) = resumed.next_step() else { panic!("expected a model call") };
    assert_eq!(request.messages.len(), 1_001);
}

#[test]
fn a_call_running_when_the_process_stopped_is_settled_as_interrupted() {
    let run = running(&[call("r", "read")]);
    let mut back = restored(&run, vec![]);
    let settled = back.recover_interrupted();
    assert_eq!(settled.len(), 1);
    let result = &settled[0].result;
    assert!(result.is_error);
    assert_eq!(
        result.content,
        "`read` was interrupted: the process stopped while this call ran; it may or may not have \
         taken effect — check before retrying"
    );
    assert_eq!(results_of_next_request(&mut back), vec![Part::ToolResult(result.clone())]);
    assert!(tool_calls_paired(back.messages()));
}

#[test]
fn an_approval_gated_call_running_when_the_process_stopped_asks_again() {
    let mut run = Run::new(config(), vec![], Message::user("write"));
    run.next_step();
    run.model_answered(calling("", &[call("w", "write")]), StopReason::ToolUse).unwrap();
    run.approval("w", Decision::Approve).unwrap();
    run.tools_started(&["w"]).unwrap();
    let mut back = restored(&run, vec![]);
    assert_eq!(back.recover_interrupted(), vec![]);
    let Step::AwaitApproval(asks) = back.next_step() else { panic!("expected approvals") };
    assert_eq!(asks, vec![ApprovalRequest::new(call("w", "write"), ToolEffect::Mutating)]);
}

#[test]
fn a_finished_result_survives_a_restore_and_its_call_is_not_run_again() {
    let mut run = running(&[call("a", "read"), call("b", "read")]);
    run.tools_finished(vec![ok("a", "first")]).unwrap();
    let mut back = restored(&run, vec![]);
    let settled = back.recover_interrupted();
    assert_eq!(settled.iter().map(|s| s.call.id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    let results = results_of_next_request(&mut back);
    assert_eq!(results[0], Part::ToolResult(ok("a", "first")));
    assert_eq!(results[1], Part::ToolResult(settled[0].result.clone()));
}

#[test]
fn a_call_not_started_when_the_process_stopped_runs_after_a_restore() {
    let mut run = Run::new(config(), vec![], Message::user("go"));
    run.next_step();
    run.model_answered(calling("", &[call("a", "read"), call("b", "read")]), StopReason::ToolUse).unwrap();
    run.tools_started(&["a"]).unwrap();
    run.tools_finished(vec![ok("a", "first")]).unwrap();
    let mut back = restored(&run, vec![]);
    assert_eq!(back.recover_interrupted(), vec![]);
    assert_eq!(back.next_step(), Step::CallTools(vec![call("b", "read")]));
}

#[test]
fn a_running_call_of_an_unknown_tool_runs_again_as_it_runs_nothing() {
    let run = running(&[call("u", "nope")]);
    let mut back = restored(&run, vec![]);
    assert_eq!(back.recover_interrupted(), vec![]);
    assert_eq!(back.next_step(), Step::CallTools(vec![call("u", "nope")]));
}

#[test]
fn asking_for_the_next_step_while_calls_show_as_running_takes_them_for_interrupted() {
    let mut back = restored(&running(&[call("r", "read")]), vec![]);
    let results = results_of_next_request(&mut back);
    assert!(matches!(&results[0], Part::ToolResult(r) if r.is_error && r.content.contains("interrupted")));
}

#[test]
fn a_started_call_reports_its_result_and_cannot_start_twice() {
    let mut run = running(&[call("a", "read")]);
    let before = run.clone();
    assert_eq!(run.tools_started(&["a"]), Err(RunError::UnknownCall("a".into())));
    assert_eq!(run, before);
    run.tools_finished(vec![ok("a", "x")]).unwrap();
    assert!(matches!(run.next_step(), Step::CallModel(_)));
}

#[test]
fn a_rewritten_call_runs_and_asks_with_the_new_arguments_and_the_model_keeps_its_own() {
    let mut run = Run::new(config(), vec![], Message::user("write"));
    run.next_step();
    run.model_answered(calling("", &[call("w", "write")]), StopReason::ToolUse).unwrap();
    let pending: Vec<_> = run.pending_calls().map(|(c, e)| (c.id.clone(), e)).collect();
    assert_eq!(pending, vec![("w".to_owned(), Some(ToolEffect::Mutating))]);
    run.rewrite_call("w", json!({"path": "safe.txt"})).unwrap();
    let rewritten = ToolCall { arguments: json!({"path": "safe.txt"}), ..call("w", "write") };
    let Step::AwaitApproval(asks) = restored(&run, vec![]).next_step() else { panic!("expected approvals") };
    assert_eq!(asks[0].call, rewritten);
    run.approval("w", Decision::Approve).unwrap();
    assert_eq!(run.next_step(), Step::CallTools(vec![rewritten]));
    assert_eq!(run.messages()[1].tool_calls().next(), Some(&call("w", "write")));
}

#[test]
fn an_answered_call_is_settled_without_running() {
    let mut run = Run::new(config(), vec![], Message::user("go"));
    run.next_step();
    run.model_answered(calling("", &[call("a", "read"), call("b", "read")]), StopReason::ToolUse).unwrap();
    let settled = run.answer_call("a", "answered by a hook".into(), false).unwrap();
    assert_eq!(settled.result, ok("a", "answered by a hook"));
    assert_eq!(run.pending_calls().count(), 1);
    assert_eq!(run.next_step(), Step::CallTools(vec![call("b", "read")]));
    assert_eq!(run.answer_call("a", "again".into(), false), Err(RunError::UnknownCall("a".into())));
}

#[test]
fn input_that_does_not_fit_the_state_is_refused_without_changing_it() {
    let mut run = Run::new(config(), vec![], Message::user("x"));
    assert_eq!(
        run.tools_finished(vec![ok("a", "x")]),
        Err(RunError::UnexpectedInput { expected: "a model answer", got: "tool results" })
    );
    run.next_step();
    run.model_answered(calling("", &[call("a", "read"), call("b", "read")]), StopReason::ToolUse).unwrap();
    let before = run.clone();
    assert_eq!(
        run.tools_finished(vec![ok("a", "x"), ok("zzz", "y")]),
        Err(RunError::UnknownCall("zzz".into()))
    );
    assert_eq!(run, before);
    assert_eq!(run.approval("a", Decision::Approve), Err(RunError::UnknownCall("a".into())));
    assert!(run.model_answered(Message::assistant("x"), StopReason::EndTurn).is_err());
}

#[test]
fn the_pairing_check_finds_orphans_both_ways() {
    let call_msg = calling("", &[call("a", "read")]);
    let result_msg = Message::tool_results([ok("a", "x")]);
    assert!(tool_calls_paired(&[Message::user("q"), call_msg.clone(), result_msg.clone()]));
    assert!(!tool_calls_paired(&[Message::user("q"), call_msg.clone()]));
    assert!(!tool_calls_paired(&[Message::user("q"), result_msg.clone()]));
    assert!(!tool_calls_paired(&[call_msg, Message::user("between"), result_msg]));
}

#[test]
fn a_runner_decides_each_call_with_its_own_check() {
    let mut run = Run::new(config(), vec![], Message::user("go"));
    run.next_step();
    let calls = [call("a", "write"), call("b", "write"), call("c", "read"), call("d", "nope")];
    let mut checked = Vec::new();
    let settled = run
        .model_answered_with(calling("", &calls), StopReason::ToolUse, |call, effect| {
            checked.push((call.id.clone(), effect));
            match call.id.as_str() {
                "a" => Permission::Allow,
                "b" => Permission::Deny,
                _ => Permission::Ask,
            }
        })
        .unwrap();
    // An unknown tool is never checked: it runs nothing.
    assert_eq!(
        checked,
        vec![
            ("a".to_owned(), ToolEffect::Mutating),
            ("b".to_owned(), ToolEffect::Mutating),
            ("c".to_owned(), ToolEffect::ReadOnly),
        ]
    );
    assert_eq!(settled.iter().map(|s| s.call.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(settled[0].result.content.starts_with("permission denied: `write` was not run"));
    let Step::AwaitApproval(asks) = run.next_step() else { panic!("expected approvals") };
    assert_eq!(asks.iter().map(|a| a.call.id.as_str()).collect::<Vec<_>>(), ["c"]);
}

#[test]
fn a_reconsidered_call_takes_its_new_permission() {
    let mut run = Run::new(config(), vec![], Message::user("go"));
    run.next_step();
    run.model_answered(calling("", &[call("w", "write"), call("r", "read")]), StopReason::ToolUse).unwrap();
    // Another answer covered the write: it no longer waits.
    assert_eq!(run.reconsider("w", Permission::Allow).unwrap(), None);
    let Step::CallTools(ready) = run.next_step() else { panic!("expected tool calls") };
    assert_eq!(ready.len(), 2);
    // A rewrite made the read touch something denied.
    let denied = run.reconsider("r", Permission::Deny).unwrap().unwrap();
    assert_eq!(denied.call.id, "r");
    assert!(denied.result.is_error);
    assert_eq!(run.reconsider("r", Permission::Allow), Err(RunError::UnknownCall("r".into())));
}

#[test]
fn an_interrupted_call_that_was_asked_about_is_asked_again_whatever_the_defaults_say() {
    let mut cfg = config();
    cfg.permissions = PermissionPolicy::allow_all();
    let mut run = Run::new(cfg, vec![], Message::user("write"));
    run.next_step();
    run.model_answered_with(calling("", &[call("w", "write")]), StopReason::ToolUse, |_, _| Permission::Ask)
        .unwrap();
    run.approval("w", Decision::ApproveForSession).unwrap();
    run.tools_started(&["w"]).unwrap();
    let mut back = restored(&run, vec![]);
    assert_eq!(back.recover_interrupted(), vec![]);
    assert!(matches!(back.next_step(), Step::AwaitApproval(_)), "the permission the call got is kept");
}
