//! MCP end to end: `exoclaw mcp list` and a chat turn calling a reference server's tool (npm's
//! server-everything over stdio), and exoclaw's own MCP server (`exoclaw mcp serve` on stdio, the
//! gateway's `/mcp` over streamable HTTP) driven by the official MCP Python SDK.

use super::*;
use exoclaw_testkit::peers::{mcp_reference_server, mcp_sdk_python};
use exoclaw_testkit::script::{Answer, serve};
use serde_json::{Value, json};

fn everything_table() -> String {
    let script = mcp_reference_server("everything");
    format!("[mcp.everything]\ncommand = \"node\"\nargs = [\"{}\", \"stdio\"]\n", script.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_list_shows_each_servers_state_and_tools() {
    let env = Env::new();
    env.config(&format!(
        "{}\n[mcp.broken]\ncommand = \"exoclaw-no-such-server\"\nstartup_timeout_secs = 5\n",
        everything_table()
    ));
    let out = env.run(&["mcp", "list", "--wait", "60"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "a server that is down fails the listing: {text}");
    assert!(text.contains("everything (") && text.contains(": ready"), "{text}");
    assert!(text.contains("everything__echo"), "{text}");
    assert!(text.contains("broken: down") && text.contains("could not be started"), "{text}");

    let out = env.run(&["mcp", "list", "--json"]).await;
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let everything = listed.as_array().unwrap().iter().find(|s| s["name"] == "everything").unwrap();
    assert_eq!(everything["state"], "ready");
    let long = everything["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["remote_name"] == "trigger-long-running-operation");
    assert_eq!(long.unwrap()["effect"], "read_only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_turn_calls_an_mcp_tool_and_the_model_reads_its_answer() {
    let env = Env::new();
    let server = serve([
        Answer::tool("call_1", "everything__echo", json!({"message": "from the model"})),
        Answer::text("The server echoed it."),
    ])
    .await;
    env.scripted(
        &server,
        &format!("[permissions]\ntools = {{ everything__echo = \"allow\" }}\n{}", everything_table()),
    );
    // The first run lists the server's tools and keeps them, so a one-shot chat offers them from
    // its first turn without waiting for the server.
    ok(&env.run(&["mcp", "list"]).await);
    let out = env.run(&["chat", "Echo something"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "The server echoed it.\n");
    let requests = server.requests();
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(offered.contains(&"everything__echo"), "{offered:?}");
    let results = tool_messages(&requests[1].body);
    assert_eq!(results, [("call_1".to_owned(), "Echo: from the model".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_mcp_table_is_refused_before_anything_runs() {
    let env = Env::new();
    env.config("[mcp.both]\ncommand = \"node\"\nurl = \"http://127.0.0.1:1/mcp\"\n");
    let out = env.run(&["chat", "hi"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[mcp.both]") && stderr(&out).contains("not both"), "{}", stderr(&out));
}

/// A workspace with a note to read and a secret its own rules deny reading.
fn workspace_with_a_denied_secret(env: &Env) {
    std::fs::write(env.ws().join("notes.txt"), "the launch code is 4711\n").unwrap();
    std::fs::create_dir_all(env.ws().join("secret")).unwrap();
    std::fs::write(env.ws().join("secret/key.txt"), "sk-hidden\n").unwrap();
    // The workspace's own rules may deny, trusted or not; each MCP call is checked against them.
    std::fs::create_dir_all(env.ws().join(".exoclaw")).unwrap();
    std::fs::write(
        env.ws().join(".exoclaw/permissions.toml"),
        "[[rules]]\ntool = \"read_file\"\npath = \"secret/**\"\npermission = \"deny\"\n",
    )
    .unwrap();
}

/// Runs `tests/mcp_client_sdk.py` with `args` and gives its report.
async fn python_sdk_client(args: &[&std::ffi::OsStr], env: &Env) -> Value {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client_sdk.py");
    let mut cmd = std::process::Command::new(mcp_sdk_python());
    let exoclaw_env = env.std_cmd();
    cmd.arg(&client)
        .args(args)
        .envs(exoclaw_env.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .env_remove("OPENAI_API_KEY");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap()
}

/// What every exoclaw MCP server offers by default, seen by the client.
fn assert_offers_the_allowed_tools_and_agents(report: &Value) {
    let tools: Vec<&str> = report["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"read_file"), "read-only tools are offered: {tools:?}");
    assert!(!tools.contains(&"shell"), "tools that would ask are not offered without --yes: {tools:?}");
    assert!(tools.contains(&"ask_default"), "the default agent is offered: {tools:?}");
    assert!(report["read_file"].as_str().unwrap().contains("the launch code is 4711"), "{report}");
    assert_eq!(report["denied_is_error"], true, "{report}");
    let denied = report["denied"].as_str().unwrap();
    assert!(denied.contains("deny") && !denied.contains("sk-hidden"), "{denied}");
    assert_eq!(report["ask_default"], "Paris.");
    assert_eq!(report["missing_is_error"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_serve_offers_tools_and_agents_to_the_official_python_sdk() {
    let env = Env::new();
    workspace_with_a_denied_secret(&env);
    let server = serve([Answer::text("Paris.")]).await;
    env.scripted(&server, "");
    let exe = assert_cmd::cargo::cargo_bin("exoclaw");
    // The SDK starts `exoclaw mcp serve` itself, with this test's home and workspace.
    let report = python_sdk_client(&["stdio".as_ref(), exe.as_os_str(), env.ws().as_os_str()], &env).await;
    assert_offers_the_allowed_tools_and_agents(&report);
    // The agent's turn went to the model.
    assert_eq!(server.requests().len(), 1);
    // The client's calls are in the audit log as the agent `mcp`: allowed, and denied by the rule.
    let out = env.run(&["audit", "--tool", "read_file", "--json"]).await;
    ok(&out);
    let entries: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let decided: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["agent"] == "mcp" && e["event"] == "decided")
        .map(|e| (e["resources"][0]["path"].as_str().unwrap_or(""), e["permission"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(decided, [("notes.txt", "allow"), ("secret/key.txt", "deny")], "{entries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_mcp_over_streamable_http_to_operator_tokens_only() {
    let env = Env::new();
    workspace_with_a_denied_secret(&env);
    let server = serve([Answer::text("Paris.")]).await;
    let token = "operator-secret-7";
    let hash = exoclaw_gateway::hash_token(token);
    env.scripted(&server, &format!("[gateway]\nmcp = true\ntoken_hashes = [\"{hash}\"]\n"));
    let gateway = super::gateway::start(&env, &[]).await;
    let url = format!("{}/mcp", gateway.base);

    // Without the operator token, nothing: not even the tool list.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}});
    let refused = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let report = python_sdk_client(&["http".as_ref(), url.as_ref(), token.as_ref()], &env).await;
    assert_offers_the_allowed_tools_and_agents(&report);
    assert_eq!(server.requests().len(), 1);
}
