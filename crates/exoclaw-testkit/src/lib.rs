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
