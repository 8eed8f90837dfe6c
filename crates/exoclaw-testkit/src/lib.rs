//! Test support for exoclaw — never a runtime dependency.
//!
//! - [`server::ScriptedServer`]: a real HTTP server on loopback that replays scripted replies
//!   (SSE chunks, pauses, aborts, stalls) and records requests;
//! - [`fault::FaultProxy`]: a real HTTP proxy on loopback in front of any upstream that injects a
//!   scripted or seeded-random [`fault::Fault`] per request (error statuses, resets, stalls, cut
//!   bodies, garbage) and otherwise streams the upstream's reply through;
//! - [`flaky::FlakyServer`]: an OpenAI-compatible server failing a share of attempts at random,
//!   reproducibly per request whatever the arrival order;
//! - [`sse`]: builders for event-stream text;
//! - [`provider::ScriptedProvider`]: an in-process provider following a script of outcomes;
//! - [`runtime::ScriptedRuntime`]: an agent runtime over in-process agents, for front-end tests;
//! - [`script`]: a scripted model behind an OpenAI-compatible endpoint, for end-to-end tool loops;
//! - [`fixtures`]: each vendor's wire traffic, written from its published API reference;
//! - [`peers`]: real servers (llama.cpp `llama-server`) obtained by the project's scripts;
//! - [`arcadedb::ArcadeDbServer`]: a real ArcadeDB server per test, from `scripts/peers/arcadedb.sh`;
//! - [`conformance`]: the scenarios every provider must pass, instantiated per provider with
//!   [`conformance_suite!`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod arcadedb;
pub mod conformance;
pub mod discord;
pub mod fault;
pub mod fixtures;
pub mod flaky;
pub mod kadi;
pub mod peers;
pub mod provider;
pub mod runtime;
pub mod script;
pub mod server;
pub mod slack;
pub mod sse;
pub mod telegram;

/// Waits until `probe` gives a value (looking every 20 ms) and returns it; panics naming `what`
/// after 30 s. How a test waits for a fake to have seen something, instead of sleeping.
pub async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "waited 30 s for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
