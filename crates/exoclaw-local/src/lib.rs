//! exoclaw's embedded local model: GGUF models of the llama family running in-process on candle,
//! so `exoclaw chat` answers on a fresh machine with no API key and no model server.
//!
//! - [`fetch`]: finding the model: explicit path, cache, or a verified download;
//! - [`catalog`]: which GGUF a model name means, and the GGUFs in the cache;
//! - [`gguf`]: reading GGUF metadata;
//! - [`weights`]: the transformer weights by architecture (re-quantising types without fast CPU
//!   kernels);
//! - [`tokenizer`]: the BPE and SentencePiece-style tokenizers rebuilt from GGUF metadata;
//! - [`template`]: the chat template from GGUF metadata, rendered with minijinja;
//! - [`embedding`]: [`LocalEmbedder`], sentence embeddings (all-MiniLM-L6-v2) computed in-process.

pub mod catalog;
mod dense;
pub mod embedding;
mod engine;
mod error;
mod fast_math;
pub mod fetch;
pub mod gguf;
pub mod guide;
mod kernels;
mod provider;
pub mod repetition;
mod sampling;
mod stop;
pub mod template;
pub mod tokenizer;
mod toktrie_env;
mod tool_calls;
pub mod transformer;
pub mod weights;

pub use embedding::{LocalEmbedder, LocalEmbedderOptions};
pub use engine::{Finished, GenerateOptions, Generated, LocalModel};
pub use error::LocalError;
pub use provider::{LocalOptions, LocalProvider};
pub use sampling::SamplingOptions;
