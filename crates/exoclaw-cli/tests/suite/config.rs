//! The config commands and what a broken config file gets.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_config_names_the_file_line_and_column() {
    let env = Env::new();
    env.config("model = \"local/smollm2\"\n\n[agent]\nmax_iteratons = 3\n");
    let out = env.run(&["chat", "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:4:1", env.config_path().display())), "{err}");
    assert!(err.contains("max_iteratons"), "{err}");

    env.config("model = \"local/smollm2\"\n[storage\n");
    let out = env.run(&["config", "check"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(":2:"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_documented_file_that_checks_and_show_hides_secrets() {
    let env = Env::new();
    let path = env.config_path();
    let out = env.run(&["config", "init", path.to_str().unwrap()]).await;
    ok(&out);
    assert!(read(&path).lines().filter(|l| l.starts_with('#')).count() > 20, "documented");
    let again = env.run(&["config", "init", path.to_str().unwrap()]).await;
    assert_eq!(again.status.code(), Some(1), "an existing file is not replaced");

    let check = env.run(&["config", "check"]).await;
    ok(&check);
    assert!(stdout(&check).contains("default model: local/smollm2"), "{}", stdout(&check));

    env.config("[providers.work]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-very-secret\"\n");
    let show = env.run(&["config", "show"]).await;
    ok(&show);
    assert!(stdout(&show).contains("[providers.work]"), "{}", stdout(&show));
    assert!(!stdout(&show).contains("sk-very-secret"), "{}", stdout(&show));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_help() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]).await;
        ok(&out);
        assert!(stdout(&out).contains("exoclaw"), "{shell}");
        assert!(stdout(&out).contains("session"), "{shell}: subcommands are completed");
    }
    let help = env.run(&["chat", "--help"]).await;
    ok(&help);
    assert!(stdout(&help).contains("--yes") && stdout(&help).contains("--continue"));
}
