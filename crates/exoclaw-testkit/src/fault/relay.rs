//! Forwarding to the upstream: the request as received (less hop-by-hop headers), the reply
//! streamed back chunk by chunk as it arrives, optionally cut after so many body bytes.

use super::{Shared, wire::error_body};
use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderName, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use std::{io, time::Duration};
use tokio::sync::watch;

/// How long a cut body waits before failing, so that hyper has flushed what was already sent: it
/// drops its write buffer along with a connection whose body stream errs.
const FLUSH_GRACE: Duration = Duration::from_millis(50);

/// Forwards `req` to the upstream and relays the reply; with `cut`, only that many body bytes get
/// through before the connection is cut.
pub(super) async fn forward(shared: &Shared, req: Request, cut: Option<usize>) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {e}")),
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let upstream = shared
        .client
        .request(parts.method, format!("{}{path}", shared.upstream))
        .headers(end_to_end(&parts.headers, &[header::HOST, header::CONTENT_LENGTH, header::EXPECT]))
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(e) => {
            return failure(
                StatusCode::BAD_GATEWAY,
                &format!("upstream {} unreachable: {e}", shared.upstream),
            );
        }
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = upstream.status();
    // A cut body goes out chunked, whatever length the upstream announced, so that the client sees
    // an incomplete chunked body rather than a short fixed-length one.
    let strip: &[HeaderName] = if cut.is_some() { &[header::CONTENT_LENGTH] } else { &[] };
    *response.headers_mut() = end_to_end(upstream.headers(), strip);
    let relay = Relay {
        upstream: upstream.bytes_stream().boxed(),
        left: cut,
        stop: shared.stop.clone(),
        over: false,
    };
    *response.body_mut() = Body::from_stream(futures::stream::unfold(relay, Relay::next));
    response
}

/// `headers` less the hop-by-hop ones (RFC 9110 §7.6.1, and any the `Connection` header names)
/// and `also`.
fn end_to_end(headers: &HeaderMap, also: &[HeaderName]) -> HeaderMap {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let hop_by_hop = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let skip = hop_by_hop.contains(name)
            || also.contains(name)
            || named_by_connection.iter().any(|n| n == name.as_str());
        if !skip {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// A JSON error reply from the proxy itself (not an injected fault).
fn failure(status: StatusCode, message: &str) -> Response {
    let mut body = error_body(status.as_u16());
    body["error"]["message"] = format!("exoclaw-testkit fault proxy: {message}").into();
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// The upstream's body on its way to the client.
struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    /// Body bytes still allowed through before the cut; `None` for no cut.
    left: Option<usize>,
    stop: watch::Receiver<()>,
    /// An error has been sent: the body is over.
    over: bool,
}

impl Relay {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.over {
            return None;
        }
        loop {
            if self.left == Some(0) {
                tokio::time::sleep(FLUSH_GRACE).await;
                return self.fail(io::ErrorKind::ConnectionAborted, "injected DropAfter");
            }
            let next = tokio::select! {
                next = self.upstream.next() => next,
                _ = self.stop.changed() => return self.fail(io::ErrorKind::ConnectionAborted, "proxy dropped"),
            };
            match next {
                Some(Ok(bytes)) => {
                    let bytes = match &mut self.left {
                        None => bytes,
                        Some(left) => {
                            let take = bytes.len().min(*left);
                            *left -= take;
                            bytes.slice(..take)
                        }
                    };
                    if !bytes.is_empty() {
                        return Some((Ok(bytes), self));
                    }
                }
                // The upstream's own failure reaches the client as the same kind of cut.
                Some(Err(e)) => {
                    return self.fail(io::ErrorKind::ConnectionAborted, &format!("upstream: {e}"));
                }
                // Upstream ended before the cut: cut anyway, as documented on `DropAfter`.
                None if self.left.is_some() => self.left = Some(0),
                None => return None,
            }
        }
    }

    fn fail(mut self, kind: io::ErrorKind, why: &str) -> Option<(io::Result<Bytes>, Self)> {
        self.over = true;
        Some((Err(io::Error::new(kind, format!("exoclaw-testkit fault proxy: {why}"))), self))
    }
}
