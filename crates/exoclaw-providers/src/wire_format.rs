//! Offline access to each vendor's wire format: build the request body a provider would send, and
//! decode recorded response bytes into [`StreamEvent`]s exactly as a live stream would — for
//! replaying captured traffic in tests, benchmarks and debugging tools.

use crate::transport::Decoding;
use crate::wire::{StreamDecoder, WireError};
use crate::{anthropic, gemini, openai, presets};
use exoclaw_core::ProviderError;
use exoclaw_types::{ChatRequest, StreamEvent};
use serde_json::Value;

/// A vendor API's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Chat Completions (and the compatible family).
    OpenAi,
    /// Google Gemini (Generative Language API).
    Gemini,
}

impl WireFormat {
    /// Every format.
    pub const ALL: [WireFormat; 3] = [WireFormat::Anthropic, WireFormat::OpenAi, WireFormat::Gemini];

    /// The format's name, as used in errors.
    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Anthropic => "anthropic",
            WireFormat::OpenAi => "openai",
            WireFormat::Gemini => "gemini",
        }
    }

    /// The JSON body a provider of this format sends for `request`.
    pub fn encode_request(self, request: &ChatRequest, stream: bool) -> Value {
        match self {
            WireFormat::Anthropic => anthropic::encode_request(request, stream),
            WireFormat::OpenAi => openai::encode_request(request, &presets::OPENAI, stream),
            // Gemini streams by endpoint (`:streamGenerateContent`), not by a body field.
            WireFormat::Gemini => gemini::encode_request(request),
        }
    }

    /// Decodes a recorded SSE body, delivered in `chunks`, into the events a live stream yields.
    /// Events before a failure are discarded; use a live provider to see partial answers.
    ///
    /// The request is not known here, so an Anthropic answer given through the answer tool (its
    /// structured-output fallback) decodes as the tool call it is on the wire, not as text.
    pub fn decode_stream<'a>(
        self,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<StreamEvent>, ProviderError> {
        let result = match self {
            WireFormat::Anthropic => decode_all(anthropic::AnthropicDecoder::default(), chunks),
            WireFormat::OpenAi => decode_all(openai::OpenAiDecoder::default(), chunks),
            WireFormat::Gemini => decode_all(gemini::GeminiDecoder::default(), chunks),
        };
        result.map_err(|wire| ProviderError::new(wire.kind, self.name(), wire.message))
    }

    /// Decodes a whole (non-streamed) answer into the events it amounts to.
    pub fn decode_response(self, body: &Value) -> Result<Vec<StreamEvent>, ProviderError> {
        let result = match self {
            WireFormat::Anthropic => anthropic::decode_response(body),
            WireFormat::OpenAi => openai::decode_response(body),
            WireFormat::Gemini => gemini::decode_response(body),
        };
        result.map_err(|wire| ProviderError::new(wire.kind, self.name(), wire.message))
    }
}

fn decode_all<'a, D: StreamDecoder>(
    decoder: D,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<StreamEvent>, WireError> {
    let mut decoding = Decoding::new(decoder);
    let mut out = Vec::new();
    for chunk in chunks {
        if decoding.feed(chunk, &mut out)? {
            return Ok(out);
        }
    }
    decoding.end(&mut out)?;
    Ok(out)
}
