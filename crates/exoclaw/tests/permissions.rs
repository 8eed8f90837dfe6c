//! Permissions through the runtime: answers "always" written to exoclaw's home and honoured by the
//! next runtime, answers "for this session" holding in their session only, a workspace's rules,
//! and the audit log — against a scripted model behind a real HTTP endpoint and a real SQLite store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw::exoclaw_core::{
    AgentRuntime, ApprovalRequest, Approver, AuditEvent, AuditLog, AuditQuery, Decision, Permission, Reason,
    Rule, Scope, Target, TurnInput, TurnReport,
};
use exoclaw::exoclaw_types::TurnOutcome;
use exoclaw::{Config, Runtime};
use exoclaw_testkit::script::{Answer, serve};
use exoclaw_testkit::server::ScriptedServer;
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers `decision` and keeps the requests it was asked.
struct Answering {
    decision: Decision,
    asked: Mutex<Vec<ApprovalRequest>>,
}

impl Answering {
    fn new(decision: Decision) -> Arc<Self> {
        Arc::new(Self { decision, asked: Mutex::new(Vec::new()) })
    }

    fn asked(&self) -> Vec<ApprovalRequest> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl Approver for Answering {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        self.asked.lock().unwrap().push(request.clone());
        self.decision
    }
}

/// A runtime on `server`'s scripted model, with exoclaw's home `home` and the workspace
/// `workspace`, sessions in the home's database.
async fn runtime(
    server: &ScriptedServer,
    home: &Path,
    workspace: &Path,
    approver: Arc<dyn Approver>,
) -> Runtime {
    let toml = format!(
        "model = \"script/scripted\"\n[providers.script]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test\"\n",
        server.url()
    );
    let config = Config::parse(&toml, Path::new("test.toml")).unwrap();
    let db = home.join("sessions.db");
    let store = exoclaw::exoclaw_store::Store::open(&db.display().to_string()).await.unwrap();
    let dir = workspace.to_owned();
    Runtime::builder()
        .config(config)
        .store(store)
        .home(home)
        .approver(approver)
        .default_agent(move |spec| spec.workspace = Some(dir))
        .build()
        .await
        .unwrap()
}

async fn turn(runtime: &Runtime, target: Target, text: &str) -> TurnReport {
    let handle = runtime.submit(target, TurnInput::message(text)).unwrap();
    handle.finish(&|_| {}).await.unwrap()
}

fn write(id: &str, path: &str) -> Answer {
    Answer::tool(id, "write_file", json!({"path": path, "content": "hello"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_answer_is_written_to_the_home_and_honoured_by_the_next_runtime() {
    let home = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::create_dir(workspace.path().join("out")).unwrap();

    let server = serve([write("w1", "out/a.txt"), Answer::text("Done.")]).await;
    let always = Answering::new(Decision::ApproveAlways);
    let first = runtime(&server, home.path(), workspace.path(), always.clone()).await;
    let report = turn(&first, Target::New { agent: None }, "Write a").await;
    assert_eq!(report.outcome, TurnOutcome::Completed);
    let asked = always.asked();
    assert_eq!(asked.len(), 1);
    let expected = Rule::new("write_file", Permission::Allow).path("out/**");
    assert_eq!(asked[0].remember, vec![expected.clone()], "the prompt shows the rule it will write");
    let file = home.path().join("permissions.toml");
    assert_eq!(asked[0].always_file.as_deref(), Some(file.display().to_string().as_str()));
    assert!(workspace.path().join("out/a.txt").exists());
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.contains("tool = \"write_file\"") && kept.contains("path = \"out/**\""), "{kept}");

    // The audit log has the decision, the answer and the write, once the runtime settles.
    assert!(first.settle(Duration::from_secs(10)).await);
    let query = AuditQuery { session: Some(report.session_id), ..AuditQuery::default() };
    let mut entries = first.store().audit_entries(&query).await.unwrap();
    entries.reverse();
    let events: Vec<&AuditEvent> = entries.iter().map(|e| &e.event).collect();
    assert!(
        matches!(
            events.as_slice(),
            [
                AuditEvent::Decided { permission: Permission::Ask, reason: Reason::EffectDefault { .. } },
                AuditEvent::Answered { decision: Decision::ApproveAlways, .. },
                AuditEvent::Executed { ok: true, .. },
            ]
        ),
        "{events:?}"
    );
    assert_eq!(entries[0].resources, vec![exoclaw::exoclaw_core::Resource::Path("out/a.txt".into())]);
    first.store().close().await;

    // A new runtime (the next run) reads the answer back: nobody is asked.
    let server = serve([write("w2", "out/b.txt"), Answer::text("Done.")]).await;
    let nobody = Answering::new(Decision::Deny);
    let second = runtime(&server, home.path(), workspace.path(), nobody.clone()).await;
    let report = turn(&second, Target::New { agent: None }, "Write b").await;
    assert_eq!(report.outcome, TurnOutcome::Completed);
    assert!(nobody.asked().is_empty(), "the kept answer allowed it");
    assert!(workspace.path().join("out/b.txt").exists());
    assert!(second.settle(Duration::from_secs(10)).await);
    let entries = second.store().audit_entries(&AuditQuery::default()).await.unwrap();
    let decided = entries.iter().find(|e| matches!(e.event, AuditEvent::Decided { .. })).unwrap();
    match &decided.event {
        AuditEvent::Decided { permission: Permission::Allow, reason: Reason::Rule(entry) } => {
            assert_eq!(entry.rule, expected);
            assert_eq!(entry.scope, Scope::Global);
            assert_eq!(entry.file.as_deref(), Some(file.display().to_string().as_str()));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answer_holds_for_later_turns_of_that_session_only() {
    let home = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::create_dir(workspace.path().join("notes")).unwrap();
    let server = serve([
        write("w1", "notes/a.txt"),
        Answer::text("Done."),
        write("w2", "notes/b.txt"),
        Answer::text("Done."),
        write("w3", "notes/c.txt"),
        Answer::text("Done."),
    ])
    .await;
    let approver = Answering::new(Decision::ApproveForSession);
    let rt = runtime(&server, home.path(), workspace.path(), approver.clone()).await;
    let first = turn(&rt, Target::New { agent: None }, "a").await;
    turn(&rt, Target::Session(first.session_id), "b").await;
    assert_eq!(approver.asked().len(), 1, "the session's second write was not asked about");
    turn(&rt, Target::New { agent: None }, "c").await;
    assert_eq!(approver.asked().len(), 2, "another session is asked again");
    assert!(!home.path().join("permissions.toml").exists(), "a session answer is not written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_workspace_can_deny_but_not_allow() {
    let home = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::create_dir(workspace.path().join(".exoclaw")).unwrap();
    std::fs::write(
        workspace.path().join(".exoclaw/permissions.toml"),
        "[[rules]]\ntool = \"write_file\"\npermission = \"allow\"\n\n\
         [[rules]]\ntool = \"read_file\"\npath = \"secret.txt\"\npermission = \"deny\"\n",
    )
    .unwrap();
    std::fs::write(workspace.path().join("secret.txt"), "hunter2").unwrap();
    let server = serve([
        Answer::tool("r1", "read_file", json!({"path": "./secret.txt"})),
        Answer::text("Cannot."),
        write("w1", "x.txt"),
        Answer::text("Done."),
    ])
    .await;
    let approver = Answering::new(Decision::Deny);
    let rt = runtime(&server, home.path(), workspace.path(), approver.clone()).await;
    turn(&rt, Target::New { agent: None }, "read it").await;
    let second_request = &server.requests()[1].body;
    assert!(second_request.to_string().contains("permission denied"), "{second_request}");
    assert!(!second_request.to_string().contains("hunter2"));
    turn(&rt, Target::New { agent: None }, "write").await;
    assert_eq!(approver.asked().len(), 1, "the folder's allow rule is ignored: the write asks");
    assert!(!workspace.path().join("x.txt").exists());
}
