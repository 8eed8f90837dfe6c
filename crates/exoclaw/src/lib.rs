//! exoclaw as a library: what every front end (the CLI, a gateway, an embedding program) needs to
//! go from "the user's machine" to "a model to talk to".
//!
//! - [`config`]: the [`Config`] from `config.toml`, `.env` and `EXOCLAW_*` variables, with errors
//!   that name file, line and column; the commented template; a redacted view for printing.
//! - [`models`]: which model to use ([`Config::resolve_model`]) and opening its provider instance
//!   ([`open_provider`]).
//! - [`embedders`]: the embedding API of a provider instance ([`embedders::open_embedder`],
//!   [`embedders::Embedders`]), for `NAME/model` embedding models.
//! - [`routing`]: where a model name goes ([`Config::route_chain`]): its route and fallbacks from
//!   `[routing]`.
//! - [`runtime`]: the [`Runtime`] every front end submits turns to: one lazily opened router
//!   (retries, circuit breakers), the agents, tools, sessions, budgets, hooks and durable runs.
//! - [`structured`]: a structured answer read as JSON and checked against its schema.
//!
//! The crates underneath are re-exported, so one dependency on `exoclaw` is enough:
//! [`exoclaw_core`] (the `Provider` and `Tool` traits, the agent loop), [`exoclaw_types`] (messages,
//! requests, events), [`exoclaw_providers`] (the cloud APIs), [`exoclaw_local`] (the embedded
//! model), [`exoclaw_memory`] (layered memory) and [`exoclaw_store`] (SQLite and PostgreSQL).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = exoclaw::Config::load(None)?;
//! let resolved = loaded.config.resolve_model(None)?;
//! let provider = exoclaw::open_provider(&resolved, &loaded.config, &mut |_done, _total| {}).await?;
//! # let _ = provider; Ok(()) }
//! ```

pub mod config;
pub mod embedders;
pub mod models;
pub mod routing;
pub mod runtime;
pub mod structured;

pub use config::{Config, ConfigError, LoadedConfig, ModelChoice, ProviderConfig, ProviderKind};
pub use models::{OpenError, ResolvedModel, open_provider};
pub use runtime::{AgentSpec, Runtime, RuntimeBuilder, RuntimeError};

pub use exoclaw_core;
pub use exoclaw_local;
pub use exoclaw_mcp;
pub use exoclaw_memory;
pub use exoclaw_providers;
pub use exoclaw_store;
pub use exoclaw_tools;
pub use exoclaw_types;
