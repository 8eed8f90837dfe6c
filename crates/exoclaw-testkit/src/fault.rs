//! A fault-injection proxy on `127.0.0.1:0`: sits between a client (exoclaw's providers) and any
//! upstream base URL (a [`ScriptedServer`](crate::server::ScriptedServer) or a real `llama-server`)
//! and does to each request what the next [`Fault`] of its script says — pass it through (streaming
//! the reply chunk by chunk), answer with an error status, reset the connection, stall, cut the body
//! short, or send garbage. Past the script it applies a default ([`Fault::Pass`] unless set), which
//! may be a seeded [`Fault::Random`] for "30 % injected 5xx" runs. Every request is recorded with
//! the fault it got. Dropping the proxy closes its port and every connection it holds.
//!
//! What a reqwest client sees for each fault (as the tests in `tests/fault.rs` check):
//!
//! - `Pass`: the upstream's status, headers and body, each upstream chunk as it arrives; hanging up
//!   on the proxy hangs up on the upstream.
//! - `Status`: that status, `Retry-After` when set, an OpenAI-style JSON error body.
//! - `Refuse`: `send()` fails with `is_request()` — not `is_connect()`, since the TCP connect
//!   succeeded — caused by "connection reset by peer" (the proxy closes with `SO_LINGER` 0).
//! - `Stall`: no status line for the whole stall, so a client timeout fires (`is_timeout()`); after
//!   it, as `Pass`.
//! - `DropAfter`: the upstream's status and headers, exactly the first `bytes` body bytes, then a
//!   failed read: `is_decode()` with a source that `is_body()`, hyper's "unexpected EOF during chunk
//!   size line" — from `chunk()` and `bytes_stream()` alike.
//! - `Garbage`: `200`, `content-type: text/event-stream`, a body that is neither UTF-8, SSE nor JSON.
//! - After the proxy is dropped: requests in flight fail with a reset, pooled connections are gone,
//!   and new connects are refused (`is_connect()`).

mod conn;
mod relay;
mod wire;

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::Value;
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tokio::sync::watch;

use conn::ConnHandle;
pub use wire::{GARBAGE, error_body, http_date};

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forwards the request (method, path and query, headers but hop-by-hop ones and `Host`, body)
    /// to the upstream and streams its reply back chunk by chunk as it arrives. An upstream that
    /// cannot be reached is answered with a `502` and a JSON error body.
    Pass,
    /// Answers at once with `status`, a `Retry-After` header when `retry_after` is set, and `body`
    /// as JSON (no body when `Null`); the upstream is not called.
    Status {
        /// The HTTP status, e.g. 500, 503, 429.
        status: u16,
        /// The `Retry-After` header, if any.
        retry_after: Option<RetryAfter>,
        /// The JSON body; [`error_body`] builds OpenAI's shape.
        body: Value,
    },
    /// Resets the connection before writing a byte: the client gets a connection error, not an
    /// HTTP response. The upstream is not called.
    Refuse,
    /// Sends nothing at all (not even the status line) for `duration`, then passes the request
    /// through. `Duration::MAX` stalls until the client gives up or the proxy is dropped.
    Stall {
        /// How long to stay silent.
        duration: Duration,
    },
    /// Forwards the request, streams back the upstream's status, headers and the first `bytes`
    /// bytes of its body, then cuts the connection mid-body (an incomplete chunked body). The body
    /// never ends cleanly, even when the upstream's is shorter than `bytes`.
    DropAfter {
        /// How many body bytes get through.
        bytes: usize,
    },
    /// Answers `200` with `content-type: text/event-stream` and [`GARBAGE`] as the body; the
    /// upstream is not called.
    Garbage,
    /// Applies `fail` with probability `p_fail`, otherwise [`Fault::Pass`], drawing from a seeded
    /// xorshift stream so a run is reproducible. Random faults with the same seed draw successive
    /// values from one stream per proxy; [`FaultProxy::set_default`] restarts it.
    Random {
        /// The chance, in `0.0..=1.0`, that a request gets `fail`.
        p_fail: f64,
        /// The fault applied on failure.
        fail: Box<Fault>,
        /// The stream's seed.
        seed: u64,
    },
}

impl Fault {
    /// `status` with OpenAI's error body for it ([`error_body`]) and no `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self::Status { status, retry_after: None, body: error_body(status) }
    }

    /// `status` with OpenAI's error body for it and a `Retry-After` header.
    pub fn status_retry_after(status: u16, retry_after: RetryAfter) -> Self {
        Self::Status { status, retry_after: Some(retry_after), body: error_body(status) }
    }

    /// Silence for `duration`, then [`Fault::Pass`].
    pub fn stall(duration: Duration) -> Self {
        Self::Stall { duration }
    }

    /// `fail` with probability `p_fail`, else [`Fault::Pass`], seeded.
    pub fn random(p_fail: f64, fail: Fault, seed: u64) -> Self {
        Self::Random { p_fail, fail: Box::new(fail), seed }
    }

    /// Panics on a fault that cannot be applied, at the call that installs it rather than at a
    /// request much later.
    fn check(&self) {
        match self {
            Self::Random { p_fail, fail, .. } => {
                assert!((0.0..=1.0).contains(p_fail), "Fault::Random p_fail must be in 0..=1, got {p_fail}");
                fail.check();
            }
            Self::Status { status, .. } => {
                assert!(
                    StatusCode::from_u16(*status).is_ok(),
                    "Fault::Status: {status} is not an HTTP status"
                );
            }
            Self::Pass | Self::Refuse | Self::Stall { .. } | Self::DropAfter { .. } | Self::Garbage => {}
        }
    }
}

/// A `Retry-After` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 7`.
    Seconds(u64),
    /// `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT` (sub-second precision is dropped).
    Date(SystemTime),
}

impl RetryAfter {
    /// The header's text.
    pub fn header_value(&self) -> String {
        match self {
            Self::Seconds(seconds) => seconds.to_string(),
            Self::Date(at) => http_date(*at),
        }
    }
}

/// A request as the proxy received it, with the fault it got.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The fault applied; a [`Fault::Random`] is recorded as what it drew (`Pass` or its `fail`).
    pub fault: Fault,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    // Dropping the sender is the stop signal every connection and handler waits on.
    _stop: watch::Sender<()>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    plan: Mutex<Plan>,
    handled: Mutex<Vec<Handled>>,
    stop: watch::Receiver<()>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (a base URL such as `http://127.0.0.1:PORT`, to which
    /// each request's path and query are appended) applying `script`, one fault per request in
    /// order, then [`Fault::Pass`].
    pub async fn start(upstream: &str, script: impl IntoIterator<Item = Fault>) -> Self {
        let script: VecDeque<Fault> = script.into_iter().collect();
        script.iter().for_each(Fault::check);
        let plan = Plan { script, default: Fault::Pass, rng: None };
        let client = reqwest::Client::builder()
            // The proxy forwards what it gets: no environment proxy, no redirects followed.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the proxy's upstream client");
        let (stop_tx, stop) = watch::channel(());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            plan: Mutex::new(plan),
            handled: Mutex::new(Vec::new()),
            stop: stop.clone(),
        });
        let listener = conn::Listener::bind(stop).await;
        let addr = listener.addr();
        let state = shared.clone();
        let app = axum::Router::new()
            .fallback(move |ConnectInfo(conn): ConnectInfo<ConnHandle>, req: Request| {
                handle(state.clone(), conn, req)
            })
            .into_make_service_with_connect_info::<ConnHandle>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task, _stop: stop_tx }
    }

    /// Starts a proxy in front of `upstream` that gives each request `fail` with probability
    /// `rate` and passes it otherwise, reproducibly for a given `seed`.
    pub async fn with_failure_rate(upstream: &str, rate: f64, fail: Fault, seed: u64) -> Self {
        let proxy = Self::start(upstream, []).await;
        proxy.set_default(Fault::random(rate, fail, seed));
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order, with the fault each got.
    pub fn requests(&self) -> Vec<Handled> {
        self.shared.handled.lock().expect("lock").clone()
    }

    /// How many requests have been received.
    pub fn count(&self) -> usize {
        self.shared.handled.lock().expect("lock").len()
    }

    /// The fault each request got, in arrival order.
    pub fn faults(&self) -> Vec<Fault> {
        self.requests().into_iter().map(|handled| handled.fault).collect()
    }

    /// The fault for requests past the script; a [`Fault::Random`] starts its seeded stream afresh.
    pub fn set_default(&self, fault: Fault) {
        fault.check();
        let mut plan = self.shared.plan.lock().expect("lock");
        if matches!(fault, Fault::Random { .. }) {
            plan.rng = None;
        }
        plan.default = fault;
    }

    /// Appends `fault` to the script (ahead of the default).
    pub fn push(&self, fault: Fault) {
        fault.check();
        self.shared.plan.lock().expect("lock").script.push_back(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Closes the port; `_stop` dropping next ends the connections already accepted.
        self.task.abort();
    }
}

/// The script, the default, and the random stream in use.
struct Plan {
    script: VecDeque<Fault>,
    default: Fault,
    rng: Option<(u64, XorShift)>,
}

impl Plan {
    /// The fault for the next request, with any [`Fault::Random`] drawn.
    fn next(&mut self) -> Fault {
        let mut fault = self.script.pop_front().unwrap_or_else(|| self.default.clone());
        while let Fault::Random { p_fail, fail, seed } = fault {
            if !matches!(self.rng, Some((current, _)) if current == seed) {
                self.rng = Some((seed, XorShift::new(seed)));
            }
            let (_, rng) = self.rng.as_mut().expect("seeded above");
            fault = if rng.unit() < p_fail { *fail } else { Fault::Pass };
        }
        fault
    }
}

/// xorshift64*: small, seeded, and good enough to spread injected failures; not for anything else.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so nearby seeds start far apart and 0 is a valid seed.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// A value in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn handle(shared: Arc<Shared>, conn: ConnHandle, req: Request) -> Response {
    let fault = shared.plan.lock().expect("lock").next();
    shared.handled.lock().expect("lock").push(Handled {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        fault: fault.clone(),
    });
    let mut stop = shared.stop.clone();
    tokio::select! {
        response = apply(&shared, &conn, fault, req) => response,
        _ = stop.changed() => {
            conn.reset();
            Response::default()
        }
    }
}

async fn apply(shared: &Shared, conn: &ConnHandle, fault: Fault, req: Request) -> Response {
    match fault {
        Fault::Pass => relay::forward(shared, req, None).await,
        Fault::Status { status, retry_after, body } => {
            let mut response = if body.is_null() {
                Response::default()
            } else {
                let mut response = Response::new(Body::from(body.to_string()));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            };
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(value) = retry_after.and_then(|r| HeaderValue::try_from(r.header_value()).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Fault::Refuse => {
            // The connection fails its first write, so hyper closes it with nothing written.
            conn.reset();
            Response::default()
        }
        Fault::Stall { duration } => {
            tokio::time::sleep(duration).await;
            relay::forward(shared, req, None).await
        }
        Fault::DropAfter { bytes } => relay::forward(shared, req, Some(bytes)).await,
        Fault::Garbage => {
            let mut response = Response::new(Body::from(GARBAGE));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            response
        }
        Fault::Random { .. } => unreachable!("Plan::next draws random faults before they are applied"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(plan: &mut Plan, n: usize) -> Vec<bool> {
        (0..n).map(|_| plan.next() != Fault::Pass).collect()
    }

    #[test]
    fn random_faults_with_one_seed_share_one_stream() {
        let random = Fault::random(0.5, Fault::Refuse, 7);
        let mut scripted = Plan { script: vec![random.clone(); 50].into(), default: Fault::Pass, rng: None };
        let mut defaulted = Plan { script: VecDeque::new(), default: random, rng: None };
        let a = draws(&mut scripted, 50);
        assert_eq!(a, draws(&mut defaulted, 50));
        assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    }

    #[test]
    fn different_seeds_draw_differently() {
        let mut one =
            Plan { script: VecDeque::new(), default: Fault::random(0.5, Fault::Refuse, 1), rng: None };
        let mut two =
            Plan { script: VecDeque::new(), default: Fault::random(0.5, Fault::Refuse, 2), rng: None };
        assert_ne!(draws(&mut one, 64), draws(&mut two, 64));
    }

    #[test]
    fn nested_random_resolves_to_a_concrete_fault() {
        let inner = Fault::random(1.0, Fault::Garbage, 3);
        let mut plan = Plan { script: VecDeque::new(), default: Fault::random(1.0, inner, 3), rng: None };
        assert_eq!(plan.next(), Fault::Garbage);
    }

    #[test]
    fn unit_stays_in_range() {
        let mut rng = XorShift::new(0);
        assert!((0..10_000).map(|_| rng.unit()).all(|x| (0.0..1.0).contains(&x)));
    }

    #[test]
    #[should_panic(expected = "p_fail must be in 0..=1")]
    fn out_of_range_rate_is_refused() {
        Fault::random(1.5, Fault::Refuse, 0).check();
    }
}
