//! Permission rules, the answers file and the audit log through the real binary.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_lets_a_change_run_unattended_and_the_audit_log_says_why() {
    let env = Env::new();
    let file = env.ws().join("src/main.rs");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "hi\n").unwrap();
    // What answering "always" to an edit in src/ writes.
    std::fs::write(
        env.home.path().join("permissions.toml"),
        "[[rules]]\ntool = \"edit_file\"\npath = \"src/**\"\npermission = \"allow\"\n",
    )
    .unwrap();
    let edit = json!({"path": "src/main.rs", "old_string": "hi", "new_string": "hello"});
    let server = serve([Answer::tool("e1", "edit_file", edit), Answer::text("Done.")]).await;
    env.scripted(&server, "");

    let out = env.run(&["chat", "Say hello"]).await;
    ok(&out);
    assert_eq!(read(&file), "hello\n", "the kept rule allowed it without a prompt or --yes");

    let out = env.run(&["audit", "--json"]).await;
    ok(&out);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let events: Vec<&str> = entries.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["decided", "executed"], "{entries:#?}");
    assert_eq!(entries[0]["permission"], "allow");
    assert_eq!(entries[0]["reason"]["by"], "rule");
    assert_eq!(entries[0]["reason"]["rule"]["path"], "src/**");
    assert!(entries[0]["reason"]["file"].as_str().unwrap().ends_with("permissions.toml"));
    assert_eq!(entries[0]["resources"], json!([{"path": "src/main.rs"}]));
    assert_eq!(entries[1]["ok"], true);

    let out = env.run(&["audit", "--tool", "edit_file"]).await;
    ok(&out);
    let text = stdout(&out);
    assert!(text.contains("edit_file      decided  allow  by rule"), "{text}");
    assert!(text.contains("ran      ok"), "{text}");
    let out = env.run(&["audit", "--tool", "shell"]).await;
    assert!(stdout(&out).contains("no entries that match"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_lists_every_rule_with_its_scope_and_file() {
    let env = Env::new();
    env.config(
        "[permissions]\ntools = { http_fetch = \"deny\" }\n\n[[permissions.rules]]\ntool = \"shell\"\ncommand = \"git status\"\npermission = \"allow\"\n",
    );
    std::fs::write(
        env.home.path().join("permissions.toml"),
        "[[rules]]\ntool = \"write_file\"\npath = \"docs/**\"\npermission = \"allow\"\n",
    )
    .unwrap();
    std::fs::create_dir(env.ws().join(".exoclaw")).unwrap();
    std::fs::write(
        env.ws().join(".exoclaw/permissions.toml"),
        "[[rules]]\ntool = \"*\"\npermission = \"allow\"\n\n[[rules]]\ntool = \"shell\"\ncommand = \"rm\"\npermission = \"deny\"\n",
    )
    .unwrap();
    let out = env.run(&["permissions"]).await;
    ok(&out);
    let text = stdout(&out);
    let row = |needle: &str| {
        text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{text}")).to_owned()
    };
    assert!(row("http_fetch").starts_with("global   deny"), "{text}");
    assert!(row("command git status").ends_with("config.toml"), "{text}");
    assert!(
        row("path docs/**").contains(".exoclaw/permissions.toml")
            || row("path docs/**").ends_with("permissions.toml"),
        "{text}"
    );
    assert!(row("command rm").starts_with("project  deny"), "{text}");
    assert!(row("project  allow").contains("ignored: an untrusted folder may only deny or ask"), "{text}");
    assert!(text.contains("the folder is not trusted"), "{text}");

    let out = env.run(&["permissions", "--json"]).await;
    ok(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["rules"].as_array().unwrap().len(), 5);
    assert_eq!(report["project"]["trusted"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_permissions_file_is_an_error_naming_its_line() {
    let env = Env::new();
    std::fs::write(
        env.home.path().join("permissions.toml"),
        "[[rules]]\ntool = \"shell\"\npermision = \"allow\"\n",
    )
    .unwrap();
    let out = env.run(&["permissions"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("permissions.toml:3:") && err.contains("permision"), "{err}");
}
