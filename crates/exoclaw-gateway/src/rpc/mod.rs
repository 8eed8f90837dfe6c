//! The WebSocket JSON-RPC 2.0 protocol at `GET /ws` (specified for client authors in
//! `docs/protocol.md`, with `docs/protocol.schema.json` generated from [`protocol`]).
//!
//! - [`frame`]: reading a request from a message, writing responses and notifications;
//! - [`error`]: the error codes, standard and exoclaw's, each with a stable name;
//! - [`method`]: the methods as an enum, each with who may call it;
//! - [`protocol`]: every method's params and result, and the schema;
//! - `connection`: the upgrade (optional bearer header, the cap on unauthenticated connections;
//!   browsers' `Origin` is checked for every route by `crate::guard`), then one task per
//!   connection: limits (size, rate, idle), the caller re-checked per request, dispatch on the
//!   [`Method`], the events of its turns, shutdown;
//! - `methods`: the methods other than `chat.*` (which live in [`crate::chat`]) and `memory.*`;
//! - `memory`: the `memory.*` methods, over the runtime's layered memory.

mod connection;
pub mod error;
pub(crate) mod frame;
mod memory;
pub mod method;
mod methods;
pub mod protocol;

use crate::Gateway;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;

pub use error::{Code, RpcError};
pub use method::{Access, Method};

/// The `/ws` route, to merge into the gateway's app (its state is the `Arc<Gateway>`).
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new().route("/ws", get(connection::upgrade))
}
