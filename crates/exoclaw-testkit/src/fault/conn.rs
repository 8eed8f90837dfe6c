//! The proxy's own listener and connection type: each accepted connection carries a handle that a
//! request handler can use to reset it (for [`Fault::Refuse`](super::Fault::Refuse)), and every
//! connection fails as soon as the proxy is dropped, idle keep-alive ones included — `axum::serve`
//! spawns connections as tasks of their own that aborting the accept loop would not end.

use axum::{extract::connect_info::Connected, serve::IncomingStream};
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// Accepts on `127.0.0.1:0`.
pub(super) struct Listener {
    tcp: TcpListener,
    stop: watch::Receiver<()>,
}

impl Listener {
    /// Binds a free loopback port; connections end when `stop`'s sender is dropped.
    pub(super) async fn bind(stop: watch::Receiver<()>) -> Self {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        Self { tcp, stop }
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("local addr")
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, addr)) => {
                    // Small SSE chunks must leave as soon as they are written.
                    let _ = tcp.set_nodelay(true);
                    let mut stop = self.stop.clone();
                    let stopped = Box::pin(async move {
                        let _ = stop.changed().await;
                    });
                    return (Conn { tcp, handle: ConnHandle::default(), stopped: Some(stopped) }, addr);
                }
                // Out of file descriptors and the like: wait rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Lets a handler reset the connection its request came on (extracted as `ConnectInfo`).
#[derive(Debug, Clone, Default)]
pub(super) struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    /// Every later read or write on the connection fails, and closing it sends a TCP RST.
    pub(super) fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_reset(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, Listener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        stream.io().handle.clone()
    }
}

/// One accepted connection.
pub(super) struct Conn {
    tcp: TcpStream,
    handle: ConnHandle,
    /// Completes when the proxy is dropped; `None` once it has.
    stopped: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Conn {
    /// The error every I/O call returns once the connection is reset or the proxy stopped.
    fn failed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if let Some(stopped) = &mut self.stopped
            && stopped.as_mut().poll(cx).is_ready()
        {
            self.stopped = None;
            self.handle.reset();
        }
        if !self.handle.is_reset() {
            return None;
        }
        // Abortive close: the peer sees "connection reset", as from a crashed or refusing server.
        let _ = self.tcp.set_zero_linger();
        Some(io::Error::new(io::ErrorKind::ConnectionReset, "exoclaw-testkit fault proxy: connection reset"))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
