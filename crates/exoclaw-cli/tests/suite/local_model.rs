//! The `exoclaw` binary, driven as a user would, against the real embedded model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use exoclaw_types::StreamEvent;

/// `exoclaw` with the model cache the project's script fills, and no cloud keys: the embedded
/// model is the default.
fn exoclaw() -> Command {
    let model = exoclaw_testkit::peers::smollm2_gguf();
    let mut cmd = Command::cargo_bin("exoclaw").unwrap();
    cmd.env("EXOCLAW_MODELS_DIR", model.parent().unwrap()).env("EXOCLAW_OFFLINE", "1");
    for key in [
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "XAI_API_KEY",
        "OPENROUTER_API_KEY",
        "EXOCLAW_MODEL",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

#[test]
fn chat_streams_an_answer_from_the_embedded_model_with_no_configuration() {
    let out =
        exoclaw().args(["chat", "--temperature", "0", "What is the capital of France?"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Paris"), "{text:?}");
    assert!(text.ends_with('\n'));
}

#[test]
fn json_prints_one_event_per_line() {
    let out = exoclaw()
        .args([
            "chat",
            "--json",
            "--temperature",
            "0",
            "--max-tokens",
            "8",
            "--model",
            "local/smollm2",
            "Hello",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<StreamEvent> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(matches!(events.last(), Some(StreamEvent::Finish { .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, StreamEvent::Usage(_))));
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1_with_what_to_do() {
    let out = exoclaw().args(["chat"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = exoclaw().args(["chat", "--model", "nonsense", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("provider/model"));

    let out = exoclaw().args(["chat", "--model", "acme/x", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown provider `acme`"));

    let out = exoclaw().args(["chat", "--model", "anthropic/claude-sonnet-4-5", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ANTHROPIC_API_KEY"));
}

#[test]
fn a_cloud_model_with_no_server_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = exoclaw()
        .env("LLAMACPP_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .args(["chat", "--model", "llamacpp/any", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connect") && stderr.contains("base_url"), "{stderr}");
}

#[test]
fn version_and_models() {
    let out = exoclaw().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("exoclaw "));
    let out = exoclaw().arg("models").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("local/smollm2"));
}
