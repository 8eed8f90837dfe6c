//! The binary against the real embedded model (SmolLM2-135M, from the project's peer script), with
//! no configuration at all: the zero-config first minute.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_an_answer_from_the_embedded_model_with_no_configuration() {
    let env = Env::with_embedded_model();
    let out = env.run(&["chat", "What is the capital of France?"]).await;
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
    let env = Env::with_embedded_model();
    let out = env.run(&["chat", "--json", "--max-tokens", "8", "--model", "local/smollm2", "Hello"]).await;
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

/// A gateway with no configuration file serves the embedded model to the official `openai` SDK,
/// whole and streamed; `local/bogus` is `model_not_found` and leaves `local/smollm2` usable (it
/// used to open the `local` breaker for everyone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_no_configuration_serves_the_embedded_model_to_the_openai_sdk() {
    let python =
        tokio::task::spawn_blocking(|| exoclaw_testkit::peers::obtain("openai-sdk.sh")).await.unwrap();
    let env = Env::with_embedded_model();
    assert!(!env.config_path().exists());
    let gateway = super::gateway::start(&env, &[]).await;
    let ready = reqwest::get(format!("{}/readyz", gateway.base)).await.unwrap();
    assert_eq!(ready.status(), 200, "the embedded model's file is here, so the gateway is ready");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/embedded_model_sdk.py");
    let base = format!("{}/v1", gateway.base);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).args([script, &base]).output().unwrap()
    })
    .await
    .unwrap();
    ok(&out);
    assert!(stdout(&out).contains("embedded model via the openai sdk ok"), "{}", stdout(&out));
}

/// `/readyz` is 503 while no listed model can be opened, and says which and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_why_while_no_model_can_be_opened() {
    let env = Env::new();
    let missing = env.ws().join("missing.gguf");
    env.config(&format!("[local]\nmodel_path = \"{}\"\n", missing.display()));
    let gateway = super::gateway::start(&env, &[]).await;
    let ready = reqwest::get(format!("{}/readyz", gateway.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let why = ready.text().await.unwrap();
    assert!(why.contains("local/smollm2") && why.contains("missing.gguf"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_prints_only_the_json_the_embedded_model_gave_in_that_schema() {
    let env = Env::with_embedded_model();
    let schema = env.ws().join("capital.schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"], "additionalProperties": false}"#,
    )
    .unwrap();
    let out =
        env.run(&["chat", "--json-schema", schema.to_str().unwrap(), "What is the capital of France?"]).await;
    ok(&out);
    // Piped: exactly one line of JSON, nothing else.
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text:?}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(value["city"].is_string() && value["country"].is_string(), "{value}");

    let broken = env.ws().join("broken.json");
    std::fs::write(&broken, "{\"type\": ").unwrap();
    let out = env.run(&["chat", "--json-schema", broken.to_str().unwrap(), "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not JSON"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_answer_stops_and_says_the_model_was_repeating_itself() {
    // The issue's report ("What does notes.txt say?") made the embedded model say one paragraph
    // until killed; this question still does.
    let env = Env::with_embedded_model();
    let out = env.run(&["chat", "What does todo.txt say?"]).await;
    ok(&out);
    assert!(stderr(&out).contains("stopped: the model was repeating itself"), "{}", stderr(&out));
}
