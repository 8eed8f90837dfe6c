//! Request bodies: what the gateway holds of them is kept bounded, before any route reads one
//! (applied by [`crate::front`]).
//!
//! - **In flight**: every request with a body reserves its bytes from one budget shared by all
//!   requests (`limits.max_body_bytes_in_flight`), and keeps them until its handler has answered,
//!   so the bodies being buffered and decoded at once never add up past it. A body announced with
//!   `Content-Length` reserves it all before a byte is read: one that does not fit now is answered
//!   503 with `Retry-After` at once, one larger than the largest body (or the whole budget) 413. A
//!   body of unknown length reserves each chunk as it arrives, and is cut off with 503 when the
//!   budget runs out.
//! - **Time**: the body must arrive within `limits.body_timeout` of the gateway starting to read
//!   it, else 408. A client that trickles its body cannot hold its reservation for long.
//!
//! Requests without a body (`GET`, `/ws` upgrades) pass straight through. The handlers' own
//! extractors (`Bytes`, with [`axum::extract::DefaultBodyLimit`]) still read the body; this layer
//! only watches it, and turns the failures it caused into their own status.

use crate::server::MAX_BODY_BYTES;
use crate::{Gateway, GatewayError};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What [`admit`] decided for a request.
pub(crate) enum Admission {
    /// No body to watch: the request as it came.
    Pass(Request),
    /// Its body watched, and its reservation held until its handler has answered.
    Watched(Request, Hold),
    /// Refused before any of its body is read.
    Refused(GatewayError),
}

/// Admits `request`'s body under the budget and the body timeout; see the module docs.
pub(crate) fn admit(gateway: &Arc<Gateway>, request: Request) -> Admission {
    let body = request.body();
    if body.is_end_stream() {
        return Admission::Pass(request);
    }
    // A body of known length reserves it all now; one of unknown length, chunk by chunk.
    let (permit, per_chunk) = match body.size_hint().exact() {
        Some(0) => return Admission::Pass(request),
        Some(size) => match reserve(gateway, size) {
            Ok(permit) => (Some(permit), None),
            Err(e) => return Admission::Refused(e),
        },
        None => (None, Some(Arc::clone(&gateway.body_budget))),
    };
    let watch = Arc::new(Watch::default());
    let (parts, body) = request.into_parts();
    let metered = Metered {
        inner: body,
        timeout: gateway.limits.body_timeout,
        deadline: None,
        watch: Arc::clone(&watch),
        per_chunk,
    };
    let hold = Hold { _permit: permit, watch, gateway: Arc::clone(gateway) };
    Admission::Watched(Request::from_parts(parts, Body::new(metered)), hold)
}

/// Reserves `size` bytes of the budget, or says why the body is refused.
fn reserve(gateway: &Gateway, size: u64) -> Result<OwnedSemaphorePermit, GatewayError> {
    let budget = gateway.limits.max_body_bytes_in_flight;
    let largest = u64::try_from(MAX_BODY_BYTES.min(budget)).unwrap_or(u64::MAX);
    if size > largest {
        return Err(GatewayError::BodyTooLarge {
            size,
            limit: largest,
            over_budget: budget < MAX_BODY_BYTES,
        });
    }
    u32::try_from(size)
        .ok()
        .and_then(|n| Arc::clone(&gateway.body_budget).try_acquire_many_owned(n).ok())
        .ok_or(GatewayError::BodiesInFlight { size: Some(size), limit: budget })
}

pub(crate) fn refuse(gateway: &Gateway, e: GatewayError) -> Response {
    tracing::debug!(error = %e, "request body refused");
    gateway.metrics.error(e.kind_name());
    e.into_response()
}

/// What happened to a watched body.
#[derive(Debug, Default)]
struct Watch {
    /// 0 while all is well, else [`TIMED_OUT`] or [`OVER_BUDGET`].
    outcome: AtomicU8,
    /// The chunks of a body of unknown length reserved so far.
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

const TIMED_OUT: u8 = 1;
const OVER_BUDGET: u8 = 2;

impl Watch {
    /// Records why the body was cut off; the error is what the handler's extractor sees.
    fn fail(&self, outcome: u8) -> axum::Error {
        self.outcome.store(outcome, Ordering::Relaxed);
        let why = if outcome == TIMED_OUT { "body timeout" } else { "body budget spent" };
        axum::Error::new(why)
    }

    fn hold(&self, permit: OwnedSemaphorePermit) {
        let mut held = match self.held.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        match held.as_mut() {
            Some(all) => all.merge(permit),
            None => *held = Some(permit),
        }
    }
}

/// The request body, watched: a deadline once it has to be waited for, and for a body of
/// unknown length each chunk's reservation.
struct Metered {
    inner: Body,
    timeout: Duration,
    /// Started the first time the body is not all there yet.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    watch: Arc<Watch>,
    per_chunk: Option<Arc<Semaphore>>,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(budget), Some(data)) = (&this.per_chunk, frame.data_ref())
                    && !data.is_empty()
                {
                    let reserved = u32::try_from(data.len())
                        .ok()
                        .and_then(|n| Arc::clone(budget).try_acquire_many_owned(n).ok());
                    match reserved {
                        Some(permit) => this.watch.hold(permit),
                        None => return Poll::Ready(Some(Err(this.watch.fail(OVER_BUDGET)))),
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.watch.fail(TIMED_OUT))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a request holds while its handler runs: its reservation, and what its body met.
pub(crate) struct Hold {
    _permit: Option<OwnedSemaphorePermit>,
    watch: Arc<Watch>,
    gateway: Arc<Gateway>,
}

impl Hold {
    /// The handler's `response`, or, for a body cut off here, the 408 or 503 that says why (the
    /// handler only saw its body fail). The reservation is given back now.
    pub(crate) fn finish(self, response: Response) -> Response {
        let limits = &self.gateway.limits;
        let e = match self.watch.outcome.load(Ordering::Relaxed) {
            TIMED_OUT => GatewayError::BodyTimeout { secs: limits.body_timeout.as_secs() },
            OVER_BUDGET => {
                GatewayError::BodiesInFlight { size: None, limit: limits.max_body_bytes_in_flight }
            }
            _ => return response,
        };
        refuse(&self.gateway, e)
    }
}
