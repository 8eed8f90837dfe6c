//! One WebSocket connection: the upgrade (an optional `Authorization` header; without one, on a
//! gateway that requires a token, a place among the few connections allowed to wait
//! unauthenticated), then a task that reads requests, checks the caller again for each (a key
//! revoked meanwhile is refused at once), answers them, forwards the events of the turns it
//! started, and enforces the limits: message size (close 1009), requests per second
//! (`rate_limited`, the connection stays), idle time (close 4008), shutdown (`gateway.shutdown`,
//! close 1001).

use super::error::{Code, RpcError};
use super::frame::{self, Request};
use super::memory;
use super::method::{Access, Method, UNKNOWN_ENDPOINT};
use super::methods::{self, params};
use super::protocol::{
    ChatCancelParams, ChatCancelResult, ConnectParams, ConnectResult, ConnectionInfo, LimitsInfo,
    PROTOCOL_VERSION, PingResult, SUPPORTED_PROTOCOLS, ServerInfo, ShutdownParams,
};
use crate::chat::{self, Outbound, Requester, Secret, request_key};
use crate::keys::{self, Caller};
use crate::text::Escaped;
use crate::{Gateway, GatewayError};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

/// The read buffer each connection starts with; it grows for larger messages. Small, so that
/// idle connections stay cheap (tungstenite's default is 128 KiB each).
const READ_BUFFER: usize = 4 * 1024;

/// Close codes (RFC 6455 §7.4, and one of the private range).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;
/// Private: closed after `limits.idle_timeout` without a message (like HTTP's 408).
const CLOSE_IDLE: u16 = 4008;

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long a connection closed for an oversize message stays open for the client to read why.
const TOO_BIG_LINGER: Duration = Duration::from_millis(250);

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// `GET /ws`: checks an `Authorization: Bearer` header (other clients may authenticate here
/// instead of in `connect`), and on a gateway that requires a token, without one, that there is
/// room for another unauthenticated connection; then upgrades. (The `Origin` of browsers was
/// checked before any route, by [`crate::guard`].)
pub(super) async fn upgrade(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return refuse(
                rejection.status(),
                "websocket_required",
                format!(
                    "{}; /ws speaks JSON-RPC 2.0 over WebSocket (see docs/protocol.md)",
                    rejection.body_text()
                ),
            );
        }
    };
    if gateway.shutdown.is_cancelled() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down".to_owned(),
        );
    }
    let pre = match keys::bearer(text(header::AUTHORIZATION)) {
        Ok(None) => None,
        Ok(Some(token)) => match keys::authenticate(&gateway, Some(token)).await {
            Ok(caller) => Some((caller, Secret(token.to_owned()))),
            Err(e) => {
                tracing::info!(error = %e, "WebSocket refused");
                return e.into_response();
            }
        },
        Err(e) => return e.into_response(),
    };
    // A connection that has not authenticated costs the gateway without anyone answering for it:
    // their number is capped, and one that authenticates gives its place back.
    let waiting = match &pre {
        None if gateway.requires_auth() => match Arc::clone(&gateway.unauthenticated).try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) => {
                let e = GatewayError::TooManyUnauthenticated { limit: gateway.limits.max_unauthenticated };
                tracing::debug!(error = %e, "WebSocket refused");
                gateway.metrics.error(e.kind_name());
                return e.into_response();
            }
        },
        _ => None,
    };
    let limit = gateway.limits.max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        // Each message is written at once: answers and events are not held back to fill a buffer.
        .write_buffer_size(0)
        .on_failed_upgrade(|e| tracing::info!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| serve(gateway, socket, pre, waiting))
}

/// A per-connection token bucket: `rate` requests at once, refilled at `rate` a second.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self { tokens: rate, rate, at: Instant::now() }
    }

    /// Takes one request, or says how long until one is allowed.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let refilled = self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = refilled.min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Why a connection ends.
enum End {
    /// The client closed it, or it broke.
    Gone,
    /// The gateway is shutting down.
    Shutdown,
    /// Nothing was heard for `limits.idle_timeout`.
    Idle,
    /// A message was larger than allowed.
    TooBig { size: usize, max: usize },
    /// The client broke the WebSocket protocol.
    Protocol(String),
}

struct Connection {
    gateway: Arc<Gateway>,
    id: String,
    /// Set by `connect` (or the upgrade's `Authorization` header).
    caller: Option<Caller>,
    /// A virtual key's token, to re-check the key on every request.
    token: Option<Secret>,
    /// Its place among the connections that have not authenticated, until it does.
    waiting: Option<OwnedSemaphorePermit>,
    out: mpsc::UnboundedSender<Outbound>,
    /// `chat.send` requests running, by [`request_key`] of their id.
    running: HashMap<String, CancellationToken>,
    bucket: Bucket,
}

/// What a request gets.
enum Reply {
    /// Its answer, now.
    Now(Result<Value, RpcError>),
    /// Its answer comes when its turn ends.
    Later,
}

fn json<T: Serialize>(value: T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|e| RpcError::internal(format!("a result could not be encoded: {e}")))
}

async fn serve(
    gateway: Arc<Gateway>,
    mut socket: WebSocket,
    pre: Option<(Caller, Secret)>,
    waiting: Option<OwnedSemaphorePermit>,
) {
    let _live = chat::Live::connection(&gateway);
    gateway.metrics.connections(1);
    let (out, mut outbound) = mpsc::unbounded_channel();
    let (caller, token) = match pre {
        Some((caller @ Caller::Key(_), token)) => (Some(caller), Some(token)),
        Some((caller, _)) => (Some(caller), None),
        None => (None, None),
    };
    let idle_timeout = gateway.limits.idle_timeout;
    let mut conn = Connection {
        id: uuid::Uuid::now_v7().to_string(),
        bucket: Bucket::new(gateway.limits.requests_per_second),
        gateway,
        caller,
        token,
        waiting,
        out,
        running: HashMap::new(),
    };
    tracing::debug!(connection = %conn.id, "WebSocket connected");
    let shutdown = conn.gateway.shutdown.clone();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    let end = loop {
        if closing && conn.running.is_empty() {
            break End::Shutdown;
        }
        tokio::select! {
            biased;
            Some(out) = outbound.recv() => {
                let frame = match out {
                    Outbound::Frame(frame) => Some(frame),
                    Outbound::Finished { request, frame } => {
                        conn.running.remove(&request);
                        idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                        frame
                    }
                };
                if let Some(frame) = frame
                    && !send(&mut socket, Message::Text(frame.into()), idle_timeout).await
                {
                    break End::Gone;
                }
            }
            () = shutdown.cancelled(), if !closing => closing = true,
            message = socket.recv() => {
                let bytes = match message {
                    Some(Ok(Message::Text(text))) => axum::body::Bytes::from(text),
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break End::Gone,
                    Some(Err(e)) => break classify(e),
                };
                idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                // Boxed: the handler's future is large, and idle connections should not carry it.
                if let Some(answer) = Box::pin(conn.handle(&bytes)).await
                    && !send(&mut socket, Message::Text(answer.into()), idle_timeout).await
                {
                    break End::Gone;
                }
            }
            () = &mut idle, if conn.running.is_empty() => break End::Idle,
        }
    };
    close(&mut socket, end, &conn).await;
    conn.gateway.metrics.connections(-1);
    tracing::debug!(connection = %conn.id, running = conn.running.len(), "WebSocket closed");
}

/// Sends `message`; `false` when the connection is broken or the client has not read for `within`
/// (its buffers are full), so a client that stops reading cannot hold its connection open forever.
async fn send(socket: &mut WebSocket, message: Message, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, socket.send(message)).await, Ok(Ok(())))
}

/// Tells an oversize message or a protocol error from a connection that went away.
fn classify(e: axum::Error) -> End {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
            size,
            max_size,
        })) => End::TooBig { size: *size, max: *max_size },
        Some(tungstenite::Error::Protocol(e)) => End::Protocol(e.to_string()),
        Some(tungstenite::Error::Utf8(e)) => End::Protocol(format!("invalid UTF-8 in a text message: {e}")),
        _ => {
            tracing::debug!(error = %inner, "WebSocket read failed");
            End::Gone
        }
    }
}

/// A close frame's reason is at most 123 bytes.
fn reason(text: &str) -> Utf8Bytes {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Utf8Bytes::from(&text[..end])
}

async fn close(socket: &mut WebSocket, end: End, conn: &Connection) {
    let limits = &conn.gateway.limits;
    let (code, why) = match end {
        End::Gone => return,
        End::Shutdown => {
            let text = "the gateway is shutting down; reconnect once it is back";
            let note = frame::notification("gateway.shutdown", &ShutdownParams { reason: text.to_owned() });
            send(socket, Message::Text(note.into()), CLOSE_WAIT).await;
            (CLOSE_GOING_AWAY, "gateway shutting down".to_owned())
        }
        End::Idle => {
            conn.gateway.metrics.error("idle_timeout");
            (CLOSE_IDLE, format!("idle timeout: no message for {} s", limits.idle_timeout.as_secs()))
        }
        End::TooBig { size, max } => {
            conn.gateway.metrics.error(Code::MessageTooLarge.name());
            let error = RpcError::new(
                Code::MessageTooLarge,
                format!("a message of {size} bytes is larger than the {max} bytes this gateway accepts; the connection is closed"),
            )
            .with("limit", max);
            send(socket, Message::Text(frame::error(&Value::Null, &error).into()), CLOSE_WAIT).await;
            (CLOSE_TOO_BIG, format!("message too large: {size} > {max} bytes"))
        }
        End::Protocol(e) => (CLOSE_PROTOCOL, format!("WebSocket protocol error: {e}")),
    };
    let frame = CloseFrame { code, reason: reason(&why) };
    if !send(socket, Message::Close(Some(frame)), CLOSE_WAIT).await {
        return;
    }
    if code == CLOSE_TOO_BIG {
        // The rest of the oversize message is still unread, and reading on would buffer it. Give
        // the client a moment to read the error and the close frame before the connection goes.
        tokio::time::sleep(TOO_BIG_LINGER).await;
        return;
    }
    // Wait for the client's close frame, so it reads ours before the TCP connection ends.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

impl Connection {
    /// Answers one message; `None` for notifications and for `chat.send` (answered when its turn
    /// ends).
    async fn handle(&mut self, bytes: &[u8]) -> Option<String> {
        let started = Instant::now();
        let parsed = frame::parse(bytes);
        if let Err(wait) = self.bucket.take(started) {
            let id = match &parsed {
                Ok(request) => request.id.clone()?,
                Err(malformed) => malformed.id.clone(),
            };
            self.gateway.metrics.error(Code::RateLimited.name());
            let error = RpcError::new(
                Code::RateLimited,
                format!(
                    "this connection may send {} requests a second; retry in {} ms",
                    self.gateway.limits.requests_per_second,
                    wait.as_millis() + 1
                ),
            )
            .with("retry_after_ms", u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) + 1);
            return Some(frame::error(&id, &error));
        }
        let request = match parsed {
            Ok(request) => request,
            Err(malformed) => {
                self.gateway.metrics.error(malformed.error.code.name());
                return Some(frame::error(&malformed.id, &malformed.error));
            }
        };
        let id = request.id.clone();
        let (endpoint, reply) = match Method::parse(&request.method) {
            Ok(method) => (method.endpoint(), self.dispatch(method, request).await),
            Err(unknown) => (UNKNOWN_ENDPOINT, Reply::Now(Err(unknown))),
        };
        let answer = match reply {
            Reply::Later => return None,
            Reply::Now(answer) => answer,
        };
        let status = match &answer {
            Ok(_) => "ok",
            Err(e) => {
                self.gateway.metrics.error(e.code.name());
                e.code.name()
            }
        };
        self.gateway.metrics.request(endpoint, status, started.elapsed());
        let id = id?;
        Some(match answer {
            Ok(result) => frame::result(&id, &result),
            Err(error) => frame::error(&id, &error),
        })
    }

    /// Who the client is: set by `connect`, or anyone when the gateway requires no token.
    fn caller(&self) -> Result<Caller, RpcError> {
        match &self.caller {
            Some(caller) => Ok(caller.clone()),
            None if !self.gateway.requires_auth() => Ok(Caller::Anyone),
            None => Err(RpcError::new(
                Code::Unauthenticated,
                "this gateway requires a token: send `connect` with `token` first",
            )),
        }
    }

    /// The caller, checked again for this request: a key revoked or over its budget since
    /// `connect`, or a gateway that has required keys since an open `connect`, is refused.
    async fn authorized(&self) -> Result<Caller, RpcError> {
        let caller = self.caller()?;
        let token = self.token.as_ref().map(|t| t.0.as_str());
        keys::recheck(&self.gateway, &caller, token).await?;
        Ok(caller)
    }

    /// Checks that the caller may call `method` ([`Method::access`]): anyone may call the open
    /// methods; the others need the caller `connect` let in, checked again now; the operator
    /// methods are not for virtual keys.
    async fn admit(&self, method: Method) -> Result<(), RpcError> {
        match method.access() {
            Access::Open => Ok(()),
            Access::Caller => self.authorized().await.map(drop),
            Access::Operator => match self.authorized().await? {
                Caller::Key(key) => Err(RpcError::new(
                    Code::Forbidden,
                    format!(
                        "`{method}` is for the gateway's operators; the key `{}` may not call it",
                        key.name
                    ),
                )),
                Caller::Operator | Caller::Anyone => Ok(()),
            },
        }
    }

    async fn dispatch(&mut self, method: Method, request: Request) -> Reply {
        let Request { id, params: p, .. } = request;
        let gateway = Arc::clone(&self.gateway);
        let g = &*gateway;
        // A key made since the last request closes an open gateway to callers without one.
        g.notice_new_keys().await;
        // Every method past `connect` and `ping` checks its caller again: a key revoked while its
        // connection is open may not even ask for `status`.
        if let Err(e) = self.admit(method).await {
            return Reply::Now(Err(e));
        }
        let name = method.name();
        let answer = match method {
            Method::Connect => self.connect(params(name, p)).await,
            Method::Ping => json(PingResult { pong: true }),
            Method::Status => json(methods::status(g)),
            Method::ChatSend => match self.caller() {
                Ok(caller) => return self.chat_send(caller, id, p),
                Err(e) => Err(e),
            },
            Method::ChatCancel => self.chat_cancel(params(name, p)),
            Method::AgentsList => json(methods::agents_list(g)),
            Method::ToolsList => params(name, p).and_then(|p| methods::tools_list(g, p)).and_then(json),
            Method::SessionsList => match params(name, p) {
                Ok(p) => methods::sessions_list(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::SessionsHistory => match params(name, p) {
                Ok(p) => methods::sessions_history(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::SessionsReset => match params(name, p) {
                Ok(p) => methods::sessions_reset(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::UsageGet => match params(name, p) {
                Ok(p) => methods::usage_get(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::MemorySearch => match params(name, p) {
                Ok(p) => memory::search(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::MemoryFacts => match params(name, p) {
                Ok(p) => memory::facts(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::MemoryForget => match params(name, p) {
                Ok(p) => memory::forget(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
            Method::MemoryExport => match params(name, p) {
                Ok(p) => memory::export(g, p).await.and_then(json),
                Err(e) => Err(e),
            },
        };
        Reply::Now(answer)
    }

    async fn connect(&mut self, p: Result<ConnectParams, RpcError>) -> Result<Value, RpcError> {
        let p = p?;
        if !SUPPORTED_PROTOCOLS.contains(&p.protocol) {
            let supported: Vec<String> = SUPPORTED_PROTOCOLS.iter().map(u32::to_string).collect();
            return Err(RpcError::new(
                Code::UnsupportedProtocol,
                format!(
                    "the client speaks protocol {} and this gateway speaks {}; upgrade the client or the gateway",
                    p.protocol,
                    supported.join(", ")
                ),
            )
            .with("supported", SUPPORTED_PROTOCOLS));
        }
        let caller = keys::authenticate(&self.gateway, p.token.as_deref()).await?;
        self.token = match (&caller, p.token) {
            (Caller::Key(_), Some(token)) => Some(Secret(token)),
            _ => None,
        };
        let label = match &caller {
            Caller::Key(key) => format!("key:{}", key.name),
            other => other.label().to_owned(),
        };
        tracing::info!(
            connection = %self.id,
            caller = %Escaped(&label),
            client = %Escaped(p.client.as_ref().map_or("", |c| c.name.as_str())),
            version = %Escaped(p.client.as_ref().and_then(|c| c.version.as_deref()).unwrap_or("")),
            "WebSocket client connected"
        );
        self.caller = Some(caller);
        self.waiting = None;
        let limits = &self.gateway.limits;
        json(ConnectResult {
            protocol: PROTOCOL_VERSION,
            server: ServerInfo { name: "exoclaw".to_owned(), version: env!("CARGO_PKG_VERSION").to_owned() },
            session: ConnectionInfo {
                id: self.id.clone(),
                caller: label,
                limits: LimitsInfo {
                    max_message_bytes: limits.max_message_bytes,
                    requests_per_second: limits.requests_per_second,
                    idle_timeout_secs: limits.idle_timeout.as_secs(),
                    session_queue: limits.session_queue,
                },
            },
        })
    }

    fn chat_send(&mut self, caller: Caller, id: Option<Value>, p: Value) -> Reply {
        let fail = |e: RpcError| Reply::Now(Err(e));
        let p = match params(Method::ChatSend.name(), p) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let key = id.as_ref().map(request_key);
        if let Some(key) = &key
            && self.running.contains_key(key)
        {
            return fail(RpcError::new(
                Code::InvalidRequest,
                format!(
                    "the id {key} is already used by a running `chat.send` on this connection; use a new id"
                ),
            ));
        }
        let requester = Requester { caller, out: self.out.clone() };
        match chat::start(&self.gateway, requester, id, p) {
            Ok(cancel) => {
                if let Some(key) = key {
                    self.running.insert(key, cancel);
                }
                Reply::Later
            }
            Err(e) => fail(e),
        }
    }

    fn chat_cancel(&mut self, p: Result<ChatCancelParams, RpcError>) -> Result<Value, RpcError> {
        let p = p?;
        let id = serde_json::to_value(&p.request_id).unwrap_or(Value::Null);
        let Some(cancel) = self.running.get(&request_key(&id)) else {
            return Err(RpcError::new(
                Code::NotFound,
                format!("no `chat.send` with id {id} is running on this connection (it may have finished)"),
            ));
        };
        cancel.cancel();
        json(ChatCancelResult { cancelled: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_its_rate() {
        let mut bucket = Bucket::new(2);
        let start = bucket.at;
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        let wait = bucket.take(start).unwrap_err();
        assert!((0.49..=0.51).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(bucket.take(start + Duration::from_millis(500)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        let long = "é".repeat(100);
        let cut = reason(&long);
        assert!(cut.as_str().len() <= 123 && cut.as_str().chars().all(|c| c == 'é'));
    }
}
