//! exoclaw-store on real databases: SQLite files in temporary directories, and the PostgreSQL
//! server the machine runs (see `suite/postgres.rs`). One scenario suite, run on both.

// Test helpers outside `#[test]` functions: failing loudly is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod suite;
