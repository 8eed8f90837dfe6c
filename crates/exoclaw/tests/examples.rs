//! The examples compile (cargo builds them with the tests) and do what they say: each is run as
//! a process against a scripted model behind a real HTTP endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_testkit::script::{Answer, request_messages, serve};
use std::path::PathBuf;

/// The built example `name`, next to this test binary: `target/debug/examples/NAME-HASH` as
/// `cargo test` (and nextest) build it, the newest if there are several.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples");
    let prefix = format!("{name}-");
    let built = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file == name || (file.starts_with(&prefix) && !file.contains('.'))
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    let Some(built) = built else {
        panic!("the example {name} is not built in {}; `cargo test -p exoclaw` builds it", dir.display())
    };
    built.path()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_chat_streams_the_answer_and_stores_the_session() {
    let server = serve([Answer::text("Paris is the capital of France.")]).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    let db = home.path().join("sessions.db");
    std::fs::write(
        &config,
        format!(
            "model = \"script/scripted\"\n[storage]\nurl = \"sqlite://{}\"\n[providers.script]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test\"\n",
            db.display(),
            server.url()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(example("basic_chat"));
    cmd.arg("What is the capital of France?")
        .current_dir(home.path())
        .env("EXOCLAW_HOME", home.path())
        .env("EXOCLAW_CONFIG", &config)
        .env("EXOCLAW_OFFLINE", "1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "Paris is the capital of France.\n");
    assert!(stderr.contains("Completed in session"), "{stderr}");
    let asked = &server.requests()[0].body;
    let users: Vec<&str> = request_messages(asked)
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(users, ["What is the capital of France?"]);

    // The session was stored where the configuration says.
    let store = exoclaw::exoclaw_store::Store::open(&format!("sqlite://{}", db.display())).await.unwrap();
    let sessions = exoclaw::exoclaw_core::SessionStore::list_sessions(&store, 10).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].message_count, 2);
}
