//! The plugin host against hand-written modules (`tests/fixtures/*.wat`, Extism's ABI without a
//! PDK): a well-behaved tool, and plugins that trap, spin, hog memory, reach for a host they were
//! not granted, or answer garbage. Each must fail alone, with a message that says which limit it
//! hit, while the host and the other plugins go on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::{Tool, ToolContext, ToolError};
use exoclaw_wasm::{
    Capabilities, Installed, Kind, LoadedPlugin, PluginDir, PluginError, PluginHost, Plugins,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A private plugins folder.
fn plugin_home() -> (tempfile::TempDir, PluginDir) {
    let home = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(home.path());
    (home, plugins)
}

/// Installs the fixture `fixture.wat` as the tool plugin `name` asking for `capabilities`, all
/// granted.
fn install(plugins: &PluginDir, name: &str, fixture: &str, capabilities: &str) -> Installed {
    let source = tempfile::tempdir().unwrap();
    let manifest = source.path().join("plugin.toml");
    std::fs::write(
        &manifest,
        format!("name = \"{name}\"\nversion = \"1.0.0\"\nkind = \"tool\"\n[capabilities]\n{capabilities}\n"),
    )
    .unwrap();
    // wasmtime reads the text format as well as the binary one.
    std::fs::copy(
        Path::new(FIXTURES).join(format!("{fixture}.wat")),
        source.path().join(format!("{name}.wasm")),
    )
    .unwrap();
    let asked = exoclaw_wasm::Manifest::load(&manifest).unwrap().capabilities;
    plugins.install(&manifest, asked).unwrap()
}

fn load(installed: &Installed) -> Arc<LoadedPlugin> {
    Arc::new(PluginHost::uncached().load(installed, &BTreeMap::new()).unwrap())
}

fn tool(installed: &Installed) -> Arc<dyn Tool> {
    let plugin = load(installed);
    let mut tools = exoclaw_wasm::plugin_tools(&plugin, "test sandbox").unwrap();
    assert_eq!(tools.len(), 1);
    Arc::new(tools.remove(0))
}

async fn call(tool: &Arc<dyn Tool>, args: Value) -> Result<String, ToolError> {
    tool.call(args, &ToolContext::new(std::env::temp_dir())).await
}

fn failure(result: Result<String, ToolError>) -> String {
    match result {
        Err(ToolError::Failed(message)) => message,
        other => panic!("expected a failed call, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tool_plugins_tools_are_namespaced_and_get_their_arguments() {
    let (_home, plugins) = plugin_home();
    let echo = tool(&install(&plugins, "echo-box", "echo_tool", ""));
    let spec = echo.spec();
    assert_eq!(spec.name, "echo_box__echo");
    assert_eq!(spec.description, "Says back what it is given");
    assert_eq!(spec.input_schema["required"], json!(["text"]));
    assert_eq!(echo.effect(), exoclaw_types::ToolEffect::ReadOnly);
    let output = call(&echo, json!({"text": "hi"})).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&output).unwrap(),
        json!({"tool": "echo", "arguments": {"text": "hi"}})
    );
    // Warm instance, same answer.
    let again = call(&echo, json!({"text": "again"})).await.unwrap();
    assert!(again.contains("again"), "{again}");
}

#[tokio::test]
async fn a_trap_fails_that_call_only_and_the_next_call_runs_on_a_fresh_instance() {
    let (_home, plugins) = plugin_home();
    let boom = tool(&install(&plugins, "boom", "trap", ""));
    let echo = tool(&install(&plugins, "echo", "echo_tool", ""));
    for _ in 0..2 {
        let message = failure(call(&boom, json!({})).await);
        assert!(message.contains("the plugin `boom` failed in `call`: it crashed"), "{message}");
        assert!(message.contains("unreachable"), "{message}");
    }
    assert!(call(&echo, json!({"text": "still here"})).await.unwrap().contains("still here"));
}

#[tokio::test]
async fn a_runaway_loop_is_stopped_by_the_time_limit_or_by_fuel() {
    let (_home, plugins) = plugin_home();
    let timed = tool(&install(&plugins, "spin", "spin", "timeout_ms = 200"));
    let message = failure(call(&timed, json!({})).await);
    assert!(message.contains("did not finish within 200 ms (its timeout_ms)"), "{message}");

    let fuelled = tool(&install(&plugins, "spin-fuel", "spin", "timeout_ms = 60000\nfuel = 1000000"));
    let message = failure(call(&fuelled, json!({})).await);
    assert!(message.contains("ran out of its instruction budget"), "{message}");
}

#[tokio::test]
async fn a_cancelled_turn_stops_a_running_plugin_at_once() {
    let (_home, plugins) = plugin_home();
    let spin = tool(&install(&plugins, "spin", "spin", "timeout_ms = 60000"));
    let ctx = ToolContext::new(std::env::temp_dir());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        cancel.cancel();
    });
    assert_eq!(spin.call(json!({}), &ctx).await, Err(ToolError::Cancelled));
}

#[tokio::test]
async fn memory_past_the_cap_is_refused_at_growth_and_at_instantiation() {
    let (_home, plugins) = plugin_home();
    let hog = tool(&install(&plugins, "hog", "grow", "memory_mib = 4"));
    let message = failure(call(&hog, json!({})).await);
    assert!(message.contains("more than its 4 MiB of memory"), "{message}");

    let big = install(&plugins, "big", "memory_min_too_big", "memory_mib = 16");
    let error = PluginHost::uncached().load(&big, &BTreeMap::new()).unwrap_err().to_string();
    assert!(error.contains("the plugin `big` cannot be loaded"), "{error}");
    assert!(error.contains("16 MiB"), "{error}");
}

#[tokio::test]
async fn output_that_is_not_the_interface_is_refused_with_the_reason() {
    let (_home, plugins) = plugin_home();
    let plugin = load(&install(&plugins, "garbage", "bad_describe", ""));
    let error = exoclaw_wasm::plugin_tools(&plugin, "").unwrap_err().to_string();
    assert!(
        error.contains("the plugin `garbage` answered `describe` with something exoclaw cannot use"),
        "{error}"
    );
}

/// A one-request HTTP server on 127.0.0.1 answering `body`; its address.
async fn http_server(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{address}/data")
}

#[tokio::test]
async fn http_reaches_granted_hosts_only() {
    let url = http_server("from the granted host").await;
    let (_home, plugins) = plugin_home();
    let fetch = tool(&install(&plugins, "fetch", "http", "hosts = [\"127.0.0.1\"]"));
    let request = |url: &str| json!({"url": url, "method": "GET", "headers": {}});
    // The request runs on a blocking thread while this runtime serves it.
    let body = call(&fetch, request(&url)).await.unwrap();
    assert_eq!(body, "from the granted host");

    let denied = url.replace("127.0.0.1", "localhost");
    let message = failure(call(&fetch, request(&denied)).await);
    assert!(message.contains("not allowed"), "{message}");
    assert!(message.contains("localhost"), "{message}");

    let closed = tool(&install(&plugins, "closed", "http", ""));
    let message = failure(call(&closed, request(&url)).await);
    assert!(message.contains("not allowed"), "{message}");
}

#[tokio::test]
async fn installed_plugins_load_together_and_one_beyond_its_grant_is_left_out_saying_why() {
    let (home, plugins) = plugin_home();
    install(&plugins, "echo", "echo_tool", "");
    let greedy = install(&plugins, "greedy", "echo_tool", "hosts = [\"api.example.org\"]");
    plugins.set_grant("greedy", Capabilities { hosts: Vec::new(), ..greedy.grant.clone() }).unwrap();
    install(&plugins, "broken", "bad_describe", "");

    let cache = home.path().join(".cache");
    let host = PluginHost::cached(&cache).unwrap();
    let loaded = Plugins::load(&plugins, &host, &BTreeMap::new(), |_| true);
    assert_eq!(loaded.tools.keys().collect::<Vec<_>>(), ["echo"], "{:?}", loaded.failed);
    let failed: BTreeMap<&str, String> =
        loaded.failed.iter().map(|(name, error)| (name.as_str(), error.to_string())).collect();
    assert!(failed["greedy"].contains("asks for more than it was granted: HTTP requests to api.example.org"));
    assert!(failed["greedy"].contains("exoclaw plugin grant greedy --host api.example.org"));
    assert!(failed["broken"].contains("`describe`"));
    assert!(matches!(loaded.failed[0].1, PluginError::Interface { .. } | PluginError::NotGranted { .. }));

    // The compiled module is on disk now, for the next start.
    let cached = walk(&cache).into_iter().filter(|file| !file.ends_with("wasmtime-cache.toml")).count();
    assert!(cached > 0, "nothing cached under {}", cache.display());
    let disabled = Plugins::load(&plugins, &host, &BTreeMap::new(), |name| name != "echo");
    assert!(disabled.tools.is_empty());
    assert_eq!(Kind::Tool.to_string(), "tool");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

fn text(output: Result<Vec<u8>, PluginError>) -> String {
    String::from_utf8(output.unwrap()).unwrap()
}

#[tokio::test]
async fn files_are_reached_only_inside_the_granted_folder_and_written_only_where_granted() {
    let (home, plugins) = plugin_home();
    let folder = "[[capabilities.paths]]\nhost = \"data\"\nguest = \"/data\"\n";
    let reader = install(&plugins, "reader", "open_path", folder);
    std::fs::write(reader.dir.join("data/inside.txt"), "hello").unwrap();
    let reader = load(&reader);
    assert_eq!(text(reader.call_blocking("read", b"inside.txt")), "ok");
    // Climbing out of the folder, to its own grant or the user's files, is not possible.
    assert_ne!(text(reader.call_blocking("read", b"../grant.toml")), "ok");
    assert_ne!(text(reader.call_blocking("read", b"/etc/passwd")), "ok");
    // Read-only: nothing is created.
    assert_ne!(text(reader.call_blocking("write", b"new.txt")), "ok");
    assert!(!home.path().join("reader/data/new.txt").exists());

    let writer = install(&plugins, "writer", "open_path", &format!("{folder}write = true\n"));
    let dir = writer.dir.clone();
    assert_eq!(text(load(&writer).call_blocking("write", b"new.txt")), "ok");
    assert!(dir.join("data/new.txt").exists());

    // No folder granted: no files at all (WASI's "bad file descriptor").
    let closed = load(&install(&plugins, "closed", "open_path", ""));
    assert_eq!(text(closed.call_blocking("read", b"inside.txt")), "errno 08");
}
