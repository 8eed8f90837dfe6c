//! exoclaw-tools' integration tests, in one binary: each tool against a temporary workspace (and,
//! for http_fetch, a real HTTP server on loopback), through the object-safe `Tool` trait as a run
//! calls it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod suite;
