//! Interrupting a turn: Ctrl+C keeps what was said; a SIGKILL loses only the turn in flight.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_turn_leaves_the_database_intact_and_earlier_turns_load() {
    let env = Env::new();
    let server = ScriptedServer::start([
        Answer::text("First answer.").reply(),
        hanging("Second"),
        Answer::text("Third answer.").reply(),
    ])
    .await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "first question"]).await);
    let out = interrupt(&env, &server, &["chat", "-c", "second question"], 2, Signal::SIGKILL).await;
    assert_eq!(out.status.code(), None, "killed by the signal");

    let list = env.run(&["session", "list", "--json"]).await;
    ok(&list);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["message_count"], 2, "only the committed turn is there");

    let out = env.run(&["chat", "-c", "third question"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "Third answer.\n");
    let third = &server.requests()[2].body;
    let users: Vec<&str> = exoclaw_testkit::script::request_messages(third)
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["first question", "third question"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_turn_killed_mid_way_leaves_no_empty_session() {
    let env = Env::new();
    let server = ScriptedServer::start([hanging("Half")]).await;
    env.scripted(&server, "");
    let out = interrupt(&env, &server, &["chat", "a question"], 1, Signal::SIGKILL).await;
    assert_eq!(out.status.code(), None);
    let list = env.run(&["session", "list", "--json"]).await;
    ok(&list);
    assert_eq!(stdout(&list).trim(), "[]");
}
