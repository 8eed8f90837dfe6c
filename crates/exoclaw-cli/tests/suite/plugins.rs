//! WASM plugins as a user meets them: `exoclaw plugin install` (which shows what a plugin may
//! reach and asks), the agent calling a plugin's tools through the runtime, a revoked grant, and
//! a channel plugin answering a chat through the gateway's `/webhook/NAME`. The plugins are the
//! Rust examples in `examples/plugins/`, built for WebAssembly by `scripts/peers/wasm-plugins.sh`.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use exoclaw_testkit::server::{Reply, ScriptedServer};
use serde_json::{Value, json};
use std::time::Duration;

fn word_tools() -> String {
    exoclaw_testkit::peers::example_plugin("word-tools").join("plugin.toml").display().to_string()
}

fn json_chat() -> String {
    exoclaw_testkit::peers::example_plugin("json-chat").display().to_string()
}

#[tokio::test]
async fn install_shows_what_a_plugin_may_reach_and_asks_before_granting() {
    let env = Env::new();
    let plugin = word_tools();
    let out = env.run(&["plugin", "install", &plugin]).await;
    assert!(!out.status.success());
    let shown = stdout(&out);
    assert!(shown.contains("word-tools"), "{shown}");
    assert!(shown.contains("no network access"), "{shown}");
    assert!(shown.contains("read the folder notes (in its own folder), seen as /notes"), "{shown}");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(stdout(&env.run(&["plugin", "list"]).await).contains("no plugins installed"));

    let out = env.run(&["plugin", "install", &plugin, "--yes"]).await;
    ok(&out);
    assert!(
        stdout(&out).contains("its tools: word_tools__word_count, word_tools__read_note"),
        "{}",
        stdout(&out)
    );
    let list = stdout(&env.run(&["plugin", "list"]).await);
    assert!(list.contains("word-tools") && list.contains("loads; tools:"), "{list}");
    let inspect = env.run(&["plugin", "inspect", "word-tools"]).await;
    ok(&inspect);
    assert!(stdout(&inspect).contains("granted:"), "{}", stdout(&inspect));

    let out = env.run(&["plugin", "remove", "word-tools"]).await;
    ok(&out);
    let out = env.run(&["plugin", "inspect", "word-tools"]).await;
    assert!(stderr(&out).contains("no plugin `word-tools` is installed"), "{}", stderr(&out));
}

/// The names of the tools offered in the model request `index`.
fn offered(server: &ScriptedServer, index: usize) -> Vec<String> {
    let body = server.requests()[index].body.clone();
    body["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["function"]["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The text of the tool result the model was sent in request `index`.
fn tool_result(server: &ScriptedServer, index: usize) -> String {
    let body = server.requests()[index].body.clone();
    let messages = body["messages"].as_array().unwrap();
    let result = messages.iter().rev().find(|m| m["role"] == "tool").unwrap_or_else(|| panic!("{body}"));
    result["content"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_agent_calls_a_plugins_tools_within_its_grant() {
    let env = Env::new();
    ok(&env.run(&["plugin", "install", &word_tools(), "--yes"]).await);
    let notes = env.home.path().join("plugins/word-tools/notes");
    std::fs::write(notes.join("todo.txt"), "buy milk").unwrap();

    let server = serve([
        Answer::tool("c1", "word_tools__word_count", json!({"text": "one two three"})),
        Answer::tool("c2", "word_tools__read_note", json!({"name": "todo.txt"})),
        Answer::tool("c3", "word_tools__read_note", json!({"name": "../../config.toml"})),
        Answer::text("done"),
    ])
    .await;
    env.scripted(&server, "");
    let out = env.run(&["chat", "count and read"]).await;
    ok(&out);
    assert!(offered(&server, 0).contains(&"word_tools__word_count".to_owned()));
    assert_eq!(tool_result(&server, 1), "3 words");
    assert_eq!(tool_result(&server, 2), "buy milk");
    let escaped = tool_result(&server, 3);
    assert!(!escaped.contains("sk-test-secret"), "{escaped}");

    // Revoked, the folder is no longer granted: the plugin is not loaded, and says what to grant.
    ok(&env.run(&["plugin", "revoke", "word-tools", "--path", "notes:/notes"]).await);
    let list = stdout(&env.run(&["plugin", "list"]).await);
    assert!(list.contains("NOT LOADED"), "{list}");
    assert!(list.contains("exoclaw plugin grant word-tools --path notes:/notes"), "{list}");
    let server = serve([Answer::text("no tools")]).await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "hi"]).await);
    assert!(
        !offered(&server, 0).iter().any(|name| name.starts_with("word_tools__")),
        "{:?}",
        offered(&server, 0)
    );
}

fn sign(secret: &str, body: &[u8]) -> String {
    exoclaw_gateway::webhook::SharedSecret::sign(secret.as_bytes(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_plugin_answers_a_chat_through_the_gateway() {
    let env = Env::new();
    ok(&env.run(&["plugin", "install", &json_chat(), "--yes"]).await);
    // The chat platform: takes the replies the plugin formats.
    let platform = ScriptedServer::start((0..4).map(|_| Reply::json(200, &json!({"ok": true})))).await;
    let model = serve([Answer::text("Hello Alice!")]).await;
    env.scripted(
        &model,
        &format!(
            "[plugins.json-chat]\nwebhook_secret_env = \"JSON_CHAT_SECRET\"\nconfig = {{ reply_url = \"{}/messages\" }}\n",
            platform.url()
        ),
    );
    let gateway = super::gateway::start_with_env(&env, &[], &[("JSON_CHAT_SECRET", "s3cret")]).await;
    let url = format!("{}/webhook/json-chat", gateway.base);
    let client = reqwest::Client::new();
    let deliver = |body: Value, signature: Option<String>| {
        let body = body.to_string();
        let mut request = client.post(&url).header("content-type", "application/json").body(body.clone());
        if let Some(signature) = signature {
            request = request.header("x-exoclaw-signature", signature);
        }
        request.send()
    };

    let forged = deliver(json!({"from": "mallory", "text": "hi"}), Some(sign("wrong", b"{}"))).await.unwrap();
    assert_eq!(forged.status(), 401);
    let unsigned = deliver(json!({"from": "mallory", "text": "hi"}), None).await.unwrap();
    assert_eq!(unsigned.status(), 401);

    let ping = json!({"type": "ping"});
    let answer = deliver(ping.clone(), Some(sign("s3cret", ping.to_string().as_bytes()))).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"pong": true}));

    let message = json!({"from": "alice", "text": "hi there", "room": "lobby"});
    let answer =
        deliver(message.clone(), Some(sign("s3cret", message.to_string().as_bytes()))).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"ok": true, "messages": 1}));

    // The reply reaches the platform once the turn ends.
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = platform.requests();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered.len(), 1, "the platform got no reply");
    assert_eq!(delivered[0].path, "/messages");
    let sent = delivered[0].body.clone();
    assert_eq!(sent, json!({"to": "alice", "room": "lobby", "text": "Hello Alice!"}));
    let user_message = tool_or_user_text(&model);
    assert_eq!(user_message, "hi there");

    // Malformed deliveries are refused with the plugin's reason, and nothing is answered.
    let garbage = b"not json".to_vec();
    let answer = client
        .post(&url)
        .header("x-exoclaw-signature", sign("s3cret", &garbage))
        .body(garbage)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let reason = answer.text().await.unwrap();
    assert!(reason.contains("json-chat"), "{reason}");
    assert_eq!(platform.requests().len(), 1);
}

/// The last user message of the model's first request.
fn tool_or_user_text(server: &ScriptedServer) -> String {
    let body = server.requests()[0].body.clone();
    let messages = body["messages"].as_array().unwrap();
    let user = messages.iter().rev().find(|m| m["role"] == "user").unwrap();
    user["content"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| user["content"][0]["text"].as_str().unwrap().to_owned())
}
