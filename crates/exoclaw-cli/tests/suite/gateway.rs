//! `exoclaw gateway` and `exoclaw keys` as an operator uses them: the real binary serving `/v1`
//! through the configured router in front of a scripted OpenAI-compatible model.

use super::*;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Duration;

/// A running `exoclaw gateway`, stopped (SIGTERM) when dropped.
pub(super) struct Running {
    pub(super) child: std::process::Child,
    pub(super) base: String,
    /// The line it printed when it started listening.
    banner: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Starts the gateway on a free loopback port and waits for its "listening on" line.
pub(super) async fn start(env: &Env, args: &[&str]) -> Running {
    start_with_env(env, args, &[]).await
}

/// [`start`] with these environment variables set.
pub(super) async fn start_with_env(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Running {
    let mut cmd = env.std_cmd();
    cmd.envs(vars.iter().copied());
    cmd.args(["gateway", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let line = lines.next().map(|l| l.unwrap()).unwrap_or_default();
        // Keep draining so the gateway never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        line
    })
    .await
    .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Running { child, base: format!("http://{addr}"), banner: line }
}

/// A whole answer saying `content`, as OpenAI sends one when not asked to stream.
fn whole_answer(content: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}})
}

async fn chat(base: &str, key: Option<&str>, model: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_v1_to_a_key_and_drains_on_sigterm() {
    let env = Env::new();
    let server = ScriptedServer::start([Reply::json(200, &whole_answer("Hello from upstream"))]).await;
    env.scripted(&server, "");
    let created = env.run(&["keys", "create", "--name", "ci", "--models", "script/*", "--quiet"]).await;
    ok(&created);
    let key = stdout(&created).trim().to_owned();
    assert!(key.starts_with("exo-"), "{key}");
    let listed = env.run(&["keys", "list"]).await;
    ok(&listed);
    assert!(stdout(&listed).contains("ci") && !stdout(&listed).contains(&key), "{}", stdout(&listed));

    let gateway = start(&env, &[]).await;
    let (status, body) = chat(&gateway.base, Some(&key), "script/scripted").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from upstream");
    let upstream = &server.requests()[0].body;
    assert_ne!(upstream["stream"], true, "a whole answer is asked for whole upstream too");
    assert_eq!(chat(&gateway.base, None, "script/scripted").await.0, 401);
    assert_eq!(chat(&gateway.base, Some(&key), "local/smollm2").await.0, 403, "not on the key's list");

    ok(&env.run(&["keys", "revoke", "ci"]).await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = chat(&gateway.base, Some(&key), "script/scripted").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("key_revoked")));

    let Running { child, .. } = &gateway;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let mut gateway = gateway;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = gateway.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the gateway did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    // The request's usage reached the ledger before the process ended.
    let usage = env.run(&["usage", "--json"]).await;
    ok(&usage);
    assert!(stdout(&usage).contains("api:ci"), "{}", stdout(&usage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_while_an_open_gateway_runs_is_required_without_a_restart() {
    let env = Env::new();
    let answers = [Reply::json(200, &whole_answer("one")), Reply::json(200, &whole_answer("two"))];
    let server = ScriptedServer::start(answers).await;
    env.scripted(&server, "");
    let gateway = start(&env, &[]).await;
    assert!(gateway.banner.contains("no token needed on loopback"), "{}", gateway.banner);
    let (status, body) = chat(&gateway.base, None, "script/scripted").await;
    assert_eq!(status, 200, "no key exists yet: {body}");

    let created = env.run(&["keys", "create", "--name", "late", "--quiet"]).await;
    ok(&created);
    let key = stdout(&created).trim().to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = chat(&gateway.base, None, "script/scripted").await;
    assert_eq!(status, 401, "a key exists now: {body}");
    let (status, body) = chat(&gateway.base, Some(&key), "script/scripted").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "two");
}

/// The gateway's runtime threads, as `top -H` shows them (tokio names its workers and its
/// blocking-pool threads alike, so this is at least the serving threads).
fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_on_half_the_cpus_unless_workers_says_otherwise() {
    let env = Env::new();
    let server = ScriptedServer::start([
        Reply::json(200, &whole_answer("half the cores")),
        Reply::json(200, &whole_answer("three threads")),
    ])
    .await;
    env.scripted(&server, "");
    let cpus = std::thread::available_parallelism().unwrap().get();

    let default = start(&env, &[]).await;
    let (status, body) = chat(&default.base, None, "script/scripted").await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("half the cores")));
    let half = (cpus / 2).max(1);
    let says = if half == 1 { "; 1 serving thread".to_owned() } else { format!("; {half} serving threads") };
    assert!(default.banner.ends_with(&says), "{}", default.banner);
    assert!(runtime_threads(default.child.id()) >= half);
    drop(default);

    let three = start(&env, &["--workers", "3"]).await;
    let (status, body) = chat(&three.base, None, "script/scripted").await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("three threads")));
    assert!(three.banner.ends_with("; 3 serving threads"), "{}", three.banner);
    assert!(runtime_threads(three.child.id()) >= 3);

    let refused = env.run(&["gateway", "--workers", "0"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--workers"), "{}", stderr(&refused));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_gateway_is_refused_beyond_loopback() {
    let env = Env::new();
    let out = env.run(&["gateway", "--bind", "0.0.0.0:0"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refusing to listen on 0.0.0.0"), "{}", stderr(&out));
    assert!(stderr(&out).contains("sha256sum"), "says how to make a token: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_explain_names_the_binding_that_wins() {
    let env = Env::new();
    env.config(
        "[agents.support]\ndescription = \"help desk\"\n\n\
         [[bindings]]\nagent = \"support\"\nchannel = \"slack\"\n\n\
         [[bindings]]\nagent = \"default\"\nchannel = \"slack\"\npeer = \"U42\"\n",
    );
    let out = env.run(&["gateway", "routes", "--explain", "--channel", "slack", "--peer", "U7"]).await;
    ok(&out);
    assert!(stdout(&out).contains("agent:       support"), "{}", stdout(&out));
    assert!(stdout(&out).contains("support:slack:default:U7"), "{}", stdout(&out));
    let out = env.run(&["gateway", "routes", "--channel", "slack", "--peer", "U42"]).await;
    ok(&out);
    assert!(
        stdout(&out).contains("agent:       default"),
        "the peer binding is more specific: {}",
        stdout(&out)
    );

    env.config("[[bindings]]\nagent = \"nobody\"\nchannel = \"ws\"\n");
    let out = env.run(&["gateway", "routes", "--channel", "ws"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("names the agent `nobody`"), "{}", stderr(&out));
}

/// The gateway's address, `127.0.0.1:PORT`.
fn address(gateway: &Running) -> String {
    gateway.base.trim_start_matches("http://").to_owned()
}

/// A line of `/proc/PID/status` in KiB: `VmRSS` (resident now) or `VmHWM` (the peak so far).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `head` then `body` on one connection while reading the answer, as a client uploading a
/// large request does; the status of the answer, or `None` when the connection was cut without
/// one. Blocking: run it off the async runtime.
fn upload(addr: &str, head: &[u8], body: Arc<Vec<u8>>) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = head.to_vec();
    // A refused upload is cut off mid-body: the writer's errors are expected.
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&head).and_then(|()| writer.write_all(&body));
    });
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sending.join();
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_after_the_header_timeout() {
    use std::io::{Read, Write};
    let env = Env::new();
    env.config("[gateway]\nheader_timeout_secs = 1\n");
    let gateway = start(&env, &[]).await;
    let addr = address(&gateway);
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // Half a request head, and then nothing more.
        stream.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty").unwrap();
        // Only so that a gateway that never cuts it off fails instead of hanging.
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("the gateway closes the connection");
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(answer.contains("header_timeout_secs"), "says which setting: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_sheds_concurrent_large_bodies_and_stays_small() {
    let env = Env::new();
    let gateway = start(&env, &[]).await;
    let (addr, pid) = (address(&gateway), gateway.child.id());
    // 31 MB of JSON each: one long user message, for a model this gateway does not have (so an
    // admitted body is read and parsed whole, and answered without calling anyone).
    let body = format!(
        r#"{{"model":"nobody/none","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(31_000_000)
    );
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let body = Arc::new(body.into_bytes());
    let uploads: Vec<_> = (0..30)
        .map(|_| {
            let (addr, head, body) = (addr.clone(), head.clone(), Arc::clone(&body));
            tokio::task::spawn_blocking(move || upload(&addr, head.as_bytes(), body))
        })
        .collect();
    let mut statuses = Vec::new();
    for upload in uploads {
        statuses.push(upload.await.unwrap());
    }
    let peak_mb = memory_kib(pid, "VmHWM:") as f64 / 1024.0;
    let busy = statuses.iter().filter(|s| **s == Some(503)).count();
    let served = statuses.iter().filter(|s| s.is_some_and(|s| s != 503 && s != 413)).count();
    println!(
        "30 concurrent 31 MB bodies: {busy} answered 503, {served} read and answered; gateway peak RSS {peak_mb:.0} MB; {statuses:?}"
    );
    assert!(busy >= 1, "past the in-flight budget bodies are refused with 503: {statuses:?}");
    assert!(served >= 1, "bodies within the budget are read: {statuses:?}");
    assert!(
        peak_mb <= 300.0,
        "the gateway's resident memory peaked at {peak_mb:.0} MB; the target is ≤ 300 MB"
    );
    // Nothing is left held: a small request is served.
    let (status, _) = chat(&gateway.base, None, "nobody/none").await;
    assert_ne!(status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_status_shows_what_the_gateways_health_checks_last_saw() {
    let env = Env::new();
    // A keyless local server (llama.cpp's kind) that is not running: nothing listens on port 1.
    env.config(
        "model = \"box/m\"\n[providers.box]\nkind = \"llamacpp\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
    );
    let before = env.run(&["providers", "status", "--json"]).await;
    let rows: Vec<Value> = serde_json::from_str(&stdout(&before)).unwrap();
    let row = |rows: &[Value]| rows.iter().find(|r| r["name"] == "box").cloned().unwrap();
    assert_eq!(row(&rows)["gateway_check"], Value::Null, "no gateway has run yet: {rows:?}");
    assert!(!env.home.path().join("exoclaw.db").exists(), "a status check created the store");

    let _gateway = start(&env, &[]).await;
    // The gateway checks keyless servers as it starts, then every 30 s; wait for its record.
    let mut check = Value::Null;
    for _ in 0..100 {
        let out = env.run(&["providers", "status", "--json"]).await;
        check = row(&serde_json::from_str::<Vec<Value>>(&stdout(&out)).unwrap())["gateway_check"].clone();
        if !check.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(check["checked_at"].is_string(), "{check}");
    assert!(env.home.path().join("exoclaw.db").exists(), "the gateway's store is elsewhere");
    let error = check["error"].as_str().unwrap_or_else(|| panic!("the check failed: {check}"));
    assert!(error.contains("127.0.0.1:1") || error.to_lowercase().contains("connect"), "{error}");

    let text = env.run(&["providers", "status"]).await;
    let text = stdout(&text);
    assert!(text.contains("The gateway's last checks"), "{text}");
    let line = text.lines().rfind(|l| l.starts_with("box ")).unwrap();
    assert!(line.contains("failed") && line.contains("s ago"), "{text}");
}
