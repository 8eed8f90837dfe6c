//! exoclaw's wire and domain types.
//!
//! Everything that crosses a crate or process boundary is defined here: conversation messages and
//! their parts, tool specifications, the provider-neutral [`ChatRequest`], the [`StreamEvent`]s a
//! provider streams back, and token [`Usage`]. The crate does no IO; every type round-trips through
//! serde and has a JSON schema (schemars) so other languages can speak the same wire format.

mod agent;
mod binding;
mod embedding;
mod error_code;
mod key;
mod message;
mod model;
mod request;
mod stream;

pub use agent::{
    AgentEvent, CallPurpose, SessionId, SessionInfo, SessionKey, ToolEffect, TurnOutcome, UsageRecord,
};
pub use binding::{Binding, Inbound};
pub use embedding::{EmbeddingRequest, Embeddings};
pub use error_code::{ErrorCode, UnknownErrorCode};
pub use key::{ApiKey, glob_match};
pub use message::{ImageSource, Message, MessageId, Part, Role, ToolCall, ToolResult};
pub use model::{ModelId, ModelRef, ModelRefError};
pub use request::{ChatRequest, GenerationParams, JsonSchemaFormat, ResponseFormat, ToolChoice, ToolSpec};
pub use stream::{ChatResponse, StopReason, StreamEvent, Usage};
