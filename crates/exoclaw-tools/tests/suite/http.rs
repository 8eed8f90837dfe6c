//! http_fetch against a real HTTP server on loopback: HTML to text, statuses, the size cap enforced
//! while streaming, timeouts, cancellation and refusals.

use super::{Workspace, failed, refused};
use bytes::Bytes;
use exoclaw_core::ToolError;
use exoclaw_testkit::server::{Ending, Piece, Reply, ScriptedServer};
use pretty_assertions::assert_eq;
use serde_json::json;
use std::time::Duration;

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Demo page</title>
<style>body { color: red; }</style>
<script>var secret = "not for the model";</script></head>
<body><h1>Welcome</h1>
<p>Fish &amp; chips, <a href="/menu">see the menu</a>.</p>
<ul><li>first item</li><li>second item</li></ul>
</body></html>"#;

#[tokio::test]
async fn html_comes_back_as_readable_text_with_the_status() {
    let server =
        ScriptedServer::start([Reply::text(200, PAGE).header("content-type", "text/html; charset=utf-8")])
            .await;
    let ws = Workspace::new();
    let out = ws.ok("http_fetch", json!({"url": format!("{}/page", server.url())})).await;
    assert!(out.starts_with("HTTP 200 OK\ncontent-type: text/html; charset=utf-8\n\n"), "{out}");
    for text in ["Welcome", "Fish & chips", "see the menu", "first item", "second item"] {
        assert!(out.contains(text), "{text:?} missing from:\n{out}");
    }
    for markup in ["<p>", "<a ", "&amp;", "var secret", "color: red"] {
        assert!(!out.contains(markup), "{markup:?} left in:\n{out}");
    }
    assert_eq!(server.request().method, "GET");
}

#[tokio::test]
async fn error_statuses_are_results_with_their_body() {
    let server = ScriptedServer::start([Reply::text(404, "no such page")]).await;
    let ws = Workspace::new();
    let out = ws.ok("http_fetch", json!({"url": server.url()})).await;
    assert_eq!(out, "HTTP 404 Not Found\n\nno such page");
}

#[tokio::test]
async fn method_headers_and_body_are_sent() {
    let server = ScriptedServer::start([Reply::json(201, &json!({"id": 7}))]).await;
    let ws = Workspace::new();
    let out = ws
        .ok(
            "http_fetch",
            json!({
                "url": format!("{}/items?x=1", server.url()),
                "method": "post",
                "headers": {"content-type": "application/json", "x-trace": "abc"},
                "body": "{\"name\": \"widget\"}"
            }),
        )
        .await;
    assert_eq!(out, "HTTP 201 Created\ncontent-type: application/json\n\n{\"id\":7}");
    let request = server.request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/items");
    assert_eq!(request.query.as_deref(), Some("x=1"));
    assert_eq!(request.header("x-trace"), Some("abc"));
    assert_eq!(request.body, json!({"name": "widget"}));
}

#[tokio::test]
async fn the_size_cap_cuts_the_body_with_a_marker() {
    let server = ScriptedServer::start([Reply::text(200, &"a".repeat(10_000))]).await;
    let ws = Workspace::new();
    let out = ws.ok("http_fetch", json!({"url": server.url(), "max_bytes": 1000})).await;
    assert_eq!(
        out,
        format!("HTTP 200 OK\n\n{}\n[… response body truncated after 1000 bytes …]", "a".repeat(1000))
    );
}

#[tokio::test]
async fn the_size_cap_is_enforced_while_streaming() {
    // 2,000 bytes, then a body that never ends: only stopping at the cap returns.
    let reply = Reply {
        delay: Duration::ZERO,
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: vec![Piece::Bytes(Bytes::from("b".repeat(2000)))],
        ending: Ending::Hang,
    };
    let server = ScriptedServer::start([reply]).await;
    let ws = Workspace::new();
    let call = ws.call("http_fetch", json!({"url": server.url(), "max_bytes": 500, "timeout_secs": 60}));
    let out = tokio::time::timeout(Duration::from_secs(20), call).await.expect("read past the cap").unwrap();
    assert!(out.ends_with("[… response body truncated after 500 bytes …]"), "{out}");
    assert!(server.hung_up(Duration::from_secs(5)).await, "the connection was not closed at the cap");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = ScriptedServer::start([Reply::text(200, "late").delayed(Duration::from_secs(30))]).await;
    let ws = Workspace::new();
    let e = ws.err("http_fetch", json!({"url": server.url(), "timeout_secs": 1})).await;
    assert_eq!(e, ToolError::Timeout(Duration::from_secs(1)));
}

#[tokio::test]
async fn cancellation_ends_the_request() {
    let server = ScriptedServer::start([Reply::text(200, "late").delayed(Duration::from_secs(30))]).await;
    let ws = Workspace::new();
    let cancel = ws.ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let call = ws.call("http_fetch", json!({"url": server.url()}));
    let result = tokio::time::timeout(Duration::from_secs(10), call).await.expect("cancellation was ignored");
    assert_eq!(result, Err(ToolError::Cancelled));
}

#[tokio::test]
async fn binary_bodies_are_described_not_shown() {
    let server =
        ScriptedServer::start([Reply::text(200, "\u{89}PNG\0\0\0").header("content-type", "image/png")])
            .await;
    let ws = Workspace::new();
    let out = ws.ok("http_fetch", json!({"url": server.url()})).await;
    assert_eq!(out, "HTTP 200 OK\ncontent-type: image/png\n\n(binary body, 8 bytes of image/png; not shown)");
}

#[tokio::test]
async fn only_http_urls_and_known_methods_are_accepted() {
    let ws = Workspace::new();
    let message = refused(ws.err("http_fetch", json!({"url": "file:///etc/passwd"})).await);
    assert!(message.contains("only http:// and https://"), "{message}");
    let e = ws.err("http_fetch", json!({"url": "not a url"})).await;
    assert!(matches!(e, ToolError::InvalidArguments(_)), "{e:?}");
    let e = ws.err("http_fetch", json!({"url": "http://127.0.0.1:1/", "method": "BREW"})).await;
    assert!(matches!(e, ToolError::InvalidArguments(ref m) if m.contains("BREW")), "{e:?}");
    let e = ws.err("http_fetch", json!({"url": "http://127.0.0.1:1/", "headers": {"bad name": "x"}})).await;
    assert!(matches!(e, ToolError::InvalidArguments(_)), "{e:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_failure() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let ws = Workspace::new();
    let e = failed(ws.err("http_fetch", json!({"url": url})).await);
    assert!(e.starts_with(&format!("could not connect: {url}")), "{e}");
}
