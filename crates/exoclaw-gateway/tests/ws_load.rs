//! Many WebSocket clients at once: 1,000 sessions each sending a `chat.send` to a scripted model,
//! all answered; and what 1,000 idle connections cost the gateway in memory (measured on a gateway
//! in a child process, so the clients' own memory is not counted; the target is ≤ 20 MB).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod ws_common;

use exoclaw_core::SessionStore;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ws_common::{Client, Echo, Server, message};

/// Sessions (and connections) the tests open at once.
const SESSIONS: usize = 1000;

/// How many connections the open-file limit leaves room for, with both ends in one process (two
/// descriptors each) and some to spare; `SESSIONS` unless the limit is lower (then say so).
fn connections_allowed() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let room = soft.saturating_sub(200) / 2;
    if room < SESSIONS {
        println!(
            "the open-file limit ({soft}) leaves room for {room} connections, not {SESSIONS}; raise it (ulimit -n) to test all"
        );
    }
    room.min(SESSIONS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_chat_at_once_and_all_are_answered() {
    let n = connections_allowed();
    let server = Server::with(Echo::new("echo: ")).await;
    let url = server.url();
    let started = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = Client::connect(&url).await;
                let peer = format!("peer-{i}");
                let result = client.ok("chat.send", message(&peer, &format!("message {i}"))).await;
                assert_eq!(result["text"], format!("echo: message {i}"));
                assert_eq!(result["session_key"], format!("default:ws:acct:{peer}"));
                client
            })
        })
        .collect();
    let mut open = Vec::with_capacity(n);
    for client in clients {
        open.push(client.await.unwrap());
    }
    let elapsed = started.elapsed();
    println!("{n} sessions answered in {:.2} s", elapsed.as_secs_f64());
    let status = open[0].ok("status", json!({})).await;
    assert_eq!(status["connections"], n, "{status}");
    assert_eq!(status["sessions"]["busy"], 0, "every queue emptied: {status}");
    let stored = server.store.list_sessions(10_000).await.unwrap();
    assert_eq!(stored.len(), n);
    assert!(stored.iter().all(|s| s.message_count == 2));
}

/// Set in the child process that serves the gateway for [`idle_connections_cost_little_memory`].
const CHILD: &str = "EXOCLAW_WS_RSS_CHILD";

/// Not a test on its own: the gateway process that `idle_connections_cost_little_memory` measures.
/// It prints its address, then serves until its standard input closes.
#[test]
#[ignore = "run by idle_connections_cost_little_memory in a child process"]
fn rss_child_gateway() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let server = Server::with(Echo::new("")).await;
        println!("LISTENING {}", server.addr);
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        })
        .await
        .unwrap();
    });
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Opens `n` connections to `url`, each saying `connect` (so it is fully set up), and keeps them.
async fn open_idle(url: &str, n: usize) -> Vec<Client> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut client = Client::connect(&url).await;
                client.ok("connect", json!({"protocol": 1})).await;
                client
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    clients
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_memory() {
    let n = connections_allowed();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rss_child_gateway", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (found, listening) = std::sync::mpsc::channel();
    // Reads the child's output to its end (closing the pipe early would break its last lines).
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print `test rss_child_gateway ... ` before it on the same line.
            if let Some((_, addr)) = line.split_once("LISTENING ") {
                let _ = found.send(addr.trim().to_owned());
            }
        }
    });
    let addr =
        listening.recv_timeout(Duration::from_secs(30)).expect("the child gateway says where it listens");
    let url = format!("ws://{addr}/ws");
    let pid = child.id();

    // Warm up: the allocator's arenas and the runtime's first tasks are not per-connection costs.
    let warm = open_idle(&url, 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let idle = open_idle(&url, n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let added_mb = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "{n} idle WebSocket connections added {added_mb:.1} MiB to the gateway's resident memory ({:.1} KiB each; {before} KiB before, {after} KiB after; target ≤ 20 MB)",
        after.saturating_sub(before) as f64 / n as f64
    );
    drop((warm, idle));
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(added_mb <= 20.0, "{n} idle connections added {added_mb:.1} MiB; the target is ≤ 20 MB");
}
