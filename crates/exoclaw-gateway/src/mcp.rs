//! `/mcp`: MCP over streamable HTTP (exoclaw's tools and agents, as `exoclaw mcp serve` offers
//! them on stdio), for the operator only. The MCP server itself is given by the caller
//! ([`crate::GatewayBuilder::mcp`]); the gateway puts its guard and operator check in front.

use crate::Gateway;
use crate::server::Operator;
use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The path MCP is served at.
pub const MCP_PATH: &str = "/mcp";

/// The MCP service to mount, as a router of its one path.
#[derive(Clone)]
pub(crate) struct McpEndpoint {
    routes: Router<Arc<Gateway>>,
}

impl McpEndpoint {
    pub(crate) fn new<S>(service: S) -> Self
    where
        S: tower::Service<Request, Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        Self { routes: Router::new().route_service(MCP_PATH, service) }
    }
}

/// `/mcp` behind the operator check, when the gateway has an MCP server; else nothing (the
/// fallback answers 404).
pub(crate) fn routes(gateway: &Arc<Gateway>) -> Router<Arc<Gateway>> {
    match &gateway.mcp {
        Some(endpoint) => endpoint
            .routes
            .clone()
            .layer(axum::middleware::from_fn_with_state(Arc::clone(gateway), operator_only)),
        None => Router::new(),
    }
}

/// Lets the request through only for an operator token (or anyone, on a gateway that needs no
/// token); a virtual key or no token is refused as `/metrics` refuses it.
async fn operator_only(_operator: Operator, request: Request, next: Next) -> Response {
    next.run(request).await
}
