//! HTTP for every provider: the clients a request leaves through, the connect / first-byte / idle
//! deadlines, turning error responses into typed errors, and driving an SSE body through a
//! vendor's [`StreamDecoder`].
//!
//! Two clients, one behaviour. Plain `http://` to a server reached directly (a local llama.cpp,
//! vLLM or Ollama, the upstream behind a gateway) goes through hyper's pooled client: reqwest's
//! redirect and retry layers and its URL conversions were about a fifth of the instructions of a
//! request proxied by the gateway. HTTPS, and anything the proxy variables (`HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY`, as curl reads them) send through a proxy, goes through reqwest. Neither
//! follows redirects: a 3xx is an error that names where the server points, so an API key is never
//! replayed to another address behind the user's back.
//!
//! The API key lives here as a [`SecretString`]: it is exposed only in the request headers built
//! once per provider (marked sensitive), and every error message passes through
//! [`Transport::error`], which scrubs it out.

use crate::sse::{SseEvent, SseParser};
use crate::wire::{StreamDecoder, WireError};
use bytes::Bytes;
use exoclaw_core::{ErrorKind, EventStream, ProviderError, ResponseAssembler};
use exoclaw_types::{ChatResponse, StreamEvent};
use futures::{Stream, StreamExt};
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue, LOCATION, USER_AGENT};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Uri};
use http_body_util::{BodyDataStream, BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_util::client::legacy::{Client as HyperClient, connect::HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::error::Error as StdError;
use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};
use tokio::time::Instant;

/// Deadlines for one model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP (and TLS) connection.
    pub connect: Duration,
    /// From sending the request to the first byte of the answer: covers the model's time to think.
    pub first_byte: Duration,
    /// Longest silence between two chunks of a streamed answer.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
        }
    }
}

/// Reads a vendor's error response (status, headers, body text) into a typed failure.
pub(crate) type ErrorClassifier = fn(u16, &HeaderMap, &str) -> WireError;

/// A request as a vendor module builds it (see [`Transport::post_json`], [`Transport::get`]).
pub(crate) type Outgoing = Request<Bytes>;

/// Whatever either client failed with, kept whole for the message's cause chain.
type BodyError = Box<dyn StdError + Send + Sync>;

/// An answer's body, from either client.
pub(crate) type Body = UnsyncBoxBody<Bytes, BodyError>;

/// An answer with a successful status.
pub(crate) type Response = http::Response<Body>;

/// Most bytes of an error body kept for the message.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// The HTTP side of one provider instance. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    timeouts: Timeouts,
    key: Option<SecretString>,
    /// Sent with every request: the user agent, the vendor's auth and version headers.
    headers: HeaderMap,
    classify: ErrorClassifier,
    clients: Clients,
    /// The `Host` header of the first address a request went to, with that address.
    host: std::sync::OnceLock<(Authority, HeaderValue)>,
}

/// The two ways out (see the module docs).
struct Clients {
    direct: HyperClient<HttpConnector, Full<Bytes>>,
    proxies: Matcher,
    general: reqwest::Client,
}

/// Which client a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    General,
}

impl Clients {
    fn new(timeouts: Timeouts, proxies: Matcher) -> Result<Self, reqwest::Error> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        let direct = HyperClient::builder(TokioExecutor::new()).build(connector);
        let general = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { direct, proxies, general })
    }

    fn route(&self, uri: &Uri) -> Route {
        if uri.scheme() == Some(&Scheme::HTTP) && self.proxies.intercept(uri).is_none() {
            Route::Direct
        } else {
            Route::General
        }
    }

    async fn send(&self, route: Route, request: Outgoing) -> Result<http::Response<Body>, BodyError> {
        match route {
            Route::Direct => {
                let response = self.direct.request(request.map(Full::new)).await?;
                Ok(response.map(|body| body.map_err(BodyError::from).boxed_unsync()))
            }
            Route::General => {
                let response = self.general.execute(reqwest::Request::try_from(request)?).await?;
                Ok(http::Response::from(response).map(|body| body.map_err(BodyError::from).boxed_unsync()))
            }
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("name", &self.inner.name)
            .field("timeouts", &self.inner.timeouts)
            .field("key", &self.inner.key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// A header value holding a secret (an API key): marked sensitive so it never shows in `Debug`.
/// A key with characters HTTP cannot carry (a newline pasted with it, say) is an error that does
/// not show the key.
pub(crate) fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::new(
            ErrorKind::Auth,
            provider,
            "the API key has characters an HTTP header cannot carry (a line break or a control \
             character copied with it?); set it again",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Transport {
    /// A transport sending `headers` (auth, vendor version) with every request.
    pub fn new(
        name: &str,
        timeouts: Timeouts,
        key: Option<SecretString>,
        mut headers: HeaderMap,
        classify: ErrorClassifier,
    ) -> Result<Self, ProviderError> {
        let clients = Clients::new(timeouts, Matcher::from_env()).map_err(|e| {
            ProviderError::new(ErrorKind::Connect, name, format!("cannot build HTTP client: {e}"))
        })?;
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("exoclaw/", env!("CARGO_PKG_VERSION"))));
        let inner = Inner {
            name: name.into(),
            timeouts,
            key,
            headers,
            classify,
            clients,
            host: std::sync::OnceLock::new(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A URL as the request target, or an error that says how to write the base URL. A path
    /// without a scheme and host is not a target.
    pub fn uri(&self, url: String) -> Result<Uri, ProviderError> {
        let why = match Uri::try_from(url.as_str()) {
            Ok(uri) if uri.scheme().is_some() && uri.host().is_some() => return Ok(uri),
            Ok(_) => "no scheme or host".to_owned(),
            Err(e) => e.to_string(),
        };
        Err(self.error(WireError::new(
            ErrorKind::InvalidRequest,
            format!("`{url}` is not a URL ({why}); write the base URL as http://host:port/v1"),
        )))
    }

    /// `POST uri` with `body` as JSON, plus the provider's headers.
    pub fn post_json(&self, uri: Uri, body: &impl Serialize) -> Result<Outgoing, ProviderError> {
        let body = serde_json::to_vec(body).map_err(|e| {
            self.error(WireError::new(ErrorKind::InvalidRequest, format!("cannot encode the request: {e}")))
        })?;
        let mut request = self.request(Method::POST, uri, Bytes::from(body));
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(request)
    }

    /// `GET url` with the provider's headers.
    pub fn get(&self, url: String) -> Result<Outgoing, ProviderError> {
        Ok(self.request(Method::GET, self.uri(url)?, Bytes::new()))
    }

    fn request(&self, method: Method, uri: Uri, body: Bytes) -> Outgoing {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = self.inner.headers.clone();
        request
    }

    /// A provider error from a wire error, with the key scrubbed out of the message.
    pub fn error(&self, wire: WireError) -> ProviderError {
        let key = self.inner.key.as_ref().map(|k| k.expose_secret());
        let message = match key {
            Some(key) if !key.is_empty() && wire.message.contains(key) => {
                wire.message.replace(key, "[REDACTED]")
            }
            _ => wire.message,
        };
        ProviderError::new(wire.kind, &*self.inner.name, message)
    }

    fn http_error(&self, e: &(dyn StdError + 'static), doing: &str) -> ProviderError {
        let kind = if is_timeout(e) { ErrorKind::Timeout } else { ErrorKind::Connect };
        // The whole cause chain: a client's top-level message alone ("client error (Connect)")
        // hides the cause.
        let mut message = format!("{doing}: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.error(WireError::new(kind, message))
    }

    /// Sends a request and waits for a successful status within the first-byte deadline. An error
    /// status becomes a typed error built from the vendor's body.
    pub async fn send(&self, request: Outgoing) -> Result<(Response, Instant), ProviderError> {
        self.send_by(self.inner.clients.route(request.uri()), request).await
    }

    async fn send_by(&self, route: Route, request: Outgoing) -> Result<(Response, Instant), ProviderError> {
        let started = Instant::now();
        match tokio::time::timeout(self.inner.timeouts.first_byte, self.answer(route, request)).await {
            Err(_) => Err(self.first_byte_timeout()),
            Ok(answer) => Ok((answer?, started)),
        }
    }

    /// Sends a request and reads its whole body, both within the first-byte deadline (one timer
    /// for the two).
    async fn fetch(&self, request: Outgoing) -> Result<Bytes, ProviderError> {
        self.fetch_by(self.inner.clients.route(request.uri()), request).await
    }

    async fn fetch_by(&self, route: Route, request: Outgoing) -> Result<Bytes, ProviderError> {
        let whole = async {
            let body = self.answer(route, request).await?.into_body();
            match body.collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(e) => Err(self.http_error(&*e, "reading the answer failed")),
            }
        };
        match tokio::time::timeout(self.inner.timeouts.first_byte, whole).await {
            Err(_) => Err(self.first_byte_timeout()),
            Ok(whole) => whole,
        }
    }

    /// The answer to a request once its status is in (no deadline of its own): a successful one,
    /// or the typed error for a redirect or an error status.
    async fn answer(&self, route: Route, mut request: Outgoing) -> Result<Response, ProviderError> {
        if let Some(host) = self.host(request.uri()) {
            request.headers_mut().insert(HOST, host);
        }
        let response = match self.inner.clients.send(route, request).await {
            Err(e) => return Err(self.http_error(&*e, "request failed")),
            Ok(response) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            return Err(self.redirected(status.as_u16(), response.headers()));
        }
        let (parts, body) = response.into_parts();
        let body = self.read_capped(body).await;
        let wire = (self.inner.classify)(status.as_u16(), &parts.headers, &body);
        Err(self.error(wire).with_status(status.as_u16()))
    }

    /// The `Host` header for `uri` (its host, and its port unless the scheme's default), as the
    /// HTTP clients would write it; kept for the first address asked, which is the base URL's for
    /// almost every request, so it is not formatted anew for each.
    fn host(&self, uri: &Uri) -> Option<HeaderValue> {
        let authority = uri.authority()?;
        if let Some((known, value)) = self.inner.host.get()
            && known == authority
        {
            return Some(value.clone());
        }
        let default_port = match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let value = match authority.port_u16() {
            Some(port) if Some(port) != default_port => {
                HeaderValue::try_from(format!("{}:{port}", authority.host()))
            }
            _ => HeaderValue::from_str(authority.host()),
        }
        .ok()?;
        let _ = self.inner.host.set((authority.clone(), value.clone()));
        Some(value)
    }

    fn redirected(&self, status: u16, headers: &HeaderMap) -> ProviderError {
        let to = headers.get(LOCATION).and_then(|l| l.to_str().ok()).unwrap_or("an address it did not give");
        self.error(WireError::new(
            ErrorKind::InvalidRequest,
            format!(
                "the server answered {status}, pointing to {to}; redirects are not followed (the API \
                 key would go along): set the provider's base URL to the address it points to"
            ),
        ))
        .with_status(status)
    }

    async fn read_capped(&self, mut body: Body) -> String {
        let mut bytes = Vec::new();
        while bytes.len() < ERROR_BODY_CAP {
            match tokio::time::timeout(self.inner.timeouts.idle, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(chunk) = frame.data_ref() {
                        bytes.extend_from_slice(chunk);
                    }
                }
                _ => break,
            }
        }
        bytes.truncate(ERROR_BODY_CAP);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn first_byte_timeout(&self) -> ProviderError {
        self.error(WireError::new(
            ErrorKind::Timeout,
            format!("no answer within the first-byte timeout of {:?}", self.inner.timeouts.first_byte),
        ))
    }

    /// Sends a request and reads its answer as JSON (a non-streaming answer or a model list).
    pub async fn json(&self, request: Outgoing, what: &str) -> Result<serde_json::Value, ProviderError> {
        let bytes = self.fetch(request).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.error(WireError::bad_json(what, &String::from_utf8_lossy(&bytes), &e)))
    }

    /// Sends a request for a whole (non-streamed) answer and assembles it from the events
    /// `decode` says the vendor's JSON amounts to.
    pub async fn whole_answer(
        &self,
        request: Outgoing,
        what: &str,
        decode: impl FnOnce(&serde_json::Value) -> Result<Vec<StreamEvent>, WireError>,
    ) -> Result<ChatResponse, ProviderError> {
        let json = self.json(request, what).await?;
        self.assemble(decode(&json))
    }

    /// [`Transport::whole_answer`] for a decoder that reads the body's bytes itself (into typed
    /// structs, without a JSON tree in between).
    pub async fn whole_answer_from_bytes(
        &self,
        request: Outgoing,
        decode: fn(&[u8]) -> Result<Vec<StreamEvent>, WireError>,
    ) -> Result<ChatResponse, ProviderError> {
        let bytes = self.fetch(request).await?;
        self.assemble(decode(&bytes))
    }

    fn assemble(&self, events: Result<Vec<StreamEvent>, WireError>) -> Result<ChatResponse, ProviderError> {
        let mut assembler = ResponseAssembler::new();
        for event in events.map_err(|e| self.error(e))? {
            assembler.push(event);
        }
        assembler.finish(self.name())
    }

    /// Streams an SSE body through `decoder`. The first chunk must come within the first-byte
    /// deadline (counted from `started`), later ones within the idle deadline. Dropping the stream
    /// drops the body, which closes the connection and so cancels the request.
    pub fn sse<D: StreamDecoder>(&self, response: Response, decoder: D, started: Instant) -> EventStream {
        decode_sse(self.clone(), BodyDataStream::new(response.into_body()), decoder, started)
    }
}

/// Whether a client error (or one of its causes) is a deadline passing rather than a refusal.
fn is_timeout(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<reqwest::Error>()
            && e.is_timeout()
        {
            return true;
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// SSE parsing plus a vendor decoder: bytes in, [`StreamEvent`]s out, no IO. Shared by live
/// streams and [`crate::WireFormat::decode_stream`].
pub(crate) struct Decoding<D> {
    parser: SseParser,
    decoder: D,
    ended: bool,
}

impl<D: StreamDecoder> Decoding<D> {
    pub fn new(decoder: D) -> Self {
        Self { parser: SseParser::new(), decoder, ended: false }
    }

    /// Decodes one chunk of the body. Returns `true` once the vendor's end marker has been seen
    /// and the answer is complete; anything after it (trailing keep-alives) is ignored.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<bool, WireError> {
        let decoder = &mut self.decoder;
        self.parser.feed(chunk, &mut |e: SseEvent<'_>| {
            if decoder.is_done() { Ok(()) } else { decoder.event(e.event, e.data, out) }
        })?;
        if self.decoder.is_done() {
            self.end_once(out)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The body ended: flushes the parser and lets the decoder emit what it held back (or fail if
    /// the answer was cut short).
    pub fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        let decoder = &mut self.decoder;
        self.parser.finish(&mut |e: SseEvent<'_>| {
            if decoder.is_done() { Ok(()) } else { decoder.event(e.event, e.data, out) }
        })?;
        self.end_once(out)
    }

    fn end_once(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(());
        }
        self.decoder.end(out)
    }
}

struct SseState<B, D> {
    transport: Transport,
    body: B,
    decoding: Decoding<D>,
    pending: VecDeque<StreamEvent>,
    failure: Option<ProviderError>,
    first_chunk_deadline: Option<Instant>,
    ended: bool,
}

/// The stream behind [`Transport::sse`].
pub(crate) fn decode_sse<B, D>(transport: Transport, body: B, decoder: D, started: Instant) -> EventStream
where
    B: Stream<Item = Result<Bytes, BodyError>> + Send + Unpin + 'static,
    D: StreamDecoder,
{
    let first_chunk_deadline = Some(started + transport.inner.timeouts.first_byte);
    let state = SseState {
        transport,
        body,
        decoding: Decoding::new(decoder),
        pending: VecDeque::new(),
        failure: None,
        first_chunk_deadline,
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok(event), st));
            }
            if let Some(failure) = st.failure.take() {
                st.ended = true;
                return Some((Err(failure), st));
            }
            if st.ended {
                return None;
            }
            st.step().await;
        }
    }))
}

impl<B, D> SseState<B, D>
where
    B: Stream<Item = Result<Bytes, BodyError>> + Send + Unpin + 'static,
    D: StreamDecoder,
{
    /// Reads one chunk and decodes it into `pending`, or records why the stream ends. Once the
    /// answer is complete the body is no longer read, so the connection is released at once.
    async fn step(&mut self) {
        let timeouts = self.transport.inner.timeouts;
        let first = self.first_chunk_deadline.take();
        let deadline = first.unwrap_or_else(|| Instant::now() + timeouts.idle);
        // The message is only written when the deadline passes (this runs for every chunk).
        let waiting = || match first {
            Some(_) => format!("no answer within the first-byte timeout of {:?}", timeouts.first_byte),
            None => format!("the stream stalled: no data for {:?}", timeouts.idle),
        };
        let mut out = Vec::new();
        let result = match tokio::time::timeout_at(deadline, self.body.next()).await {
            Err(_) => Err(WireError::new(ErrorKind::Timeout, waiting())),
            Ok(Some(Err(e))) => {
                self.ended = true;
                self.failure = Some(self.transport.http_error(&*e, "the connection broke mid-answer"));
                Ok(())
            }
            Ok(Some(Ok(chunk))) => self.decoding.feed(&chunk, &mut out).map(|complete| self.ended = complete),
            Ok(None) => {
                self.ended = true;
                self.decoding.end(&mut out)
            }
        };
        self.pending.extend(out);
        if let Err(wire) = result {
            self.ended = true;
            self.failure = Some(self.transport.error(wire));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use exoclaw_testkit::server::{Reply, ScriptedServer};
    use http::header::HeaderName;
    use serde_json::json;

    fn transport() -> Transport {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-api-key"), secret_header("test", "sk-secret").unwrap());
        let classify: ErrorClassifier =
            |status, _, body| WireError::new(ErrorKind::Server, format!("{status}: {body}"));
        Transport::new("test", Timeouts::default(), Some("sk-secret".into()), headers, classify).unwrap()
    }

    fn clients(proxies: Matcher) -> Clients {
        Clients::new(Timeouts::default(), proxies).unwrap()
    }

    #[test]
    fn plain_http_goes_direct_and_https_or_a_proxied_host_through_reqwest() {
        let none = clients(Matcher::builder().build());
        let local: Uri = "http://127.0.0.1:8080/v1/chat/completions".parse().unwrap();
        assert_eq!(none.route(&local), Route::Direct);
        assert_eq!(none.route(&"https://api.openai.com/v1".parse().unwrap()), Route::General);

        let proxied = clients(Matcher::builder().http("http://proxy.internal:3128").no("localhost").build());
        assert_eq!(proxied.route(&local), Route::General, "HTTP_PROXY applies to plain HTTP");
        assert_eq!(proxied.route(&"http://localhost:8080/v1".parse().unwrap()), Route::Direct, "NO_PROXY");
    }

    /// Both clients send the same request (method, path, body, the provider's headers) and read
    /// the same answer.
    #[tokio::test]
    async fn both_clients_send_the_same_request_and_read_the_same_answer() {
        for route in [Route::Direct, Route::General] {
            let server = ScriptedServer::start([
                Reply::json(200, &json!({"answer": 42})),
                Reply::sse(["data: one\n\n", "data: two\n\n"]),
            ])
            .await;
            let t = transport();
            let uri = t.uri(format!("{}/v1/thing?x=1", server.url())).unwrap();
            let request = t.post_json(uri.clone(), &json!({"question": "?"})).unwrap();
            let body = t.fetch_by(route, request).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json, json!({"answer": 42}), "{route:?}");

            let (response, _) = t.send_by(route, t.get(uri.to_string()).unwrap()).await.unwrap();
            let mut chunks = BodyDataStream::new(response.into_body());
            let mut body = Vec::new();
            while let Some(chunk) = chunks.next().await {
                body.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(body, b"data: one\n\ndata: two\n\n", "{route:?}");

            let requests = server.requests();
            assert_eq!(requests.len(), 2);
            let (post, get) = (&requests[0], &requests[1]);
            assert_eq!(
                (post.method.as_str(), post.path.as_str(), post.query.as_deref()),
                ("POST", "/v1/thing", Some("x=1"))
            );
            assert_eq!(post.body, json!({"question": "?"}), "{route:?}");
            assert_eq!(post.header("content-type"), Some("application/json"));
            assert_eq!(get.method, "GET");
            for r in [post, get] {
                assert_eq!(r.header("x-api-key"), Some("sk-secret"), "{route:?}");
                assert!(r.header("user-agent").unwrap().starts_with("exoclaw/"), "{route:?}");
                assert_eq!(r.header("host"), uri.authority().map(|a| a.as_str()), "{route:?}");
            }
        }
    }

    /// A redirect is not followed by either client (the key would go along): the error names
    /// where the server points and what to change.
    #[tokio::test]
    async fn a_redirect_is_an_error_that_names_the_new_address() {
        for route in [Route::Direct, Route::General] {
            let server = ScriptedServer::start([
                Reply::text(308, "").header("location", "https://api.example.com/v1/chat/completions")
            ])
            .await;
            let t = transport();
            let request = t
                .post_json(t.uri(format!("{}/v1/chat/completions", server.url())).unwrap(), &json!({}))
                .unwrap();
            let err = t.send_by(route, request).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{route:?}");
            assert!(err.message.contains("308"), "{err}");
            assert!(err.message.contains("https://api.example.com/v1/chat/completions"), "{err}");
            assert!(err.message.contains("base URL"), "{err}");
            assert_eq!(server.requests().len(), 1, "{route:?}: the redirect was followed");
        }
    }

    /// An error status reads the body through the vendor's classifier, on both clients; a key the
    /// server echoes back never reaches the message.
    #[tokio::test]
    async fn an_error_status_is_classified_and_the_key_scrubbed() {
        for route in [Route::Direct, Route::General] {
            let server = ScriptedServer::start([Reply::text(500, "bad key sk-secret")]).await;
            let t = transport();
            let (err, _) = match t.send_by(route, t.get(server.url()).unwrap()).await {
                Err(err) => (err, ()),
                Ok(_) => panic!("{route:?}: a 500 was taken for an answer"),
            };
            assert_eq!(err.kind, ErrorKind::Server, "{route:?}");
            assert!(err.message.contains("500: bad key [REDACTED]"), "{err}");
            assert!(!err.message.contains("sk-secret"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_on_both_clients() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        for route in [Route::Direct, Route::General] {
            let t = transport();
            let err =
                match t.send_by(route, t.get(format!("http://127.0.0.1:{port}/v1/models")).unwrap()).await {
                    Err(err) => err,
                    Ok(_) => panic!("{route:?}: nothing listens there"),
                };
            assert_eq!(err.kind, ErrorKind::Connect, "{route:?}");
            assert!(err.message.to_lowercase().contains("refused"), "{route:?}: {err}");
        }
    }

    #[test]
    fn a_key_http_cannot_carry_is_an_error_without_the_key() {
        let err = secret_header("openai", "sk-abc\ndef").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(!err.message.contains("sk-abc"), "{err}");
    }
}
