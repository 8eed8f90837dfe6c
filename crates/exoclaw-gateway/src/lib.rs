//! exoclaw's HTTP gateway.
//!
//! This first slice serves an OpenAI-compatible `/v1` API in front of any [`Provider`]
//! (`exoclaw_core::Provider`): `POST /v1/chat/completions` (whole answers and SSE streaming, tool
//! calls included), `GET /v1/models`, and the `GET /healthz` / `GET /readyz` probes. Which provider
//! answers a model name is up to a [`ModelSource`], so the CLI can plug exoclaw's router in;
//! [`StaticModels`] is a fixed table. Access is guarded by bearer tokens kept only as SHA-256
//! hashes ([`TokenSet`]); [`check_bind`] refuses to expose an unguarded gateway beyond loopback.
//!
//! [`Provider`]: exoclaw_core::Provider

mod auth;
mod error;
mod openai;
mod server;

pub use auth::{TokenSet, check_bind, hash_token};
pub use error::GatewayError;
pub use openai::{decode_request, finish_reason};
pub use server::{Gateway, MAX_BODY_BYTES, ModelSource, StaticModels, app, serve};
