//! The runtime through the library: tool loop, approval, cancel, budget refusal and per-session
//! ordering, against a scripted model behind a real HTTP endpoint and a real SQLite store. The CLI
//! (crates/exoclaw-cli/tests) and the WebSocket protocol (the gateway suite there) run the same
//! scenarios through their front ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw::exoclaw_core::{
    AgentRuntime, ApprovalRequest, Approver, Decision, SessionStore, Target, TurnFailure, TurnInput,
    TurnReport,
};
use exoclaw::exoclaw_types::{AgentEvent, ErrorCode, Role, TurnOutcome};
use exoclaw::{Config, Runtime};
use exoclaw_testkit::script::{Answer, request_messages, serve};
use exoclaw_testkit::server::{Ending, Reply, ScriptedServer};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// An approver that answers `decision` and remembers what it was asked.
struct Recorded {
    decision: Decision,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl Approver for Recorded {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        self.asked.lock().unwrap().push(request.call.name.clone());
        self.decision
    }
}

struct Fixture {
    runtime: Runtime,
    workspace: tempfile::TempDir,
    home: tempfile::TempDir,
}

async fn runtime(server: &ScriptedServer, extra: &str, approver: Option<Arc<dyn Approver>>) -> Fixture {
    let home = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let toml = format!(
        "model = \"script/scripted\"\n{extra}\n[providers.script]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test\"\n",
        server.url()
    );
    let config = Config::parse(&toml, Path::new("test.toml")).unwrap();
    let db = home.path().join("sessions.db");
    let store = exoclaw::exoclaw_store::Store::open(&db.display().to_string()).await.unwrap();
    let dir = workspace.path().to_owned();
    let mut builder =
        Runtime::builder().config(config).store(store).default_agent(move |spec| spec.workspace = Some(dir));
    if let Some(approver) = approver {
        builder = builder.approver(approver);
    }
    Fixture { runtime: builder.build().await.unwrap(), workspace, home }
}

/// Runs one turn, collecting its events.
async fn turn(runtime: &Runtime, target: Target, text: &str) -> (Vec<AgentEvent>, TurnReport) {
    let handle = runtime.submit(target, TurnInput::message(text)).unwrap();
    let events = Mutex::new(Vec::new());
    let report = handle.finish(&|e| events.lock().unwrap().push(e)).await.unwrap();
    (events.into_inner().unwrap(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_loop_reads_a_file_answers_from_it_and_is_stored() {
    let server = serve([
        Answer::tool("c1", "read_file", json!({"path": "notes.txt"})),
        Answer::text("The code is 4711."),
    ])
    .await;
    let fx = runtime(&server, "", None).await;
    std::fs::write(fx.workspace.path().join("notes.txt"), "the code is 4711\n").unwrap();
    let (events, report) = turn(&fx.runtime, Target::New { agent: None }, "What is the code?").await;
    assert_eq!(report.outcome, TurnOutcome::Completed);
    assert_eq!(report.text(), "The code is 4711.");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ToolUse { call } if call.name == "read_file")));
    let second = &server.requests()[1].body;
    let tool = request_messages(second).iter().find(|m| m["role"] == "tool").unwrap();
    assert!(tool["content"].as_str().unwrap().contains("the code is 4711"), "{tool}");
    let stored = fx.runtime.store().messages(report.session_id).await.unwrap();
    assert_eq!(
        stored.iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_asks_the_approver_and_runs_only_when_approved() {
    for (decision, written) in [(Decision::Approve, true), (Decision::Deny, false)] {
        let server = serve([
            Answer::tool("w1", "write_file", json!({"path": "out.txt", "content": "hello"})),
            Answer::text("Done."),
        ])
        .await;
        let approver = Arc::new(Recorded { decision, asked: Mutex::new(Vec::new()) });
        let fx = runtime(&server, "", Some(approver.clone())).await;
        let (events, report) = turn(&fx.runtime, Target::New { agent: None }, "Write hello to out.txt").await;
        assert_eq!(report.outcome, TurnOutcome::Completed);
        assert_eq!(*approver.asked.lock().unwrap(), ["write_file"]);
        assert!(events.iter().any(|e| matches!(e, AgentEvent::ApprovalNeeded { .. })));
        assert_eq!(fx.workspace.path().join("out.txt").exists(), written, "{decision:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_turn_stops_the_answer_and_keeps_what_was_said() {
    let chunks: Vec<String> = Answer::text("Once upon a time").chunks().into_iter().take(3).collect();
    let server = ScriptedServer::start([Reply::sse(chunks).ending(Ending::Hang)]).await;
    let fx = runtime(&server, "", None).await;
    let mut handle = fx.runtime.submit(Target::New { agent: None }, TurnInput::message("A story")).unwrap();
    while let Some(event) = handle.next_event().await {
        if matches!(event, AgentEvent::Text { .. }) {
            handle.cancel();
            break;
        }
    }
    let report = handle.report().await.unwrap();
    assert_eq!(report.outcome, TurnOutcome::Cancelled);
    let stored = fx.runtime.store().messages(report.session_id).await.unwrap();
    assert_eq!(stored.len(), 2, "the question and the partial answer");
    assert!(stored[1].text().starts_with("Once"), "{:?}", stored[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_cover_the_call_refuses_it_before_the_model_is_asked() {
    let server = serve([Answer::text("never sent")]).await;
    let budget = "[[budgets]]\nname = \"tiny\"\nwindow = \"total\"\nmax_tokens = 10\n";
    let fx = runtime(&server, budget, None).await;
    let (events, report) = turn(&fx.runtime, Target::New { agent: None }, "Hello").await;
    assert_eq!(report.outcome, TurnOutcome::Failed);
    let TurnFailure { code, message } = report.error.clone().unwrap();
    assert_eq!(code, ErrorCode::BudgetExceeded);
    assert!(message.contains("tiny"), "{message}");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error { .. })));
    assert!(server.requests().is_empty(), "the model was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_one_session_run_in_submission_order_each_seeing_the_last() {
    let server = serve([Answer::text("One."), Answer::text("Two."), Answer::text("Three.")]).await;
    let fx = runtime(&server, "", None).await;
    let (_, first) = turn(&fx.runtime, Target::New { agent: None }, "first").await;
    let target = Target::Session(first.session_id);
    // Submitted back to back: the second waits in the session's queue for the first.
    let a = fx.runtime.submit(target.clone(), TurnInput::message("second")).unwrap();
    let b = fx.runtime.submit(target, TurnInput::message("third")).unwrap();
    let (b, a) = (b.report().await.unwrap(), a.report().await.unwrap());
    assert_eq!((a.text(), b.text()), ("Two.".to_owned(), "Three.".to_owned()));
    let third = &server.requests()[2].body;
    let users: Vec<&str> = request_messages(third)
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(users, ["first", "second", "third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_agent_and_a_missing_session_are_refused_with_what_exists() {
    let server = serve([]).await;
    let fx = runtime(&server, "", None).await;
    let err =
        fx.runtime.submit(Target::New { agent: Some("ghost".into()) }, TurnInput::message("hi")).unwrap_err();
    assert_eq!(err.to_string(), "no agent `ghost` (the request names it); this runtime has: default");
    let missing = exoclaw::exoclaw_types::SessionId::new();
    let handle = fx.runtime.submit(Target::Session(missing), TurnInput::message("hi")).unwrap();
    let err = handle.report().await.unwrap_err();
    assert!(err.to_string().contains(&format!("no session {missing}")), "{err}");
}

/// The user messages of the model request numbered `n`.
fn users_asked(server: &ScriptedServer, n: usize) -> Vec<String> {
    let body = &server.requests()[n].body;
    request_messages(body)
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_another_process_wrote_between_turns_is_read_again() {
    use exoclaw::exoclaw_core::SessionLocks;
    use exoclaw::exoclaw_types::Message;
    let server =
        serve([Answer::text("One."), Answer::text("Two."), Answer::text("Three."), Answer::text("Four.")])
            .await;
    let fx = runtime(&server, "", None).await;
    let (_, first) = turn(&fx.runtime, Target::New { agent: None }, "first").await;
    let session = first.session_id;
    // Another process (its own connections) continues the session between this runtime's turns.
    let db = fx.home.path().join("sessions.db");
    let other = exoclaw::exoclaw_store::Store::open(&db.display().to_string()).await.unwrap();
    {
        let _lease = other.lock_session(session, true).await.unwrap();
        let elsewhere = [Message::user("from elsewhere"), Message::assistant("Noted.")];
        other.commit_turn(session, &elsewhere, &[], None).await.unwrap();
    }
    turn(&fx.runtime, Target::Session(session), "second").await;
    assert_eq!(users_asked(&server, 1), ["first", "from elsewhere", "second"]);
    // Nobody else wrote it since: the turn sees its own history.
    turn(&fx.runtime, Target::Session(session), "third").await;
    assert_eq!(users_asked(&server, 2), ["first", "from elsewhere", "second", "third"]);
    // Cleared elsewhere: the next turn starts from nothing.
    other.clear_session(session).await.unwrap();
    turn(&fx.runtime, Target::Session(session), "fourth").await;
    assert_eq!(users_asked(&server, 3), ["fourth"]);
    other.close().await;
}
