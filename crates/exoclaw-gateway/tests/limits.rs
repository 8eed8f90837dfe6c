//! The limits `serve` holds clients to, met the way a slow or greedy client meets them: over raw
//! TCP (so a test can send half a request and stop), against `serve` on `127.0.0.1:0` with small
//! limits. What is asserted is what the client gets (408, 503, 413, a closed connection), never
//! how long it took; the reads have a generous bound only so that a regression fails rather
//! than hangs.

#![allow(clippy::unwrap_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw_core::{EventStream, Provider, ProviderError};
use exoclaw_gateway::{Gateway, Limits, StaticModels, TokenSet, serve};
use exoclaw_types::{ChatRequest, StopReason, StreamEvent};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any limit here by far: a read that takes this long means the gateway never cut
/// the client off.
const BOUND: Duration = Duration::from_secs(20);

/// Answers `text` after `delay`.
#[derive(Debug)]
struct Fixed {
    text: String,
    delay: Duration,
}

#[async_trait]
impl Provider for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, ProviderError> {
        tokio::time::sleep(self.delay).await;
        let events = [
            StreamEvent::TextDelta { text: self.text.clone() },
            StreamEvent::Finish { reason: StopReason::EndTurn },
        ];
        Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
    }
}

/// How large the `huge` model's answer is: more than the kernel buffers on both ends of a
/// loopback connection hold, so a client that does not read leaves the gateway waiting to write.
const HUGE: usize = 32 * 1024 * 1024;

/// `serve` with `limits`, a `slow` model answering after 600 ms (longer than the short timeouts
/// here), and a `huge` one answering 32 MiB at once.
async fn start(limits: Limits) -> SocketAddr {
    let slow: Arc<dyn Provider> =
        Arc::new(Fixed { text: "slow but fine".into(), delay: Duration::from_millis(600) });
    let huge: Arc<dyn Provider> = Arc::new(Fixed { text: "h".repeat(HUGE), delay: Duration::ZERO });
    let models = StaticModels::new().with("slow", slow, "m").with("huge", huge, "m");
    let gateway = Gateway::builder(Arc::new(models)).tokens(TokenSet::open()).limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Arc::new(gateway.build());
    tokio::spawn(serve(listener, gateway, std::future::pending()));
    addr
}

/// Everything the gateway sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the gateway kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response's head and body (by `content-length`), leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            if body.len() >= length {
                return text;
            }
        }
    }
}

fn chat_request(model: &str) -> String {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn quick(limits: Limits) -> Limits {
    Limits { header_timeout: Duration::from_millis(300), keep_alive: Duration::from_millis(300), ..limits }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_answered_408_and_cut_off() {
    let addr = start(quick(Limits::default())).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: a").await.unwrap();
    // …and then nothing more: the gateway answers 408 and closes.
    let answer = read_to_close(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(answer.contains("request_timeout") && answer.contains("header_timeout_secs"), "{answer}");

    // A connection that never says anything is closed without an answer.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_but_a_long_request_is_not() {
    let addr = start(quick(Limits::default())).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    // The model takes twice the header timeout and the keep-alive time to answer: a request that
    // is running has no deadline of theirs.
    client.write_all(chat_request("slow").as_bytes()).await.unwrap();
    let answer = read_response(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.contains("slow but fine"), "{answer}");
    // Then nothing: past the keep-alive time the connection is closed, with nothing more said.
    assert_eq!(read_to_close(&mut client).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_new_one_is_told_to_retry() {
    let addr = start(Limits { max_connections: 2, ..Limits::default() }).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
        assert!(read_response(&mut client).await.starts_with("HTTP/1.1 200"));
        held.push(client);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.contains("retry-after: 1") && answer.contains("max_connections"), "{answer}");
    // Once one goes, there is room again.
    drop(held.pop());
    let mut answer = String::new();
    for _ in 0..200 {
        let mut again = TcpStream::connect(addr).await.unwrap();
        again
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        answer = read_to_close(&mut again).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_in_flight_budget_are_refused_503_or_413() {
    let addr = start(Limits { max_body_bytes_in_flight: 1000, ..Limits::default() }).await;
    // One request holds 800 of the 1,000 bytes: its headers are in, its body is still coming.
    let mut holder = TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 800\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    // The gateway asks for the body once it reads it: the reservation is made by then.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(BOUND, holder.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));

    let mut second = TcpStream::connect(addr).await.unwrap();
    let body = "x".repeat(500);
    second
        .write_all(format!("POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{body}").as_bytes())
        .await
        .unwrap();
    let answer = read_response(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.contains("retry-after: 1") && answer.contains("max_body_bytes_in_flight"), "{answer}");
    assert!(answer.contains("server_busy"), "{answer}");

    // Larger than the whole budget: no use retrying.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2000\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut huge).await;
    assert!(answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"), "{answer}");
    assert!(answer.contains("request_too_large") && answer.contains("max_body_bytes_in_flight"), "{answer}");

    // The holder finishes (its body is not a valid request: 400) and gives its bytes back.
    holder.write_all("y".repeat(800).as_bytes()).await.unwrap();
    assert!(read_response(&mut holder).await.starts_with("HTTP/1.1 400"));
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(chat_request("slow").as_bytes()).await.unwrap();
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let addr = start(Limits { body_timeout: Duration::from_millis(300), ..Limits::default() }).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":")
        .await
        .unwrap();
    let answer = read_response(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(answer.contains("body_timeout_secs"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_is_cut_off() {
    let addr = start(quick(Limits::default())).await;
    // A fixed, small receive buffer: left to autotune, it may grow to hold the whole answer on a
    // machine whose `net.ipv4.tcp_rmem` allows 32 MiB, and the gateway's writes would never wait.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut client = socket.connect(addr).await.unwrap();
    client.write_all(chat_request("huge").as_bytes()).await.unwrap();
    // The answer's first bytes: the gateway is writing it (making 32 MiB of JSON may take a while
    // on a busy machine, and the wait below must start after that).
    let mut answer = vec![0; 64];
    tokio::time::timeout(BOUND, client.read_exact(&mut answer)).await.unwrap().unwrap();
    // Not reading: the gateway's writes wait once the buffers are full, and after the keep-alive
    // time (300 ms here) it gives up on the client.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = tokio::time::timeout(BOUND, client.read_to_end(&mut answer)).await.unwrap();
    let head = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        answer.len() < HUGE,
        "the whole answer ({} bytes) was kept for a client that did not read it",
        answer.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_rebinding_page_like_app_does() {
    // `serve` puts the guard around the whole router rather than each route: the same answers.
    let addr = start(Limits::default()).await;
    let mut page = TcpStream::connect(addr).await.unwrap();
    page.write_all(b"GET /v1/models HTTP/1.1\r\nhost: evil.example:7878\r\n\r\n").await.unwrap();
    let answer = read_response(&mut page).await;
    assert!(
        answer.starts_with("HTTP/1.1 403 Forbidden\r\n") && answer.contains("forbidden_host"),
        "{answer}"
    );
    let mut foreign = TcpStream::connect(addr).await.unwrap();
    foreign
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\norigin: https://evil.example\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut foreign).await;
    assert!(
        answer.starts_with("HTTP/1.1 403 Forbidden\r\n") && answer.contains("forbidden_origin"),
        "{answer}"
    );
    let mut local = TcpStream::connect(addr).await.unwrap();
    local.write_all(b"GET /v1/models HTTP/1.1\r\nhost: localhost:7878\r\n\r\n").await.unwrap();
    assert!(read_response(&mut local).await.starts_with("HTTP/1.1 200 OK\r\n"));
}
