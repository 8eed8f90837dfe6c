//! Gemini provider (being written).

/// Placeholder until the provider lands.
#[derive(Debug)]
pub struct Gemini;
