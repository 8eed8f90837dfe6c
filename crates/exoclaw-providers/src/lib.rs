//! exoclaw's model providers.
//!
//! - [`Anthropic`]: the Messages API.
//! - [`OpenAiCompatible`]: OpenAI Chat Completions and the compatible family, each a [`Preset`]
//!   (data, not a new type): OpenAI, OpenRouter, xAI, Ollama, llama.cpp, any "model manager" gateway.
//! - [`Gemini`]: Google's Generative Language API.
//! - [`Router`]: one provider in front of several — routing, retries, circuit breakers, fallback.
//!
//! All stream over SSE, assemble tool calls whose arguments arrive in fragments, report usage as
//! far as the vendor does (never a made-up 0), and fail with typed [`ProviderError`]s.
//!
//! [`ProviderError`]: exoclaw_core::ProviderError

mod anthropic;
mod gemini;
mod model_name;
mod openai;
mod options;
pub mod presets;
pub mod router;
mod sse;
mod transport;
mod wire;
mod wire_format;

pub use anthropic::Anthropic;
pub use gemini::Gemini;
pub use openai::{EMBEDDING_BATCH, OpenAiCompatible};
pub use options::{ProviderOptions, process_env};
pub use presets::Preset;
pub use router::{Router, RouterBuilder, Routes};
pub use sse::{SseEvent, SseParser};
pub use transport::Timeouts;
pub use wire_format::WireFormat;
