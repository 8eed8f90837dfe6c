//! The WebSocket JSON-RPC protocol (`/ws`) driven by real clients: tokio-tungstenite here, the
//! Python `websockets` library in `the_python_websockets_client_chats_end_to_end`, against the
//! gateway bound on `127.0.0.1:0` with scripted providers and an in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod ws_common;

use exoclaw_core::{SessionStore, UsageStore};
use exoclaw_gateway::rpc::{Access, Method};
use exoclaw_gateway::{Bindings, Limits, TokenSet, drain};
use exoclaw_types::{Binding, SessionId, SessionKey};
use futures::SinkExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ws_common::Agents;
use ws_common::{Client, Echo, Server, agent, error_name, message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_streams_events_then_stores_the_turn_and_continues_the_session() {
    let echo = Echo::new("echo: ");
    let server = Server::with(echo.clone()).await;
    let mut client = server.client().await;

    let id = client.request("chat.send", message("alice", "hello there")).await;
    let response = client.response(id).await;
    let result = &response["result"];
    assert_eq!(result["outcome"], "completed", "{response}");
    assert_eq!(result["text"], "echo: hello there");
    assert_eq!(result["agent"], "default");
    assert_eq!(result["session_key"], "default:ws:acct:alice");
    assert_eq!(result["usage"], json!({"input_tokens": 10, "output_tokens": 3}));
    let events = client.events(id);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["turn_started", "text", "text", "text", "usage", "done"], "{events:?}");
    assert_eq!(events[0]["session_id"], result["session_id"]);
    assert_eq!(events[0]["model"], "echo/default");
    assert_eq!(events[5]["outcome"], "completed");

    // Stored under its key, and the next message continues it with its history.
    let session_id: SessionId = result["session_id"].as_str().unwrap().parse().unwrap();
    let key = SessionKey {
        agent: "default".into(),
        channel: "ws".into(),
        account: "acct".into(),
        peer: "alice".into(),
    };
    let stored = server.store.session_by_key(&key).await.unwrap().unwrap();
    assert_eq!((stored.id, stored.message_count), (session_id, 2));
    assert_eq!(stored.title.as_deref(), Some("hello there"));
    let second = client.ok("chat.send", message("alice", "again")).await;
    assert_eq!(second["session_id"], result["session_id"]);
    let requests = echo.requests.lock().unwrap().clone();
    let texts: Vec<String> = requests[1].messages.iter().map(|m| m.text()).collect();
    assert_eq!(texts, ["hello there", "echo: hello there", "again"], "the model saw the history");
    // Another peer is another session.
    let bob = client.ok("chat.send", message("bob", "hi")).await;
    assert_ne!(bob["session_id"], result["session_id"]);

    let history = client.ok("sessions.history", json!({"session_id": session_id})).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 4);
    assert_eq!(history["session"]["key"]["peer"], "alice");
    let list = client.ok("sessions.list", json!({"channel": "ws"})).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(client.ok("sessions.list", json!({"agent": "other"})).await["sessions"], json!([]));
    let usage = client.ok("usage.get", json!({"records": true})).await;
    assert_eq!(usage["totals"]["calls"], 3, "{usage}");
    assert_eq!(usage["totals"]["input_tokens"], 30);
    assert_eq!(usage["records"].as_array().unwrap().len(), 3);
    assert_eq!(usage["by_model"][0]["agent"], "default");
    assert_eq!(
        server.store.usage_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap().len(),
        3
    );

    let reset = client.ok("sessions.reset", json!({"session_id": session_id})).await;
    assert_eq!(reset["removed"], 4);
    assert!(server.store.messages(session_id).await.unwrap().is_empty());
    let missing = client.call("sessions.history", json!({"session_id": SessionId::new()})).await;
    assert_eq!(error_name(&missing), "not_found");

    let metrics =
        reqwest::get(format!("http://{}/metrics", server.addr)).await.unwrap().text().await.unwrap();
    for expected in [
        r#"exoclaw_gateway_requests_total{endpoint="ws:chat.send",status="ok"} 3"#,
        r#"exoclaw_gateway_requests_total{endpoint="ws:sessions.history",status="not_found"} 1"#,
        "exoclaw_gateway_websocket_connections 1",
        "exoclaw_gateway_busy_sessions 0",
        r#"exoclaw_gateway_tokens_total{provider="echo",model="m",direction="input"} 30"#,
        // Counted by the runtime's monitor, from the turns' own events.
        r#"exoclaw_gateway_turns_total{outcome="completed"} 3"#,
    ] {
        assert!(metrics.contains(expected), "no `{expected}` in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_methods_describe_the_gateway() {
    let server = Server::start(
        Agents::new().with(agent("default", Echo::new(""))).with(agent("helper", Echo::new(""))),
        |b| b,
    )
    .await;
    let mut client = server.client().await;
    assert_eq!(client.ok("ping", json!({})).await, json!({"pong": true}));
    let hello = client.ok("connect", json!({"protocol": 1, "client": {"name": "test"}})).await;
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["server"]["name"], "exoclaw");
    assert_eq!(hello["session"]["caller"], "anyone");
    assert_eq!(hello["session"]["limits"]["max_message_bytes"], 1024 * 1024);

    let status = client.ok("status", json!({})).await;
    assert_eq!(status["agents"], json!(["default", "helper"]));
    assert_eq!(status["protocol"], 1);
    assert_eq!(status["connections"], 1);
    assert_eq!(status["sessions"]["busy"], 0);
    assert_eq!(status["shutting_down"], false);
    assert!(status["uptime_secs"].is_u64() && status["version"].is_string());

    let agents = client.ok("agents.list", json!({})).await;
    assert_eq!(agents["agents"][0]["name"], "default");
    assert_eq!(agents["agents"][0]["default"], true);
    assert_eq!(agents["agents"][1]["model"], "echo/helper");
    assert_eq!(agents["agents"][1]["description"], "the helper agent");
    let tools = client.ok("tools.list", json!({"agent": "helper"})).await;
    assert_eq!(tools, json!({"agent": "helper", "tools": []}));
    assert_eq!(client.ok("tools.list", json!({})).await["agent"], "default");
    assert_eq!(error_name(&client.call("tools.list", json!({"agent": "nobody"})).await), "not_found");

    let old = client.call("connect", json!({"protocol": 2})).await;
    assert_eq!(old["error"]["code"], -32010);
    assert_eq!(old["error"]["data"], json!({"code": "unsupported_protocol", "supported": [1]}));
    assert!(old["error"]["message"].as_str().unwrap().contains("this gateway speaks 1"), "{old}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_the_standard_errors_and_the_connection_stays() {
    let server = Server::with(Echo::new("")).await;
    let mut client = server.client().await;

    client.send_text("{not json").await;
    let parse = client.next().await.unwrap();
    assert_eq!(
        (parse["id"].clone(), parse["error"]["code"].clone()),
        (Value::Null, json!(-32700)),
        "{parse}"
    );
    assert_eq!(parse["error"]["data"]["code"], "parse_error");

    client.send(json!({"jsonrpc": "1.0", "id": 1, "method": "ping"})).await;
    let wrong = client.next().await.unwrap();
    assert_eq!((wrong["id"].clone(), wrong["error"]["code"].clone()), (json!(1), json!(-32600)), "{wrong}");
    client.send(json!({"id": 2, "method": "ping"})).await;
    assert_eq!(client.next().await.unwrap()["error"]["code"], -32600);
    client.send(json!([{"jsonrpc": "2.0", "id": 3, "method": "ping"}])).await;
    let batch = client.next().await.unwrap();
    assert!(batch["error"]["message"].as_str().unwrap().contains("batches are not supported"), "{batch}");

    let unknown = client.call("chat.sned", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    assert_eq!(unknown["error"]["data"]["methods"], json!(Method::names()), "{unknown}");
    let listed = unknown["error"]["message"].as_str().unwrap();
    assert!(listed.starts_with("no method `chat.sned`; this gateway has: connect, ping"), "{listed}");
    assert!(Method::names().iter().all(|name| listed.contains(name)), "{listed}");

    let missing = client.call("chat.send", json!({"channel": "ws", "account": "a", "peer": "p"})).await;
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
    assert!(missing["error"]["message"].as_str().unwrap().contains("missing field `content`"), "{missing}");
    let extra = client
        .call("chat.send", json!({"channel": "ws", "account": "a", "peer": "p", "content": "x", "colour": 1}))
        .await;
    assert_eq!(extra["error"]["code"], -32602, "{extra}");
    let empty =
        client.call("chat.send", json!({"channel": "ws", "account": "a", "peer": "", "content": "x"})).await;
    assert_eq!(empty["error"]["code"], -32602, "{empty}");
    let positional = client.call("ping", json!([1])).await;
    assert_eq!(positional["error"]["code"], -32602, "{positional}");

    // A notification is never answered, even a bad one; the next request is.
    client.send(json!({"jsonrpc": "2.0", "method": "no.such"})).await;
    assert_eq!(client.ok("ping", json!({})).await, json!({"pong": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_is_refused_with_a_reason_and_the_gateway_carries_on() {
    let limits = Limits { max_message_bytes: 1024, ..Limits::default() };
    let server =
        Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| b.limits(limits)).await;
    let mut client = server.client().await;
    let big =
        json!({"jsonrpc": "2.0", "id": 1, "method": "chat.send", "params": message("p", &"x".repeat(4096))});
    client.send(big).await;
    let error = client.next().await.unwrap();
    assert_eq!(error["error"]["code"], -32009, "{error}");
    assert_eq!(error["error"]["data"], json!({"code": "message_too_large", "limit": 1024}));
    let close = client.closed().await;
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("message too large"), "{close:?}");

    let mut again = server.client().await;
    assert_eq!(again.ok("ping", json!({})).await, json!({"pong": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_before_anything_but_connect_and_ping() {
    let server = Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| {
        b.tokens(TokenSet::from_tokens(["s3cret"]))
    })
    .await;
    let mut client = server.client().await;
    assert_eq!(client.ok("ping", json!({})).await, json!({"pong": true}));
    let before = client.call("status", json!({})).await;
    assert_eq!((before["error"]["code"].clone(), error_name(&before)), (json!(-32000), "unauthenticated"));
    let chat = client.call("chat.send", message("p", "hi")).await;
    assert_eq!(error_name(&chat), "unauthenticated");

    let wrong = client.call("connect", json!({"protocol": 1, "token": "guess"})).await;
    assert_eq!(error_name(&wrong), "unauthenticated");
    let text = wrong.to_string();
    assert!(!text.contains("guess"), "the token is never echoed: {text}");
    assert!(text.contains("send `connect` with `token`"), "{text}");
    let none = client.call("connect", json!({"protocol": 1})).await;
    assert!(none["error"]["message"].as_str().unwrap().contains("none was sent"), "{none}");
    assert_eq!(error_name(&client.call("status", json!({})).await), "unauthenticated");

    let hello = client.ok("connect", json!({"protocol": 1, "token": "s3cret"})).await;
    assert_eq!(hello["session"]["caller"], "operator");
    assert_eq!(client.ok("chat.send", message("p", "hi")).await["outcome"], "completed");

    // A bearer header on the upgrade authenticates too; a wrong one is refused before upgrading.
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut bearer = Client::over(ws);
    assert_eq!(bearer.ok("status", json!({})).await["agents"], json!(["default"]));
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", "Bearer nope".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

/// Makes a virtual key named `name`, with no limits, in `store`; returns its secret.
async fn make_key(store: &exoclaw_store::Store, name: &str) -> String {
    make_budgeted_key(store, name, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_while_connected_closes_an_open_gateway_to_clients_without_one() {
    let keys = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let store = Arc::clone(&keys);
    let server =
        Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| b.keys_once_made(store)).await;
    let mut client = server.client().await;
    assert_eq!(client.ok("status", json!({})).await["agents"], json!(["default"]));
    let secret = make_key(&keys, "first").await;
    tokio::time::sleep(exoclaw_gateway::KEY_CHECK_INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(error_name(&client.call("status", json!({})).await), "unauthenticated");
    let hello = client.ok("connect", json!({"protocol": 1, "token": secret})).await;
    assert_eq!(hello["session"]["caller"], "key:first");
    assert_eq!(client.ok("status", json!({})).await["agents"], json!(["default"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origins_are_checked_before_upgrading() {
    let server = Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| {
        b.allowed_origins(vec!["https://app.example.com".into()])
    })
    .await;
    let with_origin = |origin: &str| {
        let mut request = server.url().into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example.com")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8(response.into_body().unwrap_or_default()).unwrap();
            assert!(body.contains("forbidden_origin") && body.contains("https://evil.example.com"), "{body}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(tokio_tungstenite::connect_async(with_origin("https://app.example.com")).await.is_ok());
    // A page on this machine may talk to a gateway it reaches on this machine.
    assert!(tokio_tungstenite::connect_async(with_origin("http://localhost:5173")).await.is_ok());
    // No Origin (not a browser): nothing to check.
    assert!(tokio_tungstenite::connect_async(server.url()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_rate_is_told_to_wait_not_dropped() {
    let limits = Limits { requests_per_second: 2, ..Limits::default() };
    let server =
        Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| b.limits(limits)).await;
    let mut client = server.client().await;
    for id in 1..=6 {
        client.send(json!({"jsonrpc": "2.0", "id": id, "method": "ping"})).await;
    }
    let mut limited = Vec::new();
    for _ in 1..=6 {
        let response = client.next().await.unwrap();
        if response.get("error").is_some() {
            assert_eq!(response["error"]["code"], -32002, "{response}");
            assert_eq!(error_name(&response), "rate_limited");
            assert!(response["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
            limited.push(response["id"].as_i64().unwrap());
        }
    }
    assert_eq!(limited, [3, 4, 5, 6], "a burst of 2 is allowed, then the rate");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.ok("ping", json!({})).await, json!({"pong": true}), "the connection stayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_saying_why_but_not_while_a_turn_runs() {
    let limits = Limits { idle_timeout: Duration::from_millis(300), ..Limits::default() };
    let echo = Echo::gated("");
    let server =
        Server::start(Agents::new().with(agent("default", echo.clone())), |b| b.limits(limits)).await;
    let mut idle = server.client().await;
    let close = idle.closed().await;
    assert_eq!(u16::from(close.code), 4008);
    assert!(close.reason.contains("idle timeout"), "{close:?}");

    // A client waiting for a slow answer is not idle.
    let mut waiting = server.client().await;
    let id = waiting.request("chat.send", message("p", "slow")).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    echo.release(1);
    assert_eq!(waiting.response(id).await["result"]["outcome"], "completed");
    assert_eq!(u16::from(waiting.closed().await.code), 4008, "idle again once answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_on_one_session_are_answered_in_order() {
    let echo = Echo::gated("echo: ");
    let server = Server::with(echo.clone()).await;
    let mut first = server.client().await;
    let mut second = server.client().await;
    let a = first.request("chat.send", message("shared", "one")).await;
    echo.wait_calls(1).await;
    let b = second.request("chat.send", message("shared", "two")).await;
    // A connection handles its messages in order: once this is answered, `two` is queued.
    second.ok("ping", json!({})).await;
    // Another session is not held up by the first one's turn.
    let mut other = server.client().await;
    let c = other.request("chat.send", message("elsewhere", "three")).await;
    echo.wait_calls(2).await;
    assert_eq!(echo.calls(), 2, "the second message on `shared` waits for the first");
    let status = other.ok("status", json!({})).await;
    assert_eq!(status["sessions"], json!({"busy": 2, "queued": 1, "turns": 3}), "{status}");
    echo.release(3);
    let answer_a = first.response(a).await;
    let answer_b = second.response(b).await;
    assert_eq!(other.response(c).await["result"]["text"], "echo: three");
    assert_eq!(answer_a["result"]["text"], "echo: one");
    assert_eq!(answer_b["result"]["text"], "echo: two");
    assert_eq!(answer_a["result"]["session_id"], answer_b["result"]["session_id"]);
    let requests = echo.requests.lock().unwrap().clone();
    let two = requests.iter().find(|r| r.messages.last().unwrap().text() == "two").unwrap();
    let seen: Vec<String> = two.messages.iter().map(|m| m.text()).collect();
    assert_eq!(seen, ["one", "echo: one", "two"], "the second turn saw the first");
    assert_eq!(first.ok("status", json!({})).await["sessions"]["busy"], 0, "no session is left busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_bound_a_session_is_busy_at_once() {
    let echo = Echo::gated("");
    let limits = Limits { session_queue: 1, ..Limits::default() };
    let server =
        Server::start(Agents::new().with(agent("default", echo.clone())), |b| b.limits(limits)).await;
    let mut client = server.client().await;
    let running = client.request("chat.send", message("p", "one")).await;
    let queued = client.request("chat.send", message("p", "two")).await;
    let busy = client.call("chat.send", message("p", "three")).await;
    assert_eq!(busy["error"]["code"], -32004, "{busy}");
    assert_eq!(busy["error"]["data"]["code"], "session_busy");
    assert_eq!(busy["error"]["data"]["session_key"], "default:ws:acct:p");
    assert!(
        busy["error"]["message"].as_str().unwrap().contains("already has a turn running and 1 waiting"),
        "{busy}"
    );
    echo.wait_calls(1).await;
    assert!(
        server.store.list_sessions(10).await.unwrap().is_empty(),
        "a session is stored when its first turn ends"
    );
    echo.release(2);
    assert_eq!(client.response(running).await["result"]["text"], "one");
    assert_eq!(client.response(queued).await["result"]["text"], "two");
    // Reusing the id of a running request is refused; a finished one's id is free again.
    let reuse = client.request("chat.send", message("q", "x")).await;
    client
        .send(json!({"jsonrpc": "2.0", "id": reuse, "method": "chat.send", "params": message("r", "y")}))
        .await;
    let refused = client.response(reuse).await;
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    echo.release(1);
    assert_eq!(client.response(reuse).await["result"]["text"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_cancel_stops_a_turn_and_keeps_its_partial_answer() {
    let server = Server::with(Echo::stalling("partial answer")).await;
    let mut client = server.client().await;
    let id = client.request("chat.send", message("p", "go")).await;
    // Wait until the partial text has streamed.
    while !client.events(id).iter().any(|e| e["type"] == "text") {
        let note = client.next().await.unwrap();
        client.notes.push(note);
    }
    let cancelled = client.ok("chat.cancel", json!({"request_id": id})).await;
    assert_eq!(cancelled, json!({"cancelled": true}));
    let answer = client.response(id).await;
    assert_eq!(answer["result"]["outcome"], "cancelled", "{answer}");
    assert_eq!(answer["result"]["text"], "partial answer");
    assert_eq!(client.events(id).last().unwrap()["outcome"], "cancelled");
    let session_id: SessionId = answer["result"]["session_id"].as_str().unwrap().parse().unwrap();
    let stored: Vec<String> =
        server.store.messages(session_id).await.unwrap().iter().map(|m| m.text()).collect();
    assert_eq!(stored, ["go", "partial answer"]);
    let gone = client.call("chat.cancel", json!({"request_id": id})).await;
    assert_eq!(error_name(&gone), "not_found");

    // A queued request cancelled before its turn never runs.
    let gated = Echo::gated("");
    let server = Server::with(gated.clone()).await;
    let mut client = server.client().await;
    let first = client.request("chat.send", message("p", "first")).await;
    gated.wait_calls(1).await;
    let second = client.request("chat.send", message("p", "second")).await;
    client.ok("chat.cancel", json!({"request_id": second})).await;
    assert_eq!(error_name(&client.response(second).await), "cancelled");
    gated.release(1);
    assert_eq!(client.response(first).await["result"]["text"], "first");
    assert_eq!(gated.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_route_a_peer_to_its_agent_and_an_explicit_agent_wins() {
    let bindings = Bindings::new(vec![Binding {
        agent: "vip".into(),
        channel: None,
        account: None,
        peer: Some("alice".into()),
        guild: None,
        team: None,
    }]);
    let agents =
        Agents::new().with(agent("default", Echo::new("default: "))).with(agent("vip", Echo::new("vip: ")));
    let server = Server::start(agents.bindings(bindings), |b| b).await;
    let mut client = server.client().await;
    let alice = client.ok("chat.send", message("alice", "hi")).await;
    assert_eq!((alice["agent"].clone(), alice["binding"].clone()), (json!("vip"), json!(0)));
    assert_eq!(alice["session_key"], "vip:ws:acct:alice");
    assert_eq!(alice["text"], "vip: hi");
    let bob = client.ok("chat.send", message("bob", "hi")).await;
    assert_eq!((bob["agent"].clone(), bob.get("binding")), (json!("default"), None));
    let mut explicit = message("alice", "hi");
    explicit["agent"] = json!("default");
    assert_eq!(client.ok("chat.send", explicit).await["session_key"], "default:ws:acct:alice");
    let mut unknown = message("alice", "hi");
    unknown["agent"] = json!("ghost");
    let refused = client.call("chat.send", unknown).await;
    assert_eq!(error_name(&refused), "not_found");
    assert!(
        refused["error"]["message"].as_str().unwrap().contains("this runtime has: default, vip"),
        "{refused}"
    );

    // Reloaded bindings apply to the next message; the connection stays.
    server.gateway.reload_bindings(Bindings::new(Vec::new()));
    assert_eq!(client.ok("chat.send", message("alice", "hi")).await["agent"], "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_turns_finish_then_says_so_and_closes() {
    let echo = Echo::gated("");
    let server = Server::with(echo.clone()).await;
    let mut busy = server.client().await;
    let mut idle = server.client().await;
    let id = busy.request("chat.send", message("p", "last words")).await;
    echo.wait_calls(1).await;

    let gateway = Arc::clone(&server.gateway);
    let drained = tokio::spawn(async move { drain(&gateway).await });
    // The idle client is told at once.
    let note = idle.next().await.unwrap();
    assert_eq!(note["method"], "gateway.shutdown", "{note}");
    assert!(note["params"]["reason"].as_str().unwrap().contains("shutting down"));
    assert_eq!(u16::from(idle.closed().await.code), 1001);
    // The busy one may still talk, but no new turn starts.
    let refused = busy.call("chat.send", message("q", "more")).await;
    assert_eq!((refused["error"]["code"].clone(), error_name(&refused)), (json!(-32008), "shutting_down"));
    assert_eq!(busy.ok("status", json!({})).await["shutting_down"], true);
    echo.release(1);
    assert_eq!(busy.response(id).await["result"]["text"], "last words");
    let note = busy.next().await.unwrap();
    assert_eq!(note["method"], "gateway.shutdown");
    assert_eq!(u16::from(busy.closed().await.code), 1001);
    let drained = drained.await.unwrap();
    assert!(drained.in_time && drained.cancelled == 0, "{drained:?}");
    assert_eq!(server.store.list_sessions(10).await.unwrap()[0].message_count, 2, "the turn was stored");
    // No new connections.
    tokio::time::timeout(Duration::from_secs(5), server.server).await.unwrap().unwrap();
    assert!(tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_still_running_after_the_grace_period_are_cancelled_and_stored() {
    let limits = Limits { shutdown_grace: Duration::from_millis(300), ..Limits::default() };
    let server = Server::start(Agents::new().with(agent("default", Echo::stalling("half a thought"))), |b| {
        b.limits(limits)
    })
    .await;
    let mut client = server.client().await;
    let id = client.request("chat.send", message("p", "think")).await;
    while client.events(id).len() < 2 {
        let note = client.next().await.unwrap();
        client.notes.push(note);
    }
    let drained = drain(&server.gateway).await;
    assert!(!drained.in_time && drained.cancelled == 1 && drained.abandoned == 0, "{drained:?}");
    let answer = client.response(id).await;
    assert_eq!(answer["result"]["outcome"], "cancelled", "{answer}");
    assert_eq!(client.next().await.unwrap()["method"], "gateway.shutdown");
    let session_id: SessionId = answer["result"]["session_id"].as_str().unwrap().parse().unwrap();
    let stored: Vec<String> =
        server.store.messages(session_id).await.unwrap().iter().map(|m| m.text()).collect();
    assert_eq!(stored, ["think", "half a thought"], "nothing accepted is lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_turn_still_gets_its_turn_stored() {
    let echo = Echo::gated("");
    let server = Server::with(echo.clone()).await;
    let mut client = server.client().await;
    client.request("chat.send", message("p", "remember this")).await;
    echo.wait_calls(1).await;
    client.ws.send(Message::Close(None)).await.unwrap();
    drop(client);
    echo.release(1);
    // The session is created, then the turn committed into it: wait for both.
    let mut stored = Vec::new();
    for _ in 0..200 {
        stored = server.store.list_sessions(10).await.unwrap();
        if stored.first().is_some_and(|s| s.message_count > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message_count, 2, "the user's message and the answer");
}

/// The Python `websockets` library against the gateway, installed (pinned, cached) by
/// `scripts/peers/websockets.sh`. Never skipped: without it the test fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_websockets_client_chats_end_to_end() {
    let python =
        tokio::task::spawn_blocking(|| exoclaw_testkit::peers::obtain("websockets.sh")).await.unwrap();
    let server = Server::start(Agents::new().with(agent("default", Echo::fixed("hello there world"))), |b| {
        b.tokens(TokenSet::from_tokens(["py-token"]))
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws_client.py");
    let output = tokio::process::Command::new(&python)
        .args([script, &server.url(), "py-token"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_connected_is_refused_for_every_method() {
    let keys = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let store = Arc::clone(&keys);
    let server = Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| b.keys(store)).await;
    let secret = make_key(&keys, "leaky").await;
    let mut client = server.client().await;
    assert_eq!(
        client.ok("connect", json!({"protocol": 1, "token": secret})).await["session"]["caller"],
        "key:leaky"
    );
    assert_eq!(client.ok("status", json!({})).await["agents"], json!(["default"]));

    assert!(exoclaw_core::KeyStore::revoke_key(&*keys, "leaky").await.unwrap());
    // Keys are cached for a second.
    tokio::time::sleep(exoclaw_gateway::keys::KEY_CACHE_TTL + Duration::from_millis(100)).await;
    for method in ["status", "agents.list", "tools.list", "chat.send"] {
        let params = if method == "chat.send" { message("p", "hi") } else { json!({}) };
        let refused = client.call(method, params).await;
        assert_eq!(error_name(&refused), "unauthenticated", "{method}: {refused}");
        assert_eq!(refused["error"]["data"]["reason"], "key_revoked", "{method}: {refused}");
    }
    assert_eq!(client.ok("ping", json!({})).await, json!({"pong": true}), "ping needs no caller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_session_key_part_is_refused_saying_the_limit() {
    let echo = Echo::new("");
    let server = Server::with(echo.clone()).await;
    let mut client = server.client().await;
    let huge = "p".repeat(900_000);
    let refused = client.call("chat.send", message(&huge, "hi")).await;
    assert_eq!(error_name(&refused), "invalid_params", "{}", &refused.to_string()[..200]);
    assert_eq!(refused["error"]["data"]["field"], "peer");
    assert_eq!(refused["error"]["data"]["limit"], exoclaw_gateway::MAX_KEY_PART_BYTES);
    let text = refused["error"]["message"].as_str().unwrap();
    assert!(text.contains("900000 bytes") && text.contains("at most 256 bytes"), "{text}");
    let long_team =
        json!({"channel": "ws", "account": "a", "peer": "p", "team": "t".repeat(257), "content": "hi"});
    assert_eq!(client.call("chat.send", long_team).await["error"]["data"]["field"], "team");
    assert_eq!(echo.calls(), 0, "nothing ran");
    // At the limit is fine.
    let at_limit = "p".repeat(exoclaw_gateway::MAX_KEY_PART_BYTES);
    assert_eq!(client.ok("chat.send", message(&at_limit, "hi")).await["outcome"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_waiting_to_authenticate_are_capped_and_connect_frees_a_place() {
    let limits = Limits { max_unauthenticated: 2, ..Limits::default() };
    let server = Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| {
        b.tokens(TokenSet::from_tokens(["s3cret"])).limits(limits)
    })
    .await;
    let mut first = server.client().await;
    let _second = server.client().await;
    match tokio_tungstenite::connect_async(server.url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "1");
            let body = String::from_utf8(response.into_body().unwrap_or_default()).unwrap();
            assert!(body.contains("server_busy") && body.contains("max_unauthenticated"), "{body}");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // A bearer header on the upgrade never waits unauthenticated.
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    // Authenticating gives the place back.
    first.ok("connect", json!({"protocol": 1, "token": "s3cret"})).await;
    assert!(tokio_tungstenite::connect_async(server.url()).await.is_ok());
}

/// The params each method is called with below: enough for its handler to answer.
fn params_for(method: Method, token: &str, session_id: &Value) -> Value {
    match method {
        Method::Connect => json!({"protocol": 1, "token": token}),
        Method::ChatSend => message("p", "hi"),
        Method::ChatCancel => json!({"request_id": 999}),
        Method::SessionsHistory | Method::SessionsReset => json!({"session_id": session_id}),
        Method::MemorySearch => json!({"owner": "ws:acct:p", "query": "hi"}),
        Method::MemoryFacts | Method::MemoryExport => json!({"owner": "ws:acct:p"}),
        Method::MemoryForget => json!({"owner": "ws:acct:p", "facts": [999]}),
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_is_reachable_by_the_callers_its_access_allows() {
    let keys = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let store = Arc::clone(&keys);
    let server = Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| {
        b.keys(store).tokens(TokenSet::from_tokens(["op"]))
    })
    .await;
    let secret = make_key(&keys, "app").await;
    let mut operator = server.client().await;
    operator.ok("connect", json!({"protocol": 1, "token": "op"})).await;
    let session_id = operator.ok("chat.send", message("p", "hi")).await["session_id"].clone();
    let mut key = server.client().await;
    key.ok("connect", json!({"protocol": 1, "token": secret})).await;
    let mut stranger = server.client().await;

    for method in Method::ALL {
        let name = method.name();
        // Nobody reached the handler when the answer is one of these.
        let refused = |answer: &Value| {
            answer.get("error").is_some()
                && ["unauthenticated", "forbidden", "method_not_found"].contains(&error_name(answer))
        };
        // `chat.cancel` of nothing running is answered `not_found` by its handler.
        let handled = |answer: &Value| answer.get("result").is_some() || (error_name(answer) == "not_found");

        let answer = operator.call(name, params_for(method, "op", &session_id)).await;
        assert!(handled(&answer), "the operator calling {name}: {answer}");

        let answer = key.call(name, params_for(method, &secret, &session_id)).await;
        match method.access() {
            Access::Open | Access::Caller => assert!(handled(&answer), "a key calling {name}: {answer}"),
            Access::Operator => {
                assert_eq!(error_name(&answer), "forbidden", "a key calling {name}: {answer}")
            }
        }

        if method != Method::Connect {
            let answer = stranger.call(name, params_for(method, "", &session_id)).await;
            match method.access() {
                Access::Open => assert!(!refused(&answer), "a stranger calling {name}: {answer}"),
                Access::Caller | Access::Operator => {
                    assert_eq!(error_name(&answer), "unauthenticated", "a stranger calling {name}: {answer}");
                }
            }
        }
    }
}

/// Makes a virtual key named `name` with a budget of `budget_usd` (none: unlimited); returns its
/// secret.
async fn make_budgeted_key(store: &exoclaw_store::Store, name: &str, budget_usd: Option<f64>) -> String {
    let key = exoclaw_gateway::keys::generate_key().unwrap();
    let new = exoclaw_core::NewApiKey {
        name: name.into(),
        hash: key.hash,
        prefix: key.prefix,
        models: Vec::new(),
        budget_usd,
        rpm: None,
    };
    exoclaw_core::KeyStore::create_key(store, new).await.unwrap();
    key.secret
}

/// What the key named `name` has spent, as stored in `keys`.
async fn key_spend(server: &Server, keys: &exoclaw_store::Store, name: &str) -> f64 {
    server.gateway.flush_usage().await;
    let keys = exoclaw_core::KeyStore::list_keys(keys).await.unwrap();
    keys.into_iter().find(|k| k.name == name).unwrap().spent_usd
}

/// The default agent answering with `echo`, its calls priced at $0.001 a token (in and out) and
/// each call's answer held to 10 tokens: a turn of `hi` costs $0.011 (10 tokens in, 1 out) and
/// holds about that much before its call.
fn priced_agent(echo: Arc<Echo>) -> (String, exoclaw_core::AgentRunner) {
    use exoclaw_core::{Budgets, Metering, Price, PriceTable, SystemClock};
    let mut prices = PriceTable::empty();
    prices.set("echo/m", Price::new(1000.0, 1000.0));
    let metering = Metering::new(prices, Budgets::new(Vec::new(), Arc::new(SystemClock)));
    let (name, runner) = agent("default", echo);
    let params = exoclaw_types::GenerationParams { max_tokens: Some(10), ..Default::default() };
    (name, runner.with_metering(Arc::new(metering)).with_params(params))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_turns_of_a_key_never_spend_past_its_budget() {
    let echo = Echo::new("");
    let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let keys = Arc::clone(&store);
    let server = Server::start(Agents::new().with(priced_agent(echo.clone())), |b| b.keys(keys)).await;
    // Room for four $0.011 turns, not five.
    let budget = 0.05;
    let secret = make_budgeted_key(&store, "app", Some(budget)).await;
    let mut client = server.client().await;
    client.ok("connect", json!({"protocol": 1, "token": secret})).await;

    // Eight sessions at once: each turn holds its call's estimate before the model is asked.
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(client.request("chat.send", message(&format!("peer-{i}"), "hi")).await);
    }
    let mut responses = Vec::new();
    while responses.len() < ids.len() {
        let frame = client.next().await.unwrap();
        if frame.get("id").is_some_and(|id| ids.contains(&id.as_i64().unwrap_or(-1))) {
            responses.push(frame);
        }
    }
    let (mut answered, mut refused) = (0, 0);
    for response in responses {
        if response.get("result").is_some() {
            answered += 1;
        } else {
            assert_eq!(error_name(&response), "budget_exceeded", "{response}");
            assert_eq!(response["error"]["data"]["kind"], "budget_exceeded", "{response}");
            let message = response["error"]["message"].as_str().unwrap();
            assert!(message.contains("the key `app`"), "{message}");
            refused += 1;
        }
    }
    assert!((1..=4).contains(&answered), "{answered} turns answered of 8; four fit the budget");
    assert_eq!(answered + refused, 8);
    assert_eq!(echo.calls(), answered, "a refused turn never reaches the model");
    let spent = key_spend(&server, &store, "app").await;
    assert!(spent <= budget + 1e-9, "the key spent ${spent} of its ${budget} budget");
    let expected = answered as f64 * 0.011;
    assert!((spent - expected).abs() < 1e-9, "each answered turn is charged what it cost: ${spent}");

    // Spent down to less than a turn: the next message is refused before the model is asked.
    if answered == 4 {
        let refused = client.call("chat.send", message("later", "hi")).await;
        assert_eq!(error_name(&refused), "budget_exceeded", "{refused}");
        assert_eq!(echo.calls(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budgeted_key_is_refused_an_agent_whose_model_has_no_price() {
    let echo = Echo::new("");
    let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let keys = Arc::clone(&store);
    let server = Server::start(Agents::new().with(agent("default", echo.clone())), |b| b.keys(keys)).await;
    let secret = make_budgeted_key(&store, "app", Some(1.0)).await;
    let mut client = server.client().await;
    client.ok("connect", json!({"protocol": 1, "token": secret})).await;

    let refused = client.call("chat.send", message("p", "hi")).await;
    assert_eq!(error_name(&refused), "budget_exceeded", "{refused}");
    assert_eq!(refused["error"]["data"]["kind"], "budget_unpriced", "{refused}");
    let text = refused["error"]["message"].as_str().unwrap();
    assert!(text.contains("no price is known for `echo/default`") && text.contains("[prices]"), "{text}");
    assert_eq!(echo.calls(), 0, "never billed as free: the model is not asked");
    assert_eq!(key_spend(&server, &store, "app").await, 0.0);

    // A key without a budget may use it: nothing counts dollars against it.
    let free = make_key(&store, "free").await;
    let mut other = server.client().await;
    other.ok("connect", json!({"protocol": 1, "token": free})).await;
    other.ok("chat.send", message("p2", "hi")).await;
    assert_eq!(echo.calls(), 1);
}

/// Indexes `text` as message `seq` of `session`, said by `owner`.
async fn remember(store: &exoclaw_store::Store, owner: &str, session: SessionId, seq: u64, text: &str) {
    use exoclaw_core::MemoryIndex;
    let entry = exoclaw_core::NewEntry {
        owner: owner.to_owned(),
        session,
        kind: exoclaw_core::EntryKind::Message,
        seq,
        role: Some(exoclaw_types::Role::User),
        text: text.to_owned(),
        created_at: chrono::Utc::now(),
        embedding: None,
    };
    store.index(&[entry]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_searches_lists_forgets_and_exports_a_users_memory_and_a_key_may_not() {
    let keys = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let store = Arc::clone(&keys);
    let server = Server::start(Agents::new().with(agent("default", Echo::new(""))), |b| {
        b.keys(store).tokens(TokenSet::from_tokens(["op"]))
    })
    .await;
    let (ada, bob) = ("ws:acct:ada", "ws:acct:bob");
    let (ada_session, bob_session) = (SessionId::new(), SessionId::new());
    remember(&server.store, ada, ada_session, 0, "I live in Paris near the canal").await;
    remember(&server.store, ada, ada_session, 2, "I moved to Lyon last spring").await;
    remember(&server.store, bob, bob_session, 0, "Paris is where my sister lives").await;
    let memory = &server.memory;
    memory
        .learn(ada, ada_session, 0, "I live in Paris", exoclaw_memory::Requester::new("main", "echo/m"))
        .await
        .unwrap();
    memory
        .learn(ada, ada_session, 2, "I moved to Lyon", exoclaw_memory::Requester::new("main", "echo/m"))
        .await
        .unwrap();

    let mut operator = server.client().await;
    operator.ok("connect", json!({"protocol": 1, "token": "op"})).await;

    // Search: the owner's entries only.
    let found = operator.ok("memory.search", json!({"owner": ada, "query": "Paris"})).await;
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["text"], "I live in Paris near the canal");
    assert_eq!(hits[0]["owner"], ada);
    assert_eq!(hits[0]["session"], ada_session.to_string());
    assert_eq!(hits[0]["text_rank"], 0);
    let paris_entry = hits[0]["id"].as_i64().unwrap();
    let bobs = operator.ok("memory.search", json!({"owner": bob, "query": "Paris"})).await;
    let bobs_entry = bobs["hits"][0]["id"].as_i64().unwrap();
    assert_ne!(bobs_entry, paris_entry);

    // Facts: the current one; with the superseded ones, the old value marked.
    let current = operator.ok("memory.facts", json!({"owner": ada})).await;
    let objects: Vec<&Value> = current["facts"].as_array().unwrap().iter().map(|f| &f["object"]).collect();
    assert_eq!(objects, [&json!("Lyon")], "{current}");
    let all = operator.ok("memory.facts", json!({"owner": ada, "superseded": true})).await;
    let facts = all["facts"].as_array().unwrap();
    let paris = facts.iter().find(|f| f["object"] == "Paris").unwrap();
    let lyon = facts.iter().find(|f| f["object"] == "Lyon").unwrap();
    assert_eq!((paris["current"].clone(), lyon["current"].clone()), (json!(false), json!(true)));
    assert_eq!(paris["superseded_by"], lyon["id"]);
    assert!(operator.ok("memory.facts", json!({"owner": bob})).await["facts"].as_array().unwrap().is_empty());

    // A virtual key may read nobody's memory.
    let secret = make_key(&keys, "app").await;
    let mut key = server.client().await;
    key.ok("connect", json!({"protocol": 1, "token": secret})).await;
    for (method, params) in [
        ("memory.search", json!({"owner": ada, "query": "Paris"})),
        ("memory.facts", json!({"owner": ada})),
        ("memory.forget", json!({"owner": ada, "facts": [lyon["id"]]})),
        ("memory.export", json!({"owner": ada})),
    ] {
        let refused = key.call(method, params).await;
        assert_eq!(error_name(&refused), "forbidden", "{method}: {refused}");
        assert!(!refused.to_string().contains("Lyon"), "{refused}");
    }

    // Forget: ids of another owner's memory count for nothing.
    let other = operator.ok("memory.forget", json!({"owner": ada, "entries": [bobs_entry]})).await;
    assert_eq!(other, json!({"facts": 0, "entries": 0}));
    let forgot = operator
        .ok("memory.forget", json!({"owner": ada, "facts": [lyon["id"]], "entries": [paris_entry]}))
        .await;
    assert_eq!(forgot, json!({"facts": 1, "entries": 1}));
    let after = operator.ok("memory.search", json!({"owner": ada, "query": "Paris"})).await;
    assert_eq!(after["hits"], json!([]));
    assert_eq!(
        operator.ok("memory.search", json!({"owner": bob, "query": "Paris"})).await["hits"][0]["id"],
        bobs_entry
    );

    // Export: what is left of Ada's memory.
    let export = operator.ok("memory.export", json!({"owner": ada})).await;
    let texts: Vec<&Value> = export["entries"].as_array().unwrap().iter().map(|e| &e["text"]).collect();
    assert_eq!(texts, [&json!("I moved to Lyon last spring")], "{export}");
    let objects: Vec<&Value> = export["facts"].as_array().unwrap().iter().map(|f| &f["object"]).collect();
    assert_eq!(objects, [&json!("Paris")], "{export}");
    let gone = operator.ok("memory.forget", json!({"owner": ada, "session": ada_session})).await;
    assert_eq!(gone, json!({"facts": 0, "entries": 1}));

    // Params that cannot be answered say why.
    for (method, params) in [
        ("memory.search", json!({"owner": ada, "query": "  "})),
        ("memory.search", json!({"owner": "", "query": "Paris"})),
        ("memory.forget", json!({"owner": ada})),
        ("memory.facts", json!({})),
    ] {
        let answer = operator.call(method, params).await;
        assert_eq!(error_name(&answer), "invalid_params", "{method}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_methods_on_a_gateway_without_memory_say_it_is_off() {
    let server =
        Server::start(Agents::new().with(agent("default", Echo::new(""))).without_memory(), |b| b).await;
    let mut client = server.client().await;
    let answer = client.call("memory.facts", json!({"owner": "local"})).await;
    assert_eq!(error_name(&answer), "unavailable", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("[memory] enabled"), "{answer}");
}
