//! exoclaw's gateway: one server for many clients and chat platforms, in front of the providers.
//!
//! - an OpenAI-compatible `/v1` API ([`openai`](self::openai)'s decoding and encoding):
//!   `POST /v1/chat/completions` (whole answers and SSE streaming, tool calls included),
//!   `POST /v1/embeddings` (`embeddings`: float or base64 vectors from the
//!   [`ModelSource::embedder_for`] embedders) and `GET /v1/models`, for operator tokens and
//!   virtual keys (per-key model allow-list, budget and requests per minute; [`keys`]), every
//!   request's usage settled in the background ([`accounting`]);
//! - the WebSocket JSON-RPC protocol at `/ws` (`docs/protocol.md`), with the [`Agents`], the
//!   [`Bindings`] router and per-session ordering;
//! - `POST /webhook/{channel}` with per-channel verification ([`webhook`]);
//! - `/healthz`, `/readyz` (ready while [`ModelSource::ready`] says so) and Prometheus
//!   `/metrics` ([`metrics`]);
//! - [`serve`]: its own accept loop (`listen`: connection cap, header timeout, keep-alive), and
//!   graceful shutdown with a grace period.
//!
//! In front of every route, as one tower layer (`front`): `guard` (web pages whose `Origin` is
//! not allowed, and on a gateway that needs no token requests addressed to other names than
//! this machine's, are refused: DNS rebinding) and `body` (request bodies held at once, and how
//! long one may take to arrive). Untrusted text reaches log lines only through [`text::Escaped`].
//!
//! Which provider answers a model name is up to a [`ModelSource`] (the CLI plugs exoclaw's router
//! in; [`StaticModels`] is a fixed table). Tokens are kept only as SHA-256 hashes and compared in
//! constant time ([`TokenSet`]); [`check_bind`] refuses to expose an unguarded gateway beyond
//! loopback.

pub mod accounting;
mod auth;
mod body;
mod chat;
mod embeddings;
mod error;
mod front;
mod guard;
pub mod keys;
mod listen;
mod mcp;
pub mod metrics;
mod openai;
mod payer;
pub mod rpc;
mod server;
mod state;
pub mod text;
pub mod webhook;

pub use auth::{TokenSet, check_bind, hash_token};
pub use chat::{Drained, drain};
pub use embeddings::MAX_INPUTS as MAX_EMBEDDING_INPUTS;
pub use error::GatewayError;
pub use exoclaw_core::runtime::{Bindings, DEFAULT_AGENT, MAX_KEY_PART_BYTES, bindings};
pub use mcp::MCP_PATH;
pub use openai::{decode_request, finish_reason};
pub use server::{
    EmbeddingModel, MAX_BODY_BYTES, ModelFailure, ModelSource, NotReady, StaticModels, app, serve,
};
pub use state::{Gateway, GatewayBuilder, KEY_CHECK_INTERVAL, Limits};
