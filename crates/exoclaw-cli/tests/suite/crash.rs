//! Interrupting a turn: Ctrl+C keeps what was said; a SIGKILL leaves an interrupted turn that the
//! next turn on the session finishes from its last checkpoint, never running a finished tool again.

use super::*;
use exoclaw_testkit::script::Answer;
use exoclaw_testkit::server::{Ending, Reply, ScriptedServer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;

/// An answer that streams `text` and then hangs, as a stuck provider would.
fn hanging(text: &str) -> Reply {
    let chunks: Vec<String> = Answer::text(text).chunks().into_iter().take(2).collect();
    Reply::sse(chunks).ending(Ending::Hang)
}

/// Starts `exoclaw ARGS`, waits until the scripted model has been called `calls` times, and sends
/// `signal`; returns the output.
async fn interrupt(
    env: &Env,
    server: &ScriptedServer,
    args: &[&str],
    calls: usize,
    signal: Signal,
) -> std::process::Output {
    let mut cmd = env.std_cmd();
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.requests().len() < calls {
        assert!(std::time::Instant::now() < deadline, "the model was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the streamed text reach the client before the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_the_turn_with_exit_130_and_keeps_the_partial_answer() {
    let env = Env::new();
    let server = ScriptedServer::start([hanging("Partial answer")]).await;
    env.scripted(&server, "");
    let out = interrupt(&env, &server, &["chat", "Tell me a long story"], 1, Signal::SIGINT).await;
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Partial"), "{}", stdout(&out));
    assert!(server.hung_up(Duration::from_secs(5)).await, "the stream was not closed");

    let list = env.run(&["session", "list", "--json"]).await;
    ok(&list);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(sessions[0]["message_count"], 2, "the question and the partial answer are kept");
    let show = env.run(&["session", "show", sessions[0]["id"].as_str().unwrap()]).await;
    assert!(stdout(&show).contains("Partial"), "{}", stdout(&show));
}

/// The stored sessions, as `exoclaw session list --json` shows them.
async fn sessions(env: &Env) -> Vec<serde_json::Value> {
    let list = env.run(&["session", "list", "--json"]).await;
    ok(&list);
    serde_json::from_str(&stdout(&list)).unwrap()
}

/// The user messages of a request body.
fn users(body: &serde_json::Value) -> Vec<String> {
    exoclaw_testkit::script::request_messages(body)
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_turn_is_listed_as_interrupted_and_finished_by_the_next_chat_c() {
    let env = Env::new();
    let server = ScriptedServer::start([
        Answer::text("First answer.").reply(),
        hanging("Second"),
        Answer::text("Second answer.").reply(),
        Answer::text("Third answer.").reply(),
    ])
    .await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "first question"]).await);
    let out = interrupt(&env, &server, &["chat", "-c", "second question"], 2, Signal::SIGKILL).await;
    assert_eq!(out.status.code(), None, "killed by the signal");

    let listed = sessions(&env).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["message_count"], 2, "only the committed turn is in the messages");
    assert_eq!(listed[0]["interrupted"], true);
    let table = env.run(&["session", "list"]).await;
    assert!(stdout(&table).contains("(interrupted) first question"), "{}", stdout(&table));

    let out = env.run(&["chat", "-c", "third question"]).await;
    ok(&out);
    assert!(stdout(&out).ends_with("Third answer.\n"), "{}", stdout(&out));
    let requests = server.requests();
    assert_eq!(users(&requests[2].body), ["first question", "second question"], "the second turn resumed");
    assert_eq!(users(&requests[3].body), ["first question", "second question", "third question"]);
    let listed = sessions(&env).await;
    assert_eq!(listed[0]["message_count"], 6);
    assert_ne!(listed[0]["interrupted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_turn_killed_mid_way_is_kept_as_an_interrupted_session() {
    let env = Env::new();
    let server = ScriptedServer::start([hanging("Half"), Answer::text("Whole answer.").reply()]).await;
    env.scripted(&server, "");
    let out = interrupt(&env, &server, &["chat", "a question"], 1, Signal::SIGKILL).await;
    assert_eq!(out.status.code(), None);
    let listed = sessions(&env).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["message_count"].as_u64(), listed[0]["interrupted"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(listed[0]["title"], "a question");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_finished_before_a_kill_is_not_run_again_and_the_running_one_is_reported_interrupted() {
    killed_between_two_tool_calls("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_tool_that_finished_before_a_kill_is_not_run_again() {
    let db = super::peers::Database::create();
    killed_between_two_tool_calls(&format!("[storage]\nurl = \"{}\"\n", db.url())).await;
}

/// SIGKILL while the second of two tool calls runs (the first has left its side effect), with
/// `storage` as the config's storage section; then the next message on the session resumes the
/// turn: the first call is not run again, the model gets both results (the second reported
/// interrupted), and the session is whole.
async fn killed_between_two_tool_calls(storage: &str) {
    let env = Env::new();
    let log = env.ws().join("side-effects.log");
    let server = exoclaw_testkit::script::serve([
        Answer::tools([
            ("c1", "shell", serde_json::json!({"command": "echo ran >> side-effects.log"})),
            ("c2", "shell", serde_json::json!({"command": "sleep 30"})),
        ]),
        Answer::text("Both calls are accounted for."),
        Answer::text("Nothing more."),
    ])
    .await;
    env.scripted(&server, storage);
    let mut cmd = env.std_cmd();
    cmd.args(["chat", "--yes", "run both"]).stdin(std::process::Stdio::null());
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !log.exists() {
        assert!(std::time::Instant::now() < deadline, "the first tool never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the first result's checkpoint be written; the second call sleeps on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert_eq!(sessions(&env).await[0]["interrupted"], true);

    let id = sessions(&env).await[0]["id"].as_str().unwrap().to_owned();
    let out = env.run(&["chat", "--yes", "--session", &id, "and now?"]).await;
    ok(&out);
    assert_eq!(read(&log), "ran\n", "the finished call ran once");
    let requests = server.requests();
    let resumed = tool_messages(&requests[1].body);
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    assert_eq!(resumed[0].0, "c1");
    assert_eq!(resumed[1].0, "c2");
    assert!(resumed[1].1.contains("interrupted"), "{resumed:?}");
    let after = sessions(&env).await;
    assert_ne!(after[0]["interrupted"], true);
    // The question, the two calls with both results, the answer; then the new message and its
    // answer.
    assert_eq!(after[0]["message_count"], 6, "{after:?}");
}
