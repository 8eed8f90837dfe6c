//! The accept loop under [`crate::serve`]: HTTP/1 connections served by hyper (upgrades included,
//! for the WebSocket), with the limits a connection is held to before any handler sees it.
//!
//! - **Connections**: at most `limits.max_connections` open at once, WebSockets included (the slot
//!   travels with the socket through the upgrade). One more is answered 503 with `Retry-After`
//!   and closed, without being read.
//! - **Header timeout**: a request's head (request line and headers) must arrive within
//!   `limits.header_timeout` of its first byte, else the connection is answered 408 and closed
//!   (the slowloris attack: a head sent a byte at a time, or never finished). A new connection
//!   must send its first byte within the same time, else it is closed.
//! - **Keep-alive**: a connection with no request running is closed after `limits.keep_alive`
//!   without a new one.
//! - **Stalled writes**: a client that takes none of its answer for `limits.keep_alive` (it stopped
//!   reading, and the socket's buffers are full) is cut off, so that it cannot hold its
//!   connection, and what is queued for it, forever.
//!
//! All three are kept by [`Watched`], the socket as hyper sees it: when a read finds nothing to
//! read it arms one timer for the phase the connection is in. A running request (including a
//! long streamed answer) has no deadline here (its body's is [`crate::body`]'s), nor has an
//! upgraded WebSocket (the protocol keeps its own idle timeout). Which phase a connection is in
//! comes from [`Tracked`], hyper's service, which counts a request from its head until its
//! response body is done.

use crate::front::{Admitted, Front};
use crate::{Gateway, GatewayError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use axum::routing::future::RouteFuture;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Serves `router` (the routes behind their front layer) on `listener` until `signal` completes,
/// then stops accepting, asks every connection to finish its request and close, and returns once
/// all have (upgraded WebSockets are not waited for here: [`crate::chat::drain`] does).
pub(crate) async fn run(
    listener: TcpListener,
    router: Front<Router>,
    gateway: Arc<Gateway>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let limits = &gateway.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let canned = Arc::new(Canned::new(&gateway));
    // As in axum's `serve`: dropping `signal_rx` tells the connections to finish; each holds a
    // `close_rx` until it ends, so `close_tx.closed()` is when they all have.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let stream = tokio::select! {
            stream = accept(&listener) => stream,
            () = signal_tx.closed() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            turn_away(&stream, &canned, &gateway);
            continue;
        };
        let conn = Arc::new(ConnState::new());
        let io = Watched::new(stream, Arc::clone(&conn), &gateway, Arc::clone(&canned), slot);
        let service = Tracked { router: router.clone(), conn };
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            // hyper's own header timer stays off (it has no timer to run on): `Watched` keeps
            // time, so that it can tell keep-alive from a slow head and answer 408.
            let connection =
                http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades();
            let mut connection = pin!(connection);
            let mut stopping = pin!(signal_tx.closed());
            let mut asked = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "HTTP connection ended with an error");
                        }
                        break;
                    }
                    () = &mut stopping, if !asked => {
                        asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// The next connection. Errors that concern one connection are skipped; others (out of file
/// descriptors) are logged and retried after a second, as axum's `serve` does.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot accept connections; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection past `max_connections` with 503 and closes it, without reading it or
/// waiting for it (one non-blocking write; a client that cannot take it just sees the close).
fn turn_away(stream: &TcpStream, canned: &Canned, gateway: &Gateway) {
    gateway.metrics.error("too_many_connections");
    tracing::debug!(limit = gateway.limits.max_connections, "connection refused: too many open");
    let _ = stream.try_write(&canned.busy);
}

/// Responses written straight to a socket, outside hyper: made once, in OpenAI's error shape.
#[derive(Debug)]
struct Canned {
    /// 408, for a head that took too long.
    slow_head: Bytes,
    /// 503, for a connection past `max_connections`.
    busy: Bytes,
}

impl Canned {
    fn new(gateway: &Gateway) -> Self {
        let limits = &gateway.limits;
        let slow = GatewayError::HeaderTimeout { secs: limits.header_timeout.as_secs() };
        let busy = GatewayError::TooManyConnections { limit: limits.max_connections };
        Self { slow_head: raw(&slow, ""), busy: raw(&busy, "retry-after: 1\r\n") }
    }
}

/// `e` as a whole HTTP/1.1 response that closes the connection.
fn raw(e: &GatewayError, extra_headers: &str) -> Bytes {
    let status = e.status();
    let body = e.body().to_string();
    Bytes::from(format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    ))
}

/// What [`Tracked`] tells [`Watched`] about a connection.
#[derive(Debug)]
struct ConnState {
    /// When the connection was accepted: what [`ConnState::ended`] counts from.
    opened: Instant,
    /// Requests from their head until their response body is done (one, in HTTP/1).
    running: AtomicUsize,
    /// When the last request ended, in nanoseconds after `opened`.
    ended: AtomicU64,
    /// It became a WebSocket: no deadline here any more.
    upgraded: AtomicBool,
}

impl ConnState {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            running: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    /// A request is over (its response body is done).
    fn end(&self) {
        let after = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.ended.store(after, Ordering::Relaxed);
        self.running.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the last request ended.
    fn ended_at(&self) -> Instant {
        self.opened + Duration::from_nanos(self.ended.load(Ordering::Relaxed))
    }
}

/// Where a connection is, for its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing read yet: the first byte is due within the header timeout.
    Fresh,
    /// Between requests: the next is due within the keep-alive time.
    Idle,
    /// Part of a head has arrived: the rest is due within the header timeout of its first byte.
    Head,
    /// A request is running: no deadline here.
    Busy,
}

/// The socket as hyper sees it, keeping the connection's deadline (see the module docs), and
/// the connection's slot under `max_connections`, which it holds for as long as it lives (an
/// upgraded WebSocket included).
struct Watched {
    stream: TcpStream,
    conn: Arc<ConnState>,
    phase: Phase,
    /// When the current phase's time is up.
    until: Instant,
    /// Whether the current head's time has been started.
    head_timed: bool,
    /// The timer, and the deadline it is set to (reset only when it must fire sooner or later).
    timer: Pin<Box<Sleep>>,
    armed: Instant,
    /// Whether the timer has been polled (and so will wake the connection) since it was set.
    registered: bool,
    /// The stalled-write timer, made the first time a write has to wait; and whether it is
    /// running for the current wait.
    write_timer: Option<Pin<Box<Sleep>>>,
    write_waiting: bool,
    header_timeout: Duration,
    keep_alive: Duration,
    gateway: Arc<Gateway>,
    canned: Arc<Canned>,
    _slot: OwnedSemaphorePermit,
}

impl Watched {
    fn new(
        stream: TcpStream,
        conn: Arc<ConnState>,
        gateway: &Arc<Gateway>,
        canned: Arc<Canned>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let limits = &gateway.limits;
        let until = Instant::now() + limits.header_timeout;
        Self {
            stream,
            conn,
            phase: Phase::Fresh,
            until,
            head_timed: false,
            timer: Box::pin(tokio::time::sleep_until(until)),
            armed: until,
            registered: false,
            write_timer: None,
            write_waiting: false,
            header_timeout: limits.header_timeout,
            // A zero would leave a running request's connection with a timer that never waits.
            keep_alive: limits.keep_alive.max(Duration::from_millis(1)),
            gateway: Arc::clone(gateway),
            canned,
            _slot: slot,
        }
    }

    /// Bytes arrived. With no request running they begin a head. Its time is started when the
    /// head is found unfinished ([`Watched::on_wait`]), in the same moment when it trickles: a
    /// head that arrives whole costs no clock reading and no timer.
    fn on_bytes(&mut self) {
        if self.phase == Phase::Head || self.conn.upgraded.load(Ordering::Relaxed) {
            return;
        }
        if self.conn.running.load(Ordering::Relaxed) > 0 {
            self.phase = Phase::Busy;
        } else {
            self.phase = Phase::Head;
            self.head_timed = false;
        }
    }

    /// Nothing to read now: `Pending` while the phase has time left, else end of file (so hyper
    /// closes the connection), after a 408 for a head that was too slow.
    fn on_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.upgraded.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        if self.conn.running.load(Ordering::Relaxed) > 0 {
            // Nothing is due while a request runs. But hyper does not read again when it ends
            // (it waits for the socket), so whatever the timer is set to stays: when it fires,
            // the connection is idle by then, or still busy and looked at again later.
            self.phase = Phase::Busy;
        } else {
            match self.phase {
                Phase::Busy => {
                    self.phase = Phase::Idle;
                    self.until = self.conn.ended_at() + self.keep_alive;
                }
                Phase::Head if !self.head_timed => {
                    self.head_timed = true;
                    self.until = Instant::now() + self.header_timeout;
                }
                Phase::Fresh | Phase::Idle | Phase::Head => {}
            }
        }
        loop {
            if self.armed != self.until {
                // Later than before: cheap (the timer is only told it may sleep longer).
                self.timer.as_mut().reset(self.until);
                self.armed = self.until;
                self.registered = false;
            }
            // Polled once per deadline: the connection's task is always the one to wake, so
            // until the timer fires there is nothing to tell it.
            if self.registered && !self.timer.is_elapsed() {
                return Poll::Pending;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                self.registered = true;
                return Poll::Pending;
            }
            self.registered = false;
            match self.phase {
                // Fired while a request runs: look again within the keep-alive time.
                Phase::Busy => self.until = Instant::now() + self.keep_alive,
                Phase::Head => {
                    self.gateway.metrics.error("header_timeout");
                    tracing::debug!(
                        secs = self.header_timeout.as_secs_f64(),
                        "connection closed: its request head did not arrive in time"
                    );
                    // One try, never waiting: the client is not reading or not sending, or both.
                    let _ = Pin::new(&mut self.stream).poll_write(cx, &self.canned.slow_head);
                    return Poll::Ready(Ok(()));
                }
                Phase::Fresh | Phase::Idle => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Watched {
    /// A write's outcome, passed on, unless it has waited on the client for the keep-alive time
    /// without any progress: then an error, which ends the connection.
    fn on_write<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.write_waiting = false;
            return result;
        }
        // The WebSocket bounds its own sends.
        if self.conn.upgraded.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let limit = self.keep_alive;
        let timer = self.write_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.write_waiting {
            self.write_waiting = true;
            timer.as_mut().reset(Instant::now() + limit);
        }
        ready!(timer.as_mut().poll(cx));
        self.gateway.metrics.error("write_timeout");
        tracing::debug!(
            secs = limit.as_secs_f64(),
            "connection closed: the client stopped reading its answer"
        );
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading its answer")))
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.on_wait(cx),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.on_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.on_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.on_write(cx, result)
    }
}

/// hyper's service for one connection: the router behind its front layer, counting each request
/// as running from its head until its response body is done, and noting an upgrade.
struct Tracked {
    router: Front<Router>,
    conn: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn call(&self, request: Request<Incoming>) -> TrackedFuture {
        self.conn.running.fetch_add(1, Ordering::Relaxed);
        let mut router = self.router.clone();
        let future = tower::Service::call(&mut router, request.map(Body::new));
        TrackedFuture { future, done: Some(Done(Arc::clone(&self.conn))) }
    }
}

/// The router's answer, its body tracked.
struct TrackedFuture {
    future: Admitted<RouteFuture<Infallible>>,
    /// Moves to the response body once there is one.
    done: Option<Done>,
}

impl Future for TrackedFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Ok(response) = ready!(Pin::new(&mut this.future).poll(cx));
        let done = this.done.take();
        if let Some(Done(conn)) = &done
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            conn.upgraded.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, _done: done })))
    }
}

/// Ends the request's running time when dropped.
struct Done(Arc<ConnState>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that marks its request done when hyper is done with it.
struct TrackedBody {
    inner: Body,
    _done: Option<Done>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
