//! `exoclaw gateway` and `exoclaw keys` as an operator uses them: the real binary serving `/v1`
//! through the configured router in front of a scripted OpenAI-compatible model.

use super::*;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// A running `exoclaw gateway`, stopped (SIGTERM) when dropped.
struct Running {
    child: std::process::Child,
    base: String,
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
async fn start(env: &Env, args: &[&str]) -> Running {
    let mut cmd = env.std_cmd();
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
