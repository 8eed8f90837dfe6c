//! What exoclaw's MCP client adds to a tool call, over the server's own time.
//!
//! Both sides call npm's server-everything `echo` over stdio in the same run:
//! - `floor/raw_jsonrpc`: a hand-written newline-delimited JSON-RPC exchange on the child's pipes
//!   (the server's own time plus the pipe: nothing less is possible);
//! - `exoclaw/tool_call`: the same call through `McpServers` and the `Tool` trait, as a turn makes it.
//!
//! The difference of the medians is the overhead (target: ≤ 0.5 ms p50).
//! Run: `cargo bench -p exoclaw-mcp --bench call`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_core::{ToolContext, ToolSource};
use exoclaw_mcp::{McpOptions, McpServers, ServerConfig, ServerState};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn server_script() -> String {
    exoclaw_testkit::peers::mcp_reference_server("everything").display().to_string()
}

/// A raw JSON-RPC client on a node child: initialize, then `tools/call` echo in a loop.
struct Raw {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    next_id: u64,
}

impl Raw {
    async fn start() -> Self {
        let mut child = tokio::process::Command::new("node")
            .args([server_script().as_str(), "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut raw = Self { _child: child, stdin, stdout, next_id: 1 };
        let init = json!({"protocolVersion": "2025-06-18", "capabilities": {},
                          "clientInfo": {"name": "raw", "version": "0"}});
        raw.request("initialize", init).await;
        raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        raw
    }

    async fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).await.unwrap();
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        let mut line = String::new();
        loop {
            line.clear();
            self.stdout.read_line(&mut line).await.unwrap();
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                return message;
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut raw = runtime.block_on(Raw::start());
    let configs = BTreeMap::from([(
        "everything".to_owned(),
        ServerConfig::stdio("node", [server_script(), "stdio".into()]),
    )]);
    let servers = runtime.block_on(async {
        let servers = McpServers::start(&configs, McpOptions::default()).unwrap();
        assert_eq!(servers.ready("everything", Duration::from_secs(60)).await.unwrap(), ServerState::Ready);
        servers
    });
    let echo = servers.get("everything__echo").unwrap();
    let ctx = ToolContext::new(std::env::temp_dir());

    let mut group = c.benchmark_group("mcp_echo");
    group.bench_function("floor/raw_jsonrpc", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let answer =
                    raw.request("tools/call", json!({"name": "echo", "arguments": {"message": "hi"}})).await;
                assert_eq!(answer["result"]["content"][0]["text"], "Echo: hi");
            });
        });
    });
    group.bench_function("exoclaw/tool_call", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let text = echo.call(json!({"message": "hi"}), &ctx).await.unwrap();
                assert_eq!(text, "Echo: hi");
            });
        });
    });
    group.finish();
    runtime.block_on(servers.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
