//! exoclaw's core: the traits every other crate plugs into, and the logic that needs no IO.
//!
//! This first slice holds the [`Provider`] trait through which every part of exoclaw talks to
//! models, the typed [`ProviderError`] with its retry and recovery policy, and the
//! [`ResponseAssembler`] that turns a stream of events into a whole answer.

mod assemble;
mod error;
mod provider;

pub use assemble::{ResponseAssembler, collect_response};
pub use error::{ErrorKind, ProviderError, Recovery};
pub use provider::{Capabilities, EventStream, ModelInfo, Provider};
