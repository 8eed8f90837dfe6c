//! The MCP client against the official reference servers from npm (everything, filesystem,
//! memory), run with node over stdio, and against a deliberately misbehaving server for what no
//! reference server does on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::{ToolContext, ToolError, ToolSource};
use exoclaw_mcp::{McpError, McpOptions, McpServers, ServerConfig, ServerState};
use exoclaw_testkit::peers::mcp_reference_server;
use exoclaw_types::ToolEffect;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);

fn node(server: &str, args: &[&str]) -> ServerConfig {
    let script = mcp_reference_server(server);
    let mut all = vec![script.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    ServerConfig::stdio("node", all)
}

fn fixture(mode: &str) -> ServerConfig {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/misbehaving_server.py");
    ServerConfig::stdio("python3", [script.display().to_string(), mode.to_owned()])
}

/// A shell command line as a stdio server.
fn sh(script: &str) -> ServerConfig {
    ServerConfig::stdio("sh", ["-c", script])
}

fn start(servers: &[(&str, ServerConfig)]) -> McpServers {
    let configs: BTreeMap<String, ServerConfig> =
        servers.iter().map(|(name, config)| ((*name).to_owned(), config.clone())).collect();
    McpServers::start(&configs, McpOptions::default()).unwrap()
}

async fn ready(servers: &McpServers, name: &str) {
    let state = servers.ready(name, READY).await.unwrap();
    assert_eq!(state, ServerState::Ready, "{name}: {}", state.describe());
}

fn ctx() -> ToolContext {
    ToolContext::new(std::env::temp_dir())
}

async fn call(servers: &McpServers, tool: &str, args: Value) -> Result<String, ToolError> {
    let tool = servers.get(tool).unwrap_or_else(|| panic!("no tool {tool}"));
    tool.call(args, &ctx()).await
}

fn offered(servers: &McpServers) -> Vec<String> {
    servers.tools().iter().map(|t| t.spec().name).collect()
}

#[tokio::test]
async fn the_everything_servers_tools_are_offered_namespaced_and_answer() {
    let servers = start(&[("everything", node("everything", &["stdio"]))]);
    ready(&servers, "everything").await;
    let names = offered(&servers);
    assert!(names.contains(&"everything__echo".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("everything__")), "{names:?}");
    assert_eq!(call(&servers, "everything__echo", json!({"message": "hi"})).await.unwrap(), "Echo: hi");
    let sum = call(&servers, "everything__get-sum", json!({"a": 2, "b": 3})).await.unwrap();
    assert!(sum.contains('5'), "{sum}");
    let status = &servers.status()[0];
    assert!(status.identity.is_some());
    servers.shutdown().await;
}

#[tokio::test]
async fn annotations_set_each_tools_effect() {
    let servers = start(&[("everything", node("everything", &["stdio"]))]);
    ready(&servers, "everything").await;
    let effect = |name: &str| servers.get(name).unwrap().effect();
    // readOnlyHint: true.
    assert_eq!(effect("everything__echo"), ToolEffect::ReadOnly);
    // readOnlyHint: false, openWorldHint: true.
    assert_eq!(effect("everything__gzip-file-as-resource"), ToolEffect::External);
    // readOnlyHint: false, openWorldHint: false.
    assert_eq!(effect("everything__toggle-simulated-logging"), ToolEffect::Mutating);
    servers.shutdown().await;
}

#[tokio::test]
async fn a_tool_error_and_bad_arguments_reach_the_model_as_failures() {
    let servers = start(&[("everything", node("everything", &["stdio"]))]);
    ready(&servers, "everything").await;
    let err = call(&servers, "everything__get-sum", json!({"a": "not a number"})).await.unwrap_err();
    assert!(matches!(err, ToolError::Failed(_)), "{err:?}");
    let err = call(&servers, "everything__echo", json!("a string")).await.unwrap_err();
    assert!(matches!(err, ToolError::InvalidArguments(_)), "{err:?}");
    servers.shutdown().await;
}

#[tokio::test]
async fn a_call_past_the_servers_timeout_fails_and_a_cancelled_one_stops_at_once() {
    let config = ServerConfig { tool_timeout_secs: Some(1), ..node("everything", &["stdio"]) };
    let servers = start(&[("everything", config)]);
    ready(&servers, "everything").await;
    let long = json!({"duration": 30, "steps": 30});
    let err = call(&servers, "everything__trigger-long-running-operation", long.clone()).await.unwrap_err();
    assert_eq!(err, ToolError::Timeout(Duration::from_secs(1)));

    let tool = servers.get("everything__trigger-long-running-operation").unwrap();
    let ctx = ctx();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    assert_eq!(tool.call(long, &ctx).await.unwrap_err(), ToolError::Cancelled);
    // The server is still there for the next call.
    assert_eq!(call(&servers, "everything__echo", json!({"message": "after"})).await.unwrap(), "Echo: after");
    servers.shutdown().await;
}

#[tokio::test]
async fn resources_and_prompts_are_readable() {
    let servers = start(&[("everything", node("everything", &["stdio"]))]);
    ready(&servers, "everything").await;
    let resources = servers.resources("everything").await.unwrap();
    assert!(!resources.is_empty());
    let text_resource =
        resources.iter().find(|r| r.mime_type.as_deref().is_some_and(|m| m.starts_with("text/"))).unwrap();
    let text = servers.read_resource("everything", &text_resource.uri).await.unwrap();
    assert!(!text.is_empty());
    let prompts = servers.prompts("everything").await.unwrap();
    let simple = prompts.iter().find(|p| p.name.contains("simple")).unwrap();
    let messages = servers.prompt("everything", &simple.name, BTreeMap::new()).await.unwrap();
    assert!(messages.starts_with("user: "), "{messages}");
    let err = servers.resources("nope").await.unwrap_err();
    assert!(matches!(err, McpError::UnknownServer { .. }), "{err}");
    servers.shutdown().await;
}

#[tokio::test]
async fn the_filesystem_server_reads_only_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "buy milk\n").unwrap();
    let folder = dir.path().canonicalize().unwrap().display().to_string();
    let servers = start(&[("files", node("filesystem", &[&folder]))]);
    ready(&servers, "files").await;
    let file = format!("{folder}/notes.txt");
    let text = call(&servers, "files__read_text_file", json!({"path": file})).await.unwrap();
    assert_eq!(text.trim(), "buy milk");
    assert_eq!(servers.get("files__read_text_file").unwrap().effect(), ToolEffect::ReadOnly);
    let outside =
        call(&servers, "files__read_text_file", json!({"path": "/etc/hostname"})).await.unwrap_err();
    assert!(outside.to_string().to_lowercase().contains("denied"), "{outside}");
    servers.shutdown().await;
}

#[tokio::test]
async fn the_memory_server_keeps_what_it_is_told_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memory.jsonl");
    let mut config = node("memory", &[]);
    config.env.insert("MEMORY_FILE_PATH".into(), file.display().to_string());
    let servers = start(&[("memory", config)]);
    ready(&servers, "memory").await;
    let entity =
        json!({"entities": [{"name": "Ada", "entityType": "person", "observations": ["writes Rust"]}]});
    call(&servers, "memory__create_entities", entity).await.unwrap();
    let graph = call(&servers, "memory__read_graph", json!({})).await.unwrap();
    assert!(graph.contains("writes Rust"), "{graph}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("Ada"));
    servers.shutdown().await;
}

#[tokio::test]
async fn starting_returns_at_once_and_a_slow_servers_tools_appear_when_it_is_ready() {
    let script = mcp_reference_server("everything");
    let slow = sh(&format!("sleep 2; exec node '{}' stdio", script.display()));
    let before = Instant::now();
    let servers = start(&[("slow", slow)]);
    assert!(before.elapsed() < Duration::from_secs(1));
    assert!(offered(&servers).is_empty(), "nothing is offered before the server is ready");
    assert_eq!(servers.status()[0].state, ServerState::Starting { attempt: 0 });
    ready(&servers, "slow").await;
    assert!(offered(&servers).contains(&"slow__echo".to_owned()));
    servers.shutdown().await;
}

#[tokio::test]
async fn a_server_that_crashes_is_restarted_and_its_tools_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = mcp_reference_server("everything");
    let config = sh(&format!("echo $$ > '{}'; exec node '{}' stdio", pid_file.display(), script.display()));
    let servers = start(&[("crashy", config)]);
    ready(&servers, "crashy").await;
    let echo = servers.get("crashy__echo").unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();

    // Withdrawn while it is down, and a call already offered says why.
    let deadline = Instant::now() + READY;
    while servers.status()[0].state == ServerState::Ready && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first restart waits a second, so the server is still down here.
    assert_ne!(servers.status()[0].state, ServerState::Ready);
    assert!(offered(&servers).is_empty());
    let err = echo.call(json!({"message": "x"}), &ctx()).await.unwrap_err().to_string();
    assert!(err.contains("`crashy` is not available"), "{err}");
    ready(&servers, "crashy").await;
    let new_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_ne!(new_pid, pid, "a new process serves it");
    assert_eq!(echo.call(json!({"message": "back"}), &ctx()).await.unwrap(), "Echo: back");
    servers.shutdown().await;
}

#[tokio::test]
async fn a_tool_list_change_is_followed() {
    let servers = start(&[("changing", fixture("list-change"))]);
    ready(&servers, "changing").await;
    assert_eq!(offered(&servers), ["changing__first"]);
    assert_eq!(call(&servers, "changing__first", json!({})).await.unwrap(), "first ran");
    let deadline = Instant::now() + READY;
    while offered(&servers).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(offered(&servers), ["changing__first", "changing__second"]);
    servers.shutdown().await;
}

#[tokio::test]
async fn a_tool_with_an_invalid_schema_is_left_out_with_the_reason_and_the_rest_work() {
    let servers = start(&[("odd", fixture("bad-schema"))]);
    ready(&servers, "odd").await;
    assert_eq!(offered(&servers), ["odd__good"]);
    let status = &servers.status()[0];
    assert_eq!(status.skipped.len(), 1);
    assert_eq!(status.skipped[0].name, "bad");
    assert!(status.skipped[0].why.contains("not valid JSON Schema"), "{}", status.skipped[0].why);
    assert_eq!(call(&servers, "odd__good", json!({})).await.unwrap(), "good ran");
    servers.shutdown().await;
}

#[tokio::test]
async fn garbage_on_stdout_between_messages_is_skipped() {
    let servers = start(&[("noisy", fixture("garbage"))]);
    ready(&servers, "noisy").await;
    assert_eq!(call(&servers, "noisy__good", json!({})).await.unwrap(), "good ran");
    servers.shutdown().await;
}

#[tokio::test]
async fn a_server_that_never_answers_initialize_times_out_naming_itself_and_others_still_work() {
    let silent = ServerConfig { startup_timeout_secs: Some(1), ..fixture("silent") };
    let servers = start(&[("silent", silent), ("everything", node("everything", &["stdio"]))]);
    ready(&servers, "everything").await;
    let deadline = Instant::now() + READY;
    let error = loop {
        if let ServerState::Waiting { error, .. } = &servers.status()[1].state {
            break error.clone();
        }
        assert!(Instant::now() < deadline, "the silent server never timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(matches!(error, McpError::StartupTimeout { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("`silent`") && text.contains("startup_timeout_secs"), "{text}");
    assert_eq!(call(&servers, "everything__echo", json!({"message": "ok"})).await.unwrap(), "Echo: ok");
    servers.shutdown().await;
}

#[tokio::test]
async fn a_command_that_does_not_exist_says_so_with_its_stderr() {
    let servers = start(&[("missing", ServerConfig::stdio("exoclaw-no-such-program", ["x"]))]);
    servers.settled(READY).await;
    let ServerState::Waiting { error, .. } = servers.status()[0].state.clone() else {
        panic!("{:?}", servers.status()[0].state)
    };
    let text = error.to_string();
    assert!(text.contains("`missing` could not be started") && text.contains("PATH"), "{text}");

    let crashing = sh("echo 'fatal: no config' >&2; exit 3");
    let servers = start(&[("crashing", crashing)]);
    servers.settled(READY).await;
    let ServerState::Waiting { error, .. } = servers.status()[0].state.clone() else {
        panic!("{:?}", servers.status()[0].state)
    };
    assert!(error.to_string().contains("fatal: no config"), "{error}");
}

#[tokio::test]
async fn shutting_down_stops_the_server_process() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file: PathBuf = dir.path().join("pid");
    let script = mcp_reference_server("everything");
    let config = sh(&format!("echo $$ > '{}'; exec node '{}' stdio", pid_file.display(), script.display()));
    let servers = start(&[("everything", config)]);
    ready(&servers, "everything").await;
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    servers.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "the server process is still running: {stat}");
    assert_eq!(servers.status()[0].state, ServerState::Stopped);
}

#[tokio::test]
async fn a_servers_last_tool_list_is_offered_at_the_next_start_and_a_call_waits_for_it() {
    let cache = tempfile::tempdir().unwrap();
    let script = mcp_reference_server("everything");
    let slow = |delay: &str| {
        let mut config = sh(&format!("sleep ${{DELAY:-0}}; exec node '{}' stdio", script.display()));
        config.env.insert("DELAY".into(), delay.into());
        BTreeMap::from([("slow".to_owned(), config)])
    };
    let options = McpOptions { tool_cache: Some(cache.path().to_path_buf()), ..McpOptions::default() };
    let first = McpServers::start(&slow("0"), options.clone()).unwrap();
    ready(&first, "slow").await;
    first.shutdown().await;

    let second = McpServers::start(&slow("2"), options).unwrap();
    assert_eq!(second.status()[0].state, ServerState::Starting { attempt: 0 });
    assert!(offered(&second).contains(&"slow__echo".to_owned()), "offered from the cache before it is ready");
    assert_eq!(call(&second, "slow__echo", json!({"message": "early"})).await.unwrap(), "Echo: early");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_server_cannot_read_hidden_files_write_outside_its_folder_or_reach_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(home.join("config.toml"), "api_key = \"sk-secret\"\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sandbox = exoclaw_mcp::ServerSandbox {
        policy: exoclaw_mcp::SandboxPolicy::default(),
        workspace: folder.clone(),
        always_hidden: vec![home.clone()],
    };
    let configs = BTreeMap::from([("probe".to_owned(), fixture("probe"))]);
    let servers =
        McpServers::start(&configs, McpOptions { sandbox: Some(sandbox), tool_cache: None }).unwrap();
    ready(&servers, "probe").await;

    let secret = call(&servers, "probe__read", json!({"path": home.join("config.toml")})).await.unwrap();
    assert!(secret.starts_with("error:") && !secret.contains("sk-secret"), "{secret}");
    let inside = call(&servers, "probe__write", json!({"path": folder.join("made.txt")})).await.unwrap();
    assert_eq!(inside, "written");
    let outside = dir.path().join("outside.txt");
    let refused = call(&servers, "probe__write", json!({"path": outside})).await.unwrap();
    assert!(refused.starts_with("error:"), "{refused}");
    assert!(!outside.exists());
    let connect = call(&servers, "probe__connect", json!({"port": port})).await.unwrap();
    assert!(connect.starts_with("error:"), "the host's loopback is out of reach: {connect}");
    servers.shutdown().await;
}
