//! A scripted HTTP server on `127.0.0.1:0`: answers each request with the next scripted [`Reply`]
//! (status, headers, body chunks with pauses, then a clean end, an abrupt abort or a hang), records
//! every request, and notices when a client hangs up before a streamed body ends.

use axum::{body::Body, extract::Request, http::StatusCode, response::Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;

/// How a reply's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Normally.
    Close,
    /// The connection is cut mid-body (an incomplete chunked encoding).
    Abort,
    /// The body never ends and nothing more is sent.
    Hang,
}

/// One piece of a reply body.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Bytes sent as one HTTP chunk.
    Bytes(Bytes),
    /// A pause before the next piece.
    Pause(Duration),
}

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Pause before the status line is sent.
    pub delay: Duration,
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body, piece by piece.
    pub body: Vec<Piece>,
    /// How the body ends.
    pub ending: Ending,
}

impl Reply {
    /// A 200 `text/event-stream` reply sending each of `chunks` as its own HTTP chunk.
    pub fn sse<S: AsRef<str>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self {
            delay: Duration::ZERO,
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: chunks
                .into_iter()
                .map(|c| Piece::Bytes(Bytes::copy_from_slice(c.as_ref().as_bytes())))
                .collect(),
            ending: Ending::Close,
        }
    }

    /// A JSON reply.
    pub fn json(status: u16, body: &Value) -> Self {
        Self::text(status, &body.to_string()).header("content-type", "application/json")
    }

    /// A reply with a plain body.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            delay: Duration::ZERO,
            status,
            headers: Vec::new(),
            body: vec![Piece::Bytes(Bytes::copy_from_slice(body.as_bytes()))],
            ending: Ending::Close,
        }
    }

    /// A reply whose body is `bytes`, of `content_type` (a file a platform serves).
    pub fn bytes(status: u16, content_type: &str, bytes: &[u8]) -> Self {
        Self {
            delay: Duration::ZERO,
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: vec![Piece::Bytes(Bytes::copy_from_slice(bytes))],
            ending: Ending::Close,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Waits this long before answering at all.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Pauses between every two body pieces.
    pub fn paced(mut self, pause: Duration) -> Self {
        let mut body = Vec::with_capacity(self.body.len() * 2);
        for piece in self.body {
            body.push(piece);
            body.push(Piece::Pause(pause));
        }
        self.body = body;
        self
    }

    /// Ends the body this way.
    pub fn ending(mut self, ending: Ending) -> Self {
        self.ending = ending;
        self
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The body as sent.
    pub raw: Bytes,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The fields of a `multipart/form-data` body (empty when it is not one).
    pub fn form_data(&self) -> Vec<FormField> {
        let boundary = self
            .header("content-type")
            .and_then(|value| value.split(';').find_map(|part| part.trim().strip_prefix("boundary=")))
            .map(|boundary| boundary.trim_matches('"').to_owned());
        boundary.map(|boundary| form_data(&self.raw, &boundary)).unwrap_or_default()
    }

    /// The value of `name` in an `application/x-www-form-urlencoded` body.
    pub fn form_field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.raw).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
    }
}

/// One field of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    /// Its `name`.
    pub name: String,
    /// Its `filename`, for a file.
    pub filename: Option<String>,
    /// Its content.
    pub content: Vec<u8>,
}

impl FormField {
    /// The content as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

/// The fields of a multipart `body` cut at `boundary` (RFC 7578).
fn form_data(body: &[u8], boundary: &str) -> Vec<FormField> {
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in split(body, delimiter.as_bytes()).into_iter().skip(1) {
        if part.starts_with(b"--") {
            break;
        }
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(end) = part.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&part[..end]);
        let content = &part[end + 4..];
        let content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let attribute = |key: &str| {
            let marker = format!("{key}=\"");
            let start = head.find(&marker)? + marker.len();
            head[start..].split('"').next().map(str::to_owned)
        };
        let Some(name) = attribute(" name") else { continue };
        fields.push(FormField { name, filename: attribute("filename"), content: content.to_vec() });
    }
    fields
}

/// `haystack` cut at every `needle`.
fn split<'a>(haystack: &'a [u8], needle: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        if &haystack[i..i + needle.len()] == needle {
            pieces.push(&haystack[start..i]);
            i += needle.len();
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&haystack[start..]);
    pieces
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    hangups: AtomicUsize,
    hangup: Notify,
}

/// An axum app served on `127.0.0.1:0` until dropped: the test servers of this crate run on it.
pub(crate) struct Loopback {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Loopback {
    /// Binds a free loopback port and serves `app` on it.
    pub(crate) async fn serve(app: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running server; stops when dropped.
pub struct ScriptedServer {
    server: Loopback,
    shared: Arc<Shared>,
}

impl ScriptedServer {
    /// Starts a server answering requests with `replies`, one each, in order. Requests past the
    /// script get a 500 saying so.
    pub async fn start(replies: impl IntoIterator<Item = Reply>) -> Self {
        let shared =
            Arc::new(Shared { replies: Mutex::new(replies.into_iter().collect()), ..Shared::default() });
        let state = shared.clone();
        let server =
            Loopback::serve(axum::Router::new().fallback(move |req: Request| answer(state.clone(), req)))
                .await;
        Self { server, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// The only request received; panics if there were none or several.
    pub fn request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request, got {requests:#?}");
        requests.into_iter().next().expect("one request")
    }

    /// Waits until a client has hung up before a streamed body ended; false after `within`.
    pub async fn hung_up(&self, within: Duration) -> bool {
        let notified = self.shared.hangup.notified();
        if self.shared.hangups.load(Ordering::SeqCst) > 0 {
            return true;
        }
        tokio::time::timeout(within, notified).await.is_ok() || self.shared.hangups.load(Ordering::SeqCst) > 0
    }
}

async fn answer(shared: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    shared.requests.lock().expect("lock").push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        raw: bytes.clone(),
    });
    let reply = shared.replies.lock().expect("lock").pop_front();
    let Some(reply) = reply else {
        return plain(500, "exoclaw-testkit: no more scripted replies");
    };
    tokio::time::sleep(reply.delay).await;
    let mut builder = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    let guard = HangupGuard { shared: shared.clone(), finished: false };
    let body = futures::stream::unfold(
        (reply.body.into_iter(), reply.ending, guard),
        |(mut pieces, ending, mut guard)| async move {
            loop {
                match pieces.next() {
                    Some(Piece::Pause(d)) => tokio::time::sleep(d).await,
                    Some(Piece::Bytes(b)) => {
                        return Some((Ok::<Bytes, std::io::Error>(b), (pieces, ending, guard)));
                    }
                    None => match ending {
                        Ending::Close => {
                            guard.finished = true;
                            drop(guard);
                            return None;
                        }
                        Ending::Abort => {
                            // Let what was sent reach the client first; hyper would otherwise drop
                            // the buffered head and chunks along with the connection.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            guard.finished = true;
                            let cut =
                                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "scripted abort");
                            return Some((Err(cut), (pieces, Ending::Close, guard)));
                        }
                        Ending::Hang => futures::future::pending::<()>().await,
                    },
                }
            }
        },
    );
    builder.body(Body::from_stream(body.boxed())).unwrap_or_else(|_| plain(500, "bad scripted reply"))
}

fn plain(status: u16, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// Counts a hang-up when a body is dropped (the client went away) before it ended.
struct HangupGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for HangupGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.hangups.fetch_add(1, Ordering::SeqCst);
            self.shared.hangup.notify_waiters();
        }
    }
}
