//! The binary against the real embedded model (SmolLM2-135M, from the project's peer script), with
//! no configuration at all: the zero-config first minute.

use super::*;

/// `exoclaw ARGS` with the model cache the project's script fills.
async fn local(env: &Env, args: &[&str]) -> Output {
    let model = exoclaw_testkit::peers::smollm2_gguf();
    let mut cmd = env.std_cmd();
    cmd.env("EXOCLAW_MODELS_DIR", model.parent().unwrap()).args(args).stdin(std::process::Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_an_answer_from_the_embedded_model_with_no_configuration() {
    let env = Env::new();
    let out = local(&env, &["chat", "What is the capital of France?"]).await;
    ok(&out);
    let text = stdout(&out);
    assert!(text.contains("Paris"), "{text:?}");
    assert!(text.ends_with('\n'));
    // Stored in a new SQLite database under the home.
    assert!(env.home.path().join("exoclaw.db").exists());
    let list = env.run(&["session", "list", "--json"]).await;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(sessions[0]["model"], "local/smollm2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_one_agent_event_per_line() {
    let env = Env::new();
    let out =
        local(&env, &["chat", "--json", "--max-tokens", "8", "--model", "local/smollm2", "Hello"]).await;
    ok(&out);
    let events = events(&out);
    assert!(matches!(events.first(), Some(AgentEvent::TurnStarted { .. })), "{events:?}");
    assert!(matches!(events.last(), Some(AgentEvent::Done { .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Usage { .. })));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Text { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_failures_exit_1_with_what_to_do() {
    let env = Env::new();
    let out = env.run(&["chat"]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = env.run(&["chat", "--temperature", "warm", "hi"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--temperature"));

    let out = env.run(&["chat", " "]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("empty"));

    let out = env.run(&["chat", "--model", "acme/x", "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("acme"), "{}", stderr(&out));

    let out = env.run(&["chat", "--model", "anthropic/claude-sonnet-4-5", "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ANTHROPIC_API_KEY"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_model_with_no_server_fails_clearly() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = env.std_cmd();
    cmd.env("LLAMACPP_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .args(["chat", "--model", "llamacpp/any", "hi"])
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr(&out);
    assert!(stderr.contains("connect") && stderr.contains("base_url"), "{stderr}");
    assert!(stderr.contains("the session is kept"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_models() {
    let env = Env::new();
    let out = env.run(&["--version"]).await;
    assert!(stdout(&out).starts_with("exoclaw "));
    let out = env.run(&["models"]).await;
    ok(&out);
    assert!(stdout(&out).contains("local/smollm2"));
}
