//! An OpenAI-compatible model server on `127.0.0.1:0` that answers a set share of attempts with
//! `503` at random — reproducibly *per request*, whatever order concurrent requests arrive in.
//!
//! [`Fault::Random`](crate::fault::Fault::Random) draws from one seeded stream in arrival order,
//! so with several clients at once which request gets which draw changes from run to run. Here an
//! attempt's fate is a hash of the server's seed, the request's key (the text of its last message)
//! and how many attempts with that key came before: the seed fixes, for every request, which of
//! its attempts fail. A test sending distinct messages can therefore tell exactly which requests
//! no retry policy could have saved ([`FlakyServer::fails`]), and assert that every other one
//! succeeded.
//!
//! A passing attempt gets a whole `chat.completion` (or, when the body asks to stream, the
//! [`Answer`] as SSE) saying `ok`; a failing one gets `503` with OpenAI's error body.

use crate::fault::error_body;
use crate::script::{Answer, request_messages};
use crate::server::Loopback;
use axum::{body::Body, extract::Request, response::Response};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

/// What a passing attempt answers.
pub const ANSWER: &str = "ok";

struct Shared {
    fail_rate: f64,
    seed: u64,
    /// Attempts seen per key.
    seen: Mutex<HashMap<String, u32>>,
    requests: AtomicUsize,
    failed: AtomicUsize,
}

/// The running server; stops when dropped.
pub struct FlakyServer {
    server: Loopback,
    shared: Arc<Shared>,
}

impl FlakyServer {
    /// Starts a server failing each attempt with probability `fail_rate` (`0.0..=1.0`), drawn
    /// from `seed`. Two servers need different seeds for independent failures.
    pub async fn start(fail_rate: f64, seed: u64) -> Self {
        assert!((0.0..=1.0).contains(&fail_rate), "fail_rate must be in 0..=1, got {fail_rate}");
        let shared = Arc::new(Shared {
            fail_rate,
            seed,
            seen: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        });
        let state = shared.clone();
        let server =
            Loopback::serve(axum::Router::new().fallback(move |req: Request| answer(state.clone(), req)))
                .await;
        Self { server, shared }
    }

    /// `http://127.0.0.1:PORT` (the OpenAI base URL is this plus `/v1`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Chat requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many of them were answered `503`.
    pub fn failed(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Whether attempt number `attempt` (0 for the first) of a request whose last message says
    /// `key` fails (or failed).
    pub fn fails(&self, key: &str, attempt: u32) -> bool {
        draw(self.shared.seed, key, attempt) < self.shared.fail_rate
    }
}

/// A uniform number in `[0, 1)` for (`seed`, `key`, `attempt`): FNV-1a over the key, then
/// splitmix64's finaliser over it mixed with the seed and the attempt.
fn draw(seed: u64, key: &str, attempt: u32) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z =
        hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((u64::from(attempt) << 32) | u64::from(attempt));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The text of the last message of a Chat Completions body (string content, or its text parts).
fn last_message(body: &Value) -> String {
    let content = request_messages(body).last().map_or(&Value::Null, |m| &m["content"]);
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

async fn answer(shared: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if parts.method == axum::http::Method::GET {
        return json_response(200, &json!({"object": "list", "data": [{"id": "flaky", "object": "model"}]}));
    }
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let key = last_message(&body);
    let attempt = {
        let mut seen = shared.seen.lock().expect("lock");
        let count = seen.entry(key.clone()).or_insert(0);
        *count += 1;
        *count - 1
    };
    if draw(shared.seed, &key, attempt) < shared.fail_rate {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        return json_response(503, &error_body(503));
    }
    if body["stream"] == true {
        let sse: String = Answer::text(ANSWER).chunks().concat();
        return Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(Body::from(sse))
            .expect("an SSE response");
    }
    json_response(
        200,
        &json!({"id": "chatcmpl-flaky", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}),
    )
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a JSON response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_fixed_by_seed_key_and_attempt() {
        let n = 100_000;
        let failed = (0..n).filter(|i| draw(7, &format!("request {i}"), 0) < 0.3).count();
        assert!((29_000..31_000).contains(&failed), "{failed} of {n}");
        assert_eq!(draw(7, "a", 1), draw(7, "a", 1));
        assert_ne!(draw(7, "a", 1), draw(8, "a", 1));
        assert_ne!(draw(7, "a", 1), draw(7, "a", 2));
    }

    #[tokio::test]
    async fn each_request_meets_its_own_fate_in_any_order() {
        let server = FlakyServer::start(0.5, 3).await;
        let client = reqwest::Client::new();
        let url = format!("{}/v1/chat/completions", server.url());
        let mut attempts: HashMap<&str, u32> = HashMap::new();
        let mut failed = 0;
        for key in ["b", "a", "b", "a", "a", "c", "a", "b"] {
            let body = json!({"model": "m", "messages": [{"role": "user", "content": key}]});
            let status = client.post(&url).json(&body).send().await.unwrap().status().as_u16();
            let attempt = attempts.entry(key).or_insert(0);
            let fails = server.fails(key, *attempt);
            assert_eq!(status, if fails { 503 } else { 200 }, "{key} attempt {attempt}");
            failed += usize::from(fails);
            *attempt += 1;
        }
        assert_eq!((server.requests(), server.failed()), (8, failed));
        assert!(failed > 0 && failed < 8, "seed 3 gives both outcomes: {failed}");
    }
}
