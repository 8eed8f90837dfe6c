//! Model names from callers, checked before they reach a vendor.
//!
//! A model name is caller-supplied text: a virtual key allowed `gem/*` lets its holder write
//! anything after the slash. Where a provider puts the name in the request body (Anthropic, the
//! OpenAI-compatible family) JSON encoding keeps it inert, so only names no vendor could know are
//! refused: empty, over-long, or holding control characters (which would otherwise reach log
//! lines and terminals). Where a provider puts the name in the URL path (Gemini's
//! `models/{model}:generateContent`), the name must also be one path segment: `/` is refused (a
//! percent-encoded `%2F` is decoded back into a separator by some proxies), so are the dot
//! segments `.` and `..`, and everything outside RFC 3986's unreserved characters is
//! percent-encoded, so `?`, `#`, `&` and `:` can never start a query, a fragment or another method.
//!
//! A refusal is [`ErrorKind::InvalidRequest`]: the request itself is at fault, so the router
//! neither retries it, nor sends it to a fallback, nor counts it against the provider's breaker.

use exoclaw_core::{ErrorKind, ProviderError};

/// Longer names are refused: no vendor's model name comes near this, and a path or log line
/// should not carry kilobytes of caller text.
const MAX_LEN: usize = 1024;

/// How much of a refused name its error message quotes.
const QUOTED_CHARS: usize = 80;

/// Checks a name that travels in the request body: not empty, not over-long, no control
/// characters.
pub(crate) fn check(provider: &str, model: &str) -> Result<(), ProviderError> {
    let why = if model.is_empty() {
        "it is empty"
    } else if model.len() > MAX_LEN {
        "it is longer than 1024 bytes"
    } else if model.chars().any(char::is_control) {
        "it holds control characters"
    } else {
        return Ok(());
    };
    Err(refused(provider, model, why))
}

/// A name that goes into a URL path as one segment, checked ([`check`], and no `/`, `.` or `..`)
/// and percent-encoded.
pub(crate) fn path_segment(provider: &str, model: &str) -> Result<String, ProviderError> {
    check(provider, model)?;
    let why = if model.contains('/') {
        "it holds a `/`, and the name is one segment of the request's URL path"
    } else if model == "." || model == ".." {
        "it is a relative path segment"
    } else {
        return Ok(percent_encode(model));
    };
    Err(refused(provider, model, why))
}

/// Percent-encodes `value` for a URL path segment or a query-parameter value: every byte outside
/// RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
pub(crate) fn percent_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// The refusal, quoting the name with its control characters escaped (the message reaches logs
/// and terminals) and cut short when long.
fn refused(provider: &str, model: &str, why: &str) -> ProviderError {
    let mut quoted: String = model.chars().take(QUOTED_CHARS).flat_map(char::escape_debug).collect();
    if model.chars().nth(QUOTED_CHARS).is_some() {
        quoted.push('…');
    }
    ProviderError::new(
        ErrorKind::InvalidRequest,
        provider,
        format!("the model name \"{quoted}\" cannot be sent to `{provider}`: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_and_are_encoded_only_where_needed() {
        for name in ["gemini-2.5-flash", "gpt-4o-mini", "claude-sonnet-4-5", "llama3.2:3b", "org/model"] {
            check("p", name).unwrap();
        }
        assert_eq!(path_segment("p", "gemini-2.5-flash").unwrap(), "gemini-2.5-flash");
        assert_eq!(path_segment("p", "tuned~v1_a").unwrap(), "tuned~v1_a");
    }

    #[test]
    fn query_fragment_and_method_characters_are_encoded_in_a_path() {
        assert_eq!(
            path_segment("gem", "x?alt=sse&key=ATTACKER#").unwrap(),
            "x%3Falt%3Dsse%26key%3DATTACKER%23"
        );
        assert_eq!(path_segment("gem", "x:streamGenerateContent").unwrap(), "x%3AstreamGenerateContent");
        assert_eq!(path_segment("gem", "a b%2F\\é").unwrap(), "a%20b%252F%5C%C3%A9");
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }

    #[test]
    fn hostile_names_are_refused_as_invalid_requests_saying_why() {
        for (name, why) in [
            ("", "empty"),
            ("../../../evil", "`/`"),
            ("x/../../evil", "`/`"),
            ("..", "relative path segment"),
            (".", "relative path segment"),
            ("x\r\nHost: evil", "control characters"),
            ("x\u{1b}[31m", "control characters"),
        ] {
            let err = path_segment("gem", name).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{name:?}");
            assert_eq!(err.provider, "gem");
            assert!(err.message.contains(why), "{name:?}: {}", err.message);
            assert!(!err.message.contains('\r') && !err.message.contains('\u{1b}'), "{}", err.message);
        }
        let err = path_segment("gem", "x\u{1b}[31m").unwrap_err();
        assert!(err.message.contains(r#""x\u{1b}[31m""#), "the name, escaped: {}", err.message);
        let long = "m".repeat(2000);
        let err = check("openai", &long).unwrap_err();
        assert!(err.message.contains("longer than 1024") && err.message.contains("m…\""), "{}", err.message);
        assert!(err.message.len() < 300, "the message quotes only the start: {}", err.message);
    }

    #[test]
    fn body_names_may_hold_slashes_and_punctuation() {
        // OpenRouter (`anthropic/claude-3.5-sonnet`), Ollama (`hf.co/user/repo:Q4_K_M`): the body
        // carries them as JSON strings, so only empty and control characters are refused.
        check("ollama", "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M").unwrap();
        check("openrouter", "x?alt=sse&key=ATTACKER#/../..").unwrap();
        assert_eq!(check("ollama", "").unwrap_err().kind, ErrorKind::InvalidRequest);
        assert_eq!(check("ollama", "a\u{0}b").unwrap_err().kind, ErrorKind::InvalidRequest);
    }
}
