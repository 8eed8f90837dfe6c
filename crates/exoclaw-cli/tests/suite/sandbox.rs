//! The sandbox as a user meets it: the model's `shell` commands run where they cannot read
//! exoclaw's configuration or inherit the provider keys, and `--sandbox read-only` writes nothing.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use serde_json::json;

/// Runs one turn in which the model runs `command` with the shell, with `ANTHROPIC_API_KEY` in
/// exoclaw's environment, and gives what the shell answered.
async fn shell_turn(env: &Env, command: &str, extra_args: &[&str]) -> String {
    let server =
        serve([Answer::tool("s1", "shell", json!({"command": command})), Answer::text("Done.")]).await;
    env.scripted(&server, "");
    let mut cmd = env.std_cmd();
    cmd.env("ANTHROPIC_API_KEY", "sk-ant-from-the-parent")
        .args(["chat", "--yes", "--json"])
        .args(extra_args)
        .arg("Run it")
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    ok(&out);
    let results = tool_messages(&server.requests()[1].body);
    results.into_iter().next().map(|(_, text)| text).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_commands_cannot_read_exoclaws_config_or_its_keys_but_write_the_workspace() {
    let env = Env::new();
    let command = format!(
        "cat '{}'; echo \"key=[$ANTHROPIC_API_KEY]\"; touch made.txt && echo made",
        env.config_path().display()
    );
    let answer = shell_turn(&env, &command, &[]).await;
    assert!(!answer.contains("sk-test-secret"), "the config's key stays hidden: {answer}");
    assert!(answer.contains("key=[]"), "the provider key is not inherited: {answer}");
    assert!(answer.contains("made") && env.ws().join("made.txt").exists(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_read_only_lets_a_command_read_the_workspace_but_write_nothing() {
    let env = Env::new();
    std::fs::write(env.ws().join("notes.txt"), "kept as it was\n").unwrap();
    let answer = shell_turn(
        &env,
        "cat notes.txt; echo changed > notes.txt; touch made.txt",
        &["--sandbox", "read-only"],
    )
    .await;
    assert!(answer.contains("kept as it was"), "{answer}");
    assert_eq!(std::fs::read_to_string(env.ws().join("notes.txt")).unwrap(), "kept as it was\n");
    assert!(!env.ws().join("made.txt").exists(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sandbox_mode_is_refused_with_the_modes() {
    let env = Env::new();
    let out = env.run(&["chat", "--sandbox", "yolo", "hi"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("read-only, workspace-write or full-access"), "{}", stderr(&out));
}
