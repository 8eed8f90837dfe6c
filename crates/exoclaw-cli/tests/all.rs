//! The `exoclaw` binary, driven as a user would: one test binary, the scenarios in `suite/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod suite;
