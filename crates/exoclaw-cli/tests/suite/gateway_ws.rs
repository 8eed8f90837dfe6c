//! The WebSocket protocol against a real `exoclaw gateway` process: the runtime's scenarios (tool
//! loop, approval, cancel, budget refusal; crates/exoclaw/tests/runtime.rs runs them through the
//! library, the rest of this suite through `exoclaw chat`) through `chat.send`, with a scripted
//! model behind a real HTTP endpoint.

use super::gateway::start;
use super::*;
use exoclaw_testkit::script::{Answer, request_messages, serve};
use exoclaw_testkit::server::{Ending, Reply, ScriptedServer};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A JSON-RPC client over one WebSocket, keeping the `chat.event` notifications it sees.
struct Client {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: i64,
    /// Every notification's `event`, by the request id it belongs to.
    events: Vec<(Value, Value)>,
}

impl Client {
    async fn connect(base: &str) -> Self {
        let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut client = Self { ws, next_id: 0, events: Vec::new() };
        let hello = client.call("connect", json!({"protocol": 1})).await;
        assert!(hello.get("result").is_some(), "{hello}");
        client
    }

    /// Sends a request; returns its id.
    async fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next_id += 1;
        let frame = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        self.ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        self.next_id
    }

    /// Reads until the response to `id`, keeping the events seen on the way.
    async fn response(&mut self, id: i64) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("an answer within a minute")
                .expect("the connection stays open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["method"] == "chat.event" {
                let params = &value["params"];
                self.events.push((params["request_id"].clone(), params["event"].clone()));
            } else if value["id"] == id {
                return value;
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    /// The event types of request `id`, in order.
    fn event_types(&self, id: i64) -> Vec<String> {
        self.events
            .iter()
            .filter(|(request, _)| *request == id)
            .map(|(_, event)| event["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn send(peer: &str, content: &str) -> Value {
    json!({"channel": "ws", "account": "test", "peer": peer, "content": content})
}

/// The contents of the `tool` messages of a request body.
fn tool_results(body: &Value) -> Vec<String> {
    request_messages(body)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_loop_over_the_websocket_reads_a_file_and_refuses_a_change_nobody_can_approve() {
    let env = Env::new();
    let server = serve([
        Answer::tool("c1", "read_file", json!({"path": "notes.txt"})),
        Answer::text("The code is 4711."),
        Answer::tool("c2", "write_file", json!({"path": "changed.txt", "content": "x"})),
        Answer::text("I could not write it."),
    ])
    .await;
    // Gateway agents get tools only when their profile says so.
    env.scripted(&server, "[agents.ops]\ndescription = \"Works on files\"\ntools = true\n");
    std::fs::write(env.ws().join("notes.txt"), "the code is 4711\n").unwrap();
    let gateway = start(&env, &[]).await;
    let mut client = Client::connect(&gateway.base).await;

    let ask = |content: &str| {
        let mut params = send("alice", content);
        params["agent"] = json!("ops");
        params
    };
    let id = client.request("chat.send", ask("What is the code?")).await;
    let answer = client.response(id).await;
    assert_eq!(answer["result"]["outcome"], "completed", "{answer}");
    assert_eq!(answer["result"]["text"], "The code is 4711.");
    let types = client.event_types(id);
    assert_eq!(types.first().map(String::as_str), Some("turn_started"), "{types:?}");
    assert!(types.contains(&"tool_use".to_owned()) && types.contains(&"tool_result".to_owned()), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("done"), "{types:?}");
    let requests = server.requests();
    let results = tool_results(&requests[1].body);
    assert!(results[0].contains("the code is 4711"), "the model got the file: {results:?}");

    // A change needs approval, and an unattended gateway has nobody to give it: refused, and the
    // model is told so.
    let id = client.request("chat.send", ask("Now write changed.txt")).await;
    let answer = client.response(id).await;
    assert_eq!(answer["result"]["text"], "I could not write it.", "{answer}");
    assert!(!env.ws().join("changed.txt").exists(), "the write was not run");
    let refusal = &tool_results(&server.requests()[3].body)[1];
    assert!(refusal.contains("needs a person's approval") && refusal.contains("unattended"), "{refusal}");

    let session = answer["result"]["session_id"].clone();
    let history = client.call("sessions.history", json!({"session_id": session})).await;
    let messages = history["result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 8, "two turns of four messages, all stored: {history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_cancel_stops_a_running_turn_and_keeps_its_partial_answer() {
    let env = Env::new();
    let chunks: Vec<String> = Answer::text("Partial answer").chunks().into_iter().take(2).collect();
    let server = ScriptedServer::start([Reply::sse(chunks).ending(Ending::Hang)]).await;
    env.scripted(&server, "");
    let gateway = start(&env, &[]).await;
    let mut client = Client::connect(&gateway.base).await;

    let id = client.request("chat.send", send("bob", "Tell me a long story")).await;
    while !client.event_types(id).contains(&"text".to_owned()) {
        // Read (and keep) events until the answer has begun.
        let probe = client.request("ping", json!({})).await;
        client.response(probe).await;
    }
    let cancelled = client.call("chat.cancel", json!({"request_id": id})).await;
    assert_eq!(cancelled["result"]["cancelled"], true, "{cancelled}");
    let answer = client.response(id).await;
    assert_eq!(answer["result"]["outcome"], "cancelled", "{answer}");
    assert!(answer["result"]["text"].as_str().unwrap().starts_with("Partial"), "{answer}");
    assert!(server.hung_up(Duration::from_secs(5)).await, "the model's stream was closed");

    let session = answer["result"]["session_id"].clone();
    let history = client.call("sessions.history", json!({"session_id": session})).await;
    let messages = history["result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "the question and the partial answer are stored: {history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_cover_the_call_refuses_the_turn_before_the_model_is_asked() {
    let env = Env::new();
    let server = serve([Answer::text("never")]).await;
    env.scripted(&server, "[[budgets]]\nname = \"tiny\"\nwindow = \"daily\"\nmax_tokens = 50\n");
    let gateway = start(&env, &[]).await;
    let mut client = Client::connect(&gateway.base).await;

    let id = client.request("chat.send", send("carol", "hello")).await;
    let answer = client.response(id).await;
    assert_eq!(answer["error"]["data"]["code"], "budget_exceeded", "{answer}");
    assert_eq!(answer["error"]["data"]["kind"], "budget_exceeded", "{answer}");
    assert_eq!(answer["error"]["data"]["outcome"], "failed", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("tiny"), "{answer}");
    let types = client.event_types(id);
    assert!(types.contains(&"error".to_owned()), "{types:?}");
    assert!(server.requests().is_empty(), "the model was never asked");
}
