//! Anthropic provider (being written).

/// Placeholder until the provider lands.
#[derive(Debug)]
pub struct Anthropic;
