//! Sessions as a user meets them: continued, listed, shown, exported, deleted.

use super::*;
use exoclaw_testkit::script::{Answer, request_messages, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_session_sends_the_earlier_turns_and_every_command_sees_it() {
    let env = Env::new();
    let server =
        serve([Answer::text("Nice to meet you, Ada."), Answer::text("Your name is Ada."), Answer::text("-")])
            .await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "My name is Ada."]).await);
    let out = env.run(&["chat", "--continue", "What is my name?"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "Your name is Ada.\n");
    let second = &server.requests()[1].body;
    let texts: Vec<String> = request_messages(second)
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| format!("{}: {}", m["role"].as_str().unwrap(), m["content"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        texts,
        ["user: My name is Ada.", "assistant: Nice to meet you, Ada.", "user: What is my name?"]
    );

    let list = env.run(&["session", "list", "--json"]).await;
    ok(&list);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["message_count"], 4);
    assert_eq!(sessions[0]["title"], "My name is Ada.");
    assert_eq!(sessions[0]["model"], "script/scripted");
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let json = env.run(&["chat", "--json", "-c", "and now?"]).await;
    let started = events(&json).into_iter().next();
    assert!(
        matches!(&started, Some(AgentEvent::TurnStarted { session_id, .. }) if session_id.to_string() == id),
        "TurnStarted names the stored session: {started:?}"
    );

    let table = env.run(&["session", "list"]).await;
    ok(&table);
    assert!(stdout(&table).contains(&id) && stdout(&table).contains("My name is Ada."));

    let show = env.run(&["session", "show", &id[..8]]).await;
    ok(&show);
    assert!(stdout(&show).contains("## You\n\nWhat is my name?"), "{}", stdout(&show));
    assert!(stdout(&show).contains("## Assistant\n\nYour name is Ada."), "{}", stdout(&show));

    let export = env.run(&["session", "export", &id, "--format", "json"]).await;
    ok(&export);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&export)).unwrap();
    assert_eq!(doc["session"]["id"], id.as_str());
    assert_eq!(doc["messages"].as_array().unwrap().len(), 6);
    let file = env.ws().join("chat.md");
    ok(&env.run(&["session", "export", &id, "--format", "md", "-o", file.to_str().unwrap()]).await);
    assert!(read(&file).starts_with("# My name is Ada."));

    ok(&env.run(&["session", "delete", &id]).await);
    let gone = env.run(&["session", "show", &id]).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("exoclaw session list"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_ambiguous_session_is_a_clear_error() {
    let env = Env::new();
    let server = serve([]).await;
    env.scripted(&server, "");
    let out = env.run(&["chat", "--session", "0190e4a4-0000-7000-8000-000000000000", "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no session 0190e4a4"), "{}", stderr(&out));
    let out = env.run(&["chat", "--continue", "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no session to continue"), "{}", stderr(&out));
    assert!(server.requests().is_empty(), "no model call for a turn that cannot start");
}

/// Nothing that could drive a terminal: ESC, BEL, CR, the one-character CSI, a bidi override.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars().filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}').collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_titles_and_messages_are_escaped_on_the_terminal() {
    use exoclaw_core::{NewSession, SessionStore};
    let env = Env::new();
    // A title as another writer of the store (an older exoclaw, a gateway client) may have left it.
    let hostile = "\x1b[2J\x1b]0;owned\x07boom\r\u{9b}31m\u{202e}txt.exe";
    let url = format!("sqlite://{}", env.home.path().join("exoclaw.db").display());
    let store = exoclaw_store::Store::open(&url).await.unwrap();
    store
        .create_session(NewSession {
            title: Some(hostile.into()),
            model: Some("m/\x1b[5m".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    drop(store);
    let list = env.run(&["session", "list"]).await;
    ok(&list);
    let text = stdout(&list);
    assert_eq!(raw_controls(&text), Vec::<char>::new(), "{text:?}");
    assert!(text.contains(r"\x1b[2J\x1b]0;owned\x07boom\r\u{9b}31m\u{202e}txt.exe"), "{text}");
    assert!(text.contains(r"m/\x1b[5m"), "{text}");

    // A message with escapes: its title is made without them, and `show` prints them escaped.
    let server = serve([Answer::text("Noted.")]).await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "\x1b[2J\x1b[1mhello\x1b[0m\x07 there"]).await);
    let json = env.run(&["session", "list", "--json"]).await;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(sessions[0]["title"], "hello  there");
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let show = env.run(&["session", "show", &id]).await;
    ok(&show);
    assert_eq!(raw_controls(&stdout(&show)), Vec::<char>::new(), "{:?}", stdout(&show));
    assert!(stdout(&show).contains(r"\x1b[2J\x1b[1mhello\x1b[0m\x07 there"), "{}", stdout(&show));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_session_take_turns_and_no_wait_names_the_holder() {
    use exoclaw_testkit::server::ScriptedServer;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let env = Env::new();
    // The second answer is slow, so the first process holds the session while the others try.
    let server = ScriptedServer::start([
        Answer::text("Started.").reply(),
        Answer::text("Slow answer.").reply().delayed(Duration::from_secs(3)),
        Answer::text("Waited answer.").reply(),
    ])
    .await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "first"]).await);
    let spawn = |args: &[&str]| {
        let mut cmd = env.std_cmd();
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let holder = spawn(&["chat", "-c", "slow question"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the first process never asked the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = env.run(&["chat", "-c", "--no-wait", "impatient"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("is in use by pid"), "{}", stderr(&refused));
    let waiter = spawn(&["chat", "-c", "patient question"]);
    let holder = tokio::task::spawn_blocking(move || holder.wait_with_output().unwrap()).await.unwrap();
    let waiter = tokio::task::spawn_blocking(move || waiter.wait_with_output().unwrap()).await.unwrap();
    ok(&holder);
    ok(&waiter);
    assert_eq!(stdout(&waiter), "Waited answer.\n");

    // The waiting turn saw the slow one's answer: the turns did not interleave.
    let third = &server.requests()[2].body;
    let texts: Vec<String> = request_messages(third)
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(texts, ["first", "Started.", "slow question", "Slow answer.", "patient question"]);
    let list = env.run(&["session", "list", "--json"]).await;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(sessions[0]["message_count"], 6, "nothing lost: the impatient message was never stored");
}
