//! What every request passes before its route: one tower [`Layer`] (one layer, not one per
//! concern: each layer of an axum router costs every request a boxed service and future) that
//!
//! 1. refuses web pages and names that may not call this gateway ([`crate::guard`]);
//! 2. admits the request's body under the in-flight budget and the body timeout
//!    ([`crate::body`]), holding its reservation until the route has answered.
//!
//! Requests without a body and without an `Origin` pass with no allocation and no boxing.

use crate::Gateway;
use crate::body::{self, Admission, Hold};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// The [`Layer`] that puts [`Front`] before a service.
#[derive(Debug, Clone)]
pub(crate) struct FrontLayer {
    gateway: Arc<Gateway>,
}

impl FrontLayer {
    pub(crate) fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Front<S> {
        Front { inner, gateway: Arc::clone(&self.gateway) }
    }
}

/// The guard and the body budget before `S`; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Front<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Admitted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let gateway = &self.gateway;
        if let Err(e) = crate::guard::check(gateway, request.headers(), request.uri()) {
            tracing::info!(
                path = %crate::text::Escaped(request.uri().path()),
                error = %crate::text::Escaped(&e),
                "request refused"
            );
            gateway.metrics.error(e.kind_name());
            return Admitted::Refused(Some(e.into_response()));
        }
        match body::admit(gateway, request) {
            Admission::Pass(request) => Admitted::Pass(self.inner.call(request)),
            Admission::Watched(request, hold) => {
                Admitted::Held { inner: self.inner.call(request), hold: Some(hold) }
            }
            Admission::Refused(e) => Admitted::Refused(Some(body::refuse(gateway, e))),
        }
    }
}

/// The response future of [`Front`].
pub(crate) enum Admitted<F> {
    /// Nothing to hold.
    Pass(F),
    /// A watched body: its reservation is held until `inner` answers.
    Held { inner: F, hold: Option<Hold> },
    /// Refused before the route ran.
    Refused(Option<Response>),
}

impl<F> Future for Admitted<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Admitted::Pass(inner) => Pin::new(inner).poll(cx),
            Admitted::Held { inner, hold } => {
                let Ok(response) = ready!(Pin::new(inner).poll(cx));
                Poll::Ready(Ok(match hold.take() {
                    Some(hold) => hold.finish(response),
                    None => response,
                }))
            }
            // Polled again after it answered: a bug, but not one to panic over.
            Admitted::Refused(response) => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()))),
        }
    }
}
