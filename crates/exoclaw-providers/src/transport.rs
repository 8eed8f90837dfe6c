//! HTTP for every provider: one `reqwest` client per provider, the connect / first-byte / idle
//! deadlines, turning error responses into typed errors, and driving an SSE body through a
//! vendor's [`StreamDecoder`].
//!
//! The API key lives here as a [`SecretString`]: it is exposed only to set a request header, and
//! every error message passes through [`Transport::error`], which scrubs it out.

use crate::sse::{SseEvent, SseParser};
use crate::wire::{StreamDecoder, WireError};
use bytes::Bytes;
use exoclaw_core::{ErrorKind, EventStream, ProviderError, ResponseAssembler};
use exoclaw_types::{ChatResponse, StreamEvent};
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
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

/// Most bytes of an error body kept for the message.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// The HTTP side of one provider instance.
#[derive(Clone)]
pub(crate) struct Transport {
    name: Arc<str>,
    client: reqwest::Client,
    timeouts: Timeouts,
    key: Option<SecretString>,
    classify: ErrorClassifier,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("name", &self.name)
            .field("timeouts", &self.timeouts)
            .field("key", &self.key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl Transport {
    pub fn new(
        name: &str,
        timeouts: Timeouts,
        key: Option<SecretString>,
        classify: ErrorClassifier,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .user_agent(concat!("exoclaw/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderError::new(ErrorKind::Connect, name, format!("cannot build HTTP client: {e}"))
            })?;
        Ok(Self { name: name.into(), client, timeouts, key, classify })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The key, for setting a request header. Never format it.
    pub fn key(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.expose_secret())
    }

    /// A provider error from a wire error, with the key scrubbed out of the message.
    pub fn error(&self, wire: WireError) -> ProviderError {
        let message = match self.key() {
            Some(key) if !key.is_empty() && wire.message.contains(key) => {
                wire.message.replace(key, "[REDACTED]")
            }
            _ => wire.message,
        };
        ProviderError::new(wire.kind, &*self.name, message)
    }

    fn http_error(&self, e: &reqwest::Error, doing: &str) -> ProviderError {
        let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Connect };
        // `{:#}`-style chains: reqwest's top-level message alone ("error sending request") hides the cause.
        let mut message = format!("{doing}: {e}");
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.error(WireError::new(kind, message))
    }

    /// Sends a request and waits for a successful status within the first-byte deadline. An error
    /// status becomes a typed error built from the vendor's body.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, Instant), ProviderError> {
        let started = Instant::now();
        let response = match tokio::time::timeout(self.timeouts.first_byte, request.send()).await {
            Err(_) => return Err(self.first_byte_timeout()),
            Ok(Err(e)) => return Err(self.http_error(&e, "request failed")),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok((response, started));
        }
        let headers = response.headers().clone();
        let body = self.read_capped(response).await;
        let wire = (self.classify)(status.as_u16(), &headers, &body);
        Err(self.error(wire).with_status(status.as_u16()))
    }

    async fn read_capped(&self, response: reqwest::Response) -> String {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while body.len() < ERROR_BODY_CAP {
            match tokio::time::timeout(self.timeouts.idle, chunks.next()).await {
                Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY_CAP);
        String::from_utf8_lossy(&body).into_owned()
    }

    fn first_byte_timeout(&self) -> ProviderError {
        self.error(WireError::new(
            ErrorKind::Timeout,
            format!("no answer within the first-byte timeout of {:?}", self.timeouts.first_byte),
        ))
    }

    /// Reads a whole body within the first-byte deadline (counted from `started`).
    async fn body(&self, response: reqwest::Response, started: Instant) -> Result<Bytes, ProviderError> {
        let deadline = started + self.timeouts.first_byte;
        match tokio::time::timeout_at(deadline, response.bytes()).await {
            Err(_) => Err(self.first_byte_timeout()),
            Ok(Err(e)) => Err(self.http_error(&e, "reading the answer failed")),
            Ok(Ok(bytes)) => Ok(bytes),
        }
    }

    /// Reads a whole JSON body (a non-streaming answer or a model list).
    pub async fn json(
        &self,
        response: reqwest::Response,
        started: Instant,
        what: &str,
    ) -> Result<serde_json::Value, ProviderError> {
        let bytes = self.body(response, started).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.error(WireError::bad_json(what, &String::from_utf8_lossy(&bytes), &e)))
    }

    /// Reads a whole (non-streamed) answer and assembles it from the events `decode` says the
    /// vendor's JSON amounts to.
    pub async fn whole_answer(
        &self,
        response: reqwest::Response,
        started: Instant,
        what: &str,
        decode: fn(&serde_json::Value) -> Result<Vec<StreamEvent>, WireError>,
    ) -> Result<ChatResponse, ProviderError> {
        let json = self.json(response, started, what).await?;
        self.assemble(decode(&json))
    }

    /// [`Transport::whole_answer`] for a decoder that reads the body's bytes itself (into typed
    /// structs, without a JSON tree in between).
    pub async fn whole_answer_from_bytes(
        &self,
        response: reqwest::Response,
        started: Instant,
        decode: fn(&[u8]) -> Result<Vec<StreamEvent>, WireError>,
    ) -> Result<ChatResponse, ProviderError> {
        let bytes = self.body(response, started).await?;
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
    pub fn sse<D: StreamDecoder>(
        &self,
        response: reqwest::Response,
        decoder: D,
        started: Instant,
    ) -> EventStream {
        decode_sse(self.clone(), response.bytes_stream(), decoder, started)
    }
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
    B: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
    D: StreamDecoder,
{
    let first_chunk_deadline = Some(started + transport.timeouts.first_byte);
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
    B: Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
    D: StreamDecoder,
{
    /// Reads one chunk and decodes it into `pending`, or records why the stream ends. Once the
    /// answer is complete the body is no longer read, so the connection is released at once.
    async fn step(&mut self) {
        let timeouts = self.transport.timeouts;
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
                self.failure = Some(self.transport.http_error(&e, "the connection broke mid-answer"));
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
