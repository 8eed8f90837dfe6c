//! Durable turns: a checkpoint after every step, and a turn restored from one finishing without
//! running again what already ran.

use super::*;
use exoclaw_core::{Checkpoints, Run, StoreError};
use pretty_assertions::assert_eq;

/// Keeps every checkpoint as the JSON a store would hold; fails the save numbered `fail_at`.
#[derive(Default)]
struct Saved {
    runs: Mutex<Vec<String>>,
    fail_at: Option<usize>,
}

#[async_trait]
impl Checkpoints for Saved {
    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        let mut runs = self.runs.lock().unwrap();
        if self.fail_at == Some(runs.len()) {
            return Err(StoreError::database("disk I/O error"));
        }
        runs.push(serde_json::to_string(run).unwrap());
        Ok(())
    }
}

impl Saved {
    fn failing_at(n: usize) -> Self {
        Self { fail_at: Some(n), ..Self::default() }
    }

    fn json(&self, n: usize) -> String {
        self.runs.lock().unwrap()[n].clone()
    }

    /// Each checkpoint in short: `model (N messages)`, or `tools` and each call's `id:state`.
    fn states(&self) -> Vec<String> {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .map(|json| {
                let run: Value = serde_json::from_str(json).unwrap();
                let phase = &run["phase"];
                match phase["phase"].as_str().unwrap() {
                    "model" => format!("model ({} messages)", run["messages"].as_array().unwrap().len()),
                    "tools" => {
                        let calls: Vec<String> = phase["calls"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| format!("{}:{}", c["call"]["id"].as_str().unwrap(), c["state"]["state"]))
                            .collect();
                        format!("tools {}", calls.join(" ").replace('"', ""))
                    }
                    other => other.to_owned(),
                }
            })
            .collect()
    }
}

/// A read-only tool that sleeps for its `ms` argument, then notes its `id` argument as run.
#[derive(Default)]
struct Counted {
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl Tool for Counted {
    fn spec(&self) -> ToolSpec {
        spec("count")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        tokio::time::sleep(Duration::from_millis(args["ms"].as_u64().unwrap_or(0))).await;
        let id = args["id"].as_str().unwrap_or_default().to_owned();
        self.ran.lock().unwrap().push(id.clone());
        Ok(format!("counted {id}"))
    }
}

/// A runner with the `count` and `write` tools, on a provider replaying `scripts`.
fn counting(scripts: impl IntoIterator<Item = Script>) -> (Harness, Arc<Counted>) {
    let h = harness(scripts);
    let counted = Arc::new(Counted::default());
    let mut tools = ToolRegistry::new();
    tools.register(counted.clone());
    tools.register(h.write.clone());
    let runner = h.runner.clone().with_tools(tools);
    (Harness { runner, ..h }, counted)
}

/// Two `count` calls: `a` takes 1 s, `b` 2 s.
fn two_counts() -> Script {
    Script::Answer(calls(&[
        ("a", "count", json!({"id": "a", "ms": 1000})),
        ("b", "count", json!({"id": "b", "ms": 2000})),
    ]))
}

async fn drive(h: &Harness, run: Run, checkpoints: &dyn Checkpoints, input: &str) -> Outcome {
    let recorder = Recorder::new();
    let cancel = CancellationToken::new();
    let result =
        h.runner.drive_checkpointed(run, SessionId::new(), &cancel, &recorder, checkpoints, None).await;
    checked(result, &recorder, input)
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_is_saved_after_every_step_of_the_turn() {
    let (h, _) = counting([two_counts(), Script::Answer(text("Both counted."))]);
    let saved = Saved::default();
    let out = drive(&h, h.runner.start(vec![], Message::user("count")), &saved, "count").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    assert_eq!(
        saved.states(),
        vec![
            "model (1 messages)",
            "tools a:ready b:ready",
            "tools a:running b:running",
            "tools a:finished b:running",
            "model (3 messages)",
        ],
        "the finished turn is handed back, not saved"
    );
}

#[tokio::test]
async fn each_approval_decision_is_checkpointed() {
    let (h, _) = counting([Script::Answer(calls(&[("w", "write", json!({}))])), Script::Answer(text("OK."))]);
    let approver = Arc::new(Recording { decision: Decision::Approve, asked: Mutex::default() });
    let runner = h.runner.clone().with_permissions(PermissionPolicy::default(), approver);
    let h = Harness { runner, ..h };
    let saved = Saved::default();
    drive(&h, h.runner.start(vec![], Message::user("write")), &saved, "write").await;
    assert_eq!(
        saved.states()[1..4],
        ["tools w:approval", "tools w:ready", "tools w:running"].map(String::from)
    );
}

#[tokio::test]
async fn a_checkpoint_holds_the_turn_but_not_the_sessions_history() {
    let (h, _) = counting([Script::Answer(text("Short."))]);
    let history: Vec<Message> = (0..10_000).map(|i| Message::user(format!("old message {i}"))).collect();
    let saved = Saved::default();
    drive(&h, h.runner.start(history, Message::user("new")), &saved, "new").await;
    let json = saved.json(0);
    assert!(!json.contains("old message"), "the history was checkpointed");
    assert!(json.len() < 2_000, "{} bytes", json.len());
}

#[tokio::test(start_paused = true)]
async fn a_turn_restored_after_one_of_two_calls_finished_does_not_run_it_again() {
    let (h, counted) =
        counting([two_counts(), Script::Answer(text("Not this time.")), Script::Answer(text("Resumed."))]);
    let history = vec![Message::user("earlier"), Message::assistant("noted")];
    let saved = Saved::default();
    drive(&h, h.runner.start(history.clone(), Message::user("count")), &saved, "count").await;
    assert_eq!(*counted.ran.lock().unwrap(), vec!["a", "b"]);
    // The process "stops" after `a` finished and while `b` ran: restart from that checkpoint.
    assert_eq!(saved.states()[3], "tools a:finished b:running");
    let restored = serde_json::from_str::<Run>(&saved.json(3)).unwrap().resume(history);

    let out = drive(&h, restored, &Saved::default(), "count").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    assert_eq!(*counted.ran.lock().unwrap(), vec!["a", "b"], "a call ran again");
    let sent = results_sent(&h, 2);
    assert_eq!(sent[0], ToolResult { call_id: "a".into(), content: "counted a".into(), is_error: false });
    assert_eq!(sent[1].call_id, "b");
    assert!(sent[1].is_error);
    assert!(sent[1].content.contains("interrupted") && sent[1].content.contains("check before retrying"));
    assert_eq!(h.provider.requests()[2].messages.len(), 2 + 3, "the history came back");
    assert_eq!(out.labels()[..2], ["started fake/fake-model", "result b error"]);
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]);
}

#[tokio::test]
async fn an_approval_gated_call_interrupted_by_a_crash_is_asked_about_again() {
    let (h, _) = counting([
        Script::Answer(calls(&[("w", "write", json!({}))])),
        Script::Answer(text("first")),
        Script::Answer(text("second")),
    ]);
    let approver = Arc::new(Recording { decision: Decision::Approve, asked: Mutex::default() });
    let runner = h.runner.clone().with_permissions(PermissionPolicy::default(), approver.clone());
    let h = Harness { runner, ..h };
    let saved = Saved::default();
    drive(&h, h.runner.start(vec![], Message::user("write")), &saved, "write").await;
    assert_eq!(saved.states()[3], "tools w:running");
    let restored = serde_json::from_str::<Run>(&saved.json(3)).unwrap().resume(vec![]);

    let out = drive(&h, restored, &Saved::default(), "write").await;
    assert_eq!(approver.asked.lock().unwrap().len(), 2, "the user was not asked again");
    assert_eq!(out.labels()[..3], ["started fake/fake-model", "approval w", "result w"]);
    assert_eq!(h.write.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_turn_that_cannot_be_checkpointed_stops_before_its_tools_run() {
    let (h, counted) = counting([Script::Answer(calls(&[("a", "count", json!({"id": "a"}))]))]);
    // Saves: the start, the answer, then the calls starting: that one fails.
    let saved = Saved::failing_at(2);
    let out = drive(&h, h.runner.start(vec![], Message::user("count")), &saved, "count").await;
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert!(counted.ran.lock().unwrap().is_empty(), "the tool ran without a checkpoint");
    let (code, message) = out.error().unwrap();
    assert_eq!(code, "internal");
    assert!(
        message.starts_with("the turn could not be checkpointed (storage error: disk I/O error)"),
        "{message}"
    );
    assert_eq!(out.roles(), vec![Role::User]);
}

/// Holds the turn's first save until the model has been asked (or 60 s, then fails it).
struct WaitsForTheModel {
    provider: Arc<FakeProvider>,
    saved: Saved,
}

#[async_trait]
impl Checkpoints for WaitsForTheModel {
    async fn save(&self, run: &Run) -> Result<(), StoreError> {
        if self.saved.runs.lock().unwrap().is_empty() {
            let asked = async {
                while self.provider.requests().is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            if tokio::time::timeout(Duration::from_secs(60), asked).await.is_err() {
                return Err(StoreError::database("the model was not asked while the start was saved"));
            }
        }
        self.saved.save(run).await
    }
}

#[tokio::test(start_paused = true)]
async fn the_model_is_asked_while_the_turns_start_is_saved() {
    let h = harness([Script::Answer(text("Hi."))]);
    let checkpoints = WaitsForTheModel { provider: h.provider.clone(), saved: Saved::default() };
    let out = drive(&h, h.runner.start(vec![], Message::user("hello")), &checkpoints, "hello").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed, "{:?}", out.error());
    assert_eq!(checkpoints.saved.states(), vec!["model (1 messages)"]);
}

#[tokio::test]
async fn an_answer_is_not_used_when_the_turns_start_could_not_be_saved() {
    let (h, counted) = counting([Script::Answer(calls(&[("a", "count", json!({"id": "a"}))]))]);
    let saved = Saved::failing_at(0);
    let out = drive(&h, h.runner.start(vec![], Message::user("count")), &saved, "count").await;
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert!(counted.ran.lock().unwrap().is_empty(), "the answer's tool call ran");
    let (code, message) = out.error().unwrap();
    assert_eq!(code, "internal");
    assert!(message.starts_with("the turn could not be checkpointed"), "{message}");
    assert_eq!(out.roles(), vec![Role::User], "the unsaved answer was kept");
}
