//! Pieces every vendor's wire format shares: decoding errors, the stream-decoder trait, tool-call
//! argument parsing, and reading the vendor's "come back later" headers.

use exoclaw_core::ErrorKind;
use exoclaw_types::{StreamEvent, ToolCall};
use http::header::HeaderMap;
use serde_json::Value;
use std::time::Duration;

/// A failure found while decoding a vendor's answer, before the provider's name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub kind: ErrorKind,
    pub message: String,
}

impl WireError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    /// A JSON payload that does not parse: says what was expected and shows the start of the text.
    pub fn bad_json(what: &str, text: &str, err: &serde_json::Error) -> Self {
        Self::protocol(format!("malformed {what}: {err}; got `{}`", preview(text)))
    }
}

/// A token count as a vendor reports it: a whole number, or `None` for anything else (`null`, a
/// string, a negative number, an object). Usage never fails an answer: an odd count is dropped,
/// not an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub Option<u64>);

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
                // Whole, non-negative and below 2^53: the counts a float can carry exactly.
                let whole = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 9_007_199_254_740_992.0;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Count(whole.then_some(v as u64)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Count, D::Error> {
                <Count as serde::Deserialize>::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// The first 200 characters of `text`, for error messages.
pub(crate) fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// An embeddings answer must hold one vector per input.
pub(crate) fn check_vector_count(got: usize, expected: usize) -> Result<(), WireError> {
    if got == expected {
        return Ok(());
    }
    Err(WireError::protocol(format!("the embeddings answer has {got} vectors for {expected} inputs")))
}

/// A protocol error about an unexpected payload, showing its start.
pub(crate) fn unexpected(what: &str, text: &str) -> WireError {
    WireError::protocol(format!("unexpected {what}: `{}`", preview(text)))
}

/// Turns one vendor's SSE events into [`StreamEvent`]s.
pub(crate) trait StreamDecoder: Send + 'static {
    /// Decodes one SSE event, pushing what it means onto `out`.
    fn event(&mut self, event: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), WireError>;

    /// Whether the vendor's end-of-answer marker has been seen; the connection is then released.
    fn is_done(&self) -> bool;

    /// The body ended. Emits what was held back, or fails if the answer was cut short.
    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), WireError>;
}

/// Parses a tool call's accumulated argument text. Empty text means "no arguments" (`{}`); text
/// that is not JSON is kept verbatim as a JSON string so the tool layer can tell the model.
pub(crate) fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// The events of one tool call that arrived whole (non-streaming answers, Gemini).
pub(crate) fn whole_tool_call(
    index: u32,
    id: String,
    name: String,
    arguments: Value,
    out: &mut Vec<StreamEvent>,
) {
    out.push(StreamEvent::ToolCallStart { index, id: id.clone(), name: name.clone() });
    out.push(StreamEvent::ToolCallArgsDelta { index, fragment: arguments.to_string() });
    out.push(StreamEvent::ToolCall { index, call: ToolCall { id, name, arguments } });
}

/// The delay a 429/503 asks for: `retry-after-ms` (OpenAI), then `retry-after` in seconds or as an
/// HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = httpdate(value)?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only HTTP-date form servers must send.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let mut it = value.split_whitespace().skip(1);
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Maps an HTTP status to the error kind it means when the vendor's body says nothing more precise.
pub(crate) fn kind_for_status(status: u16, retry_after: Option<Duration>) -> ErrorKind {
    match status {
        401 => ErrorKind::Auth,
        402 | 403 => ErrorKind::Permission,
        404 => ErrorKind::ModelNotFound,
        408 | 504 => ErrorKind::Timeout,
        413 => ErrorKind::ContextLength,
        429 => ErrorKind::RateLimited { retry_after },
        503 | 529 => ErrorKind::Overloaded,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::InvalidRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_whole_numbers_and_drop_anything_else() {
        let counts: Vec<Count> =
            serde_json::from_str(r#"[9, 12.0, -1, 1.5, "9", null, true, {"n": 1}, [1]]"#).unwrap();
        let expected = [Some(9), Some(12), None, None, None, None, None, None, None];
        assert_eq!(counts.iter().map(|c| c.0).collect::<Vec<_>>(), expected);
    }
    use http::header::HeaderValue;

    #[test]
    fn arguments_parse_or_are_kept_verbatim() {
        assert_eq!(parse_arguments(""), serde_json::json!({}));
        assert_eq!(parse_arguments("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(parse_arguments("{\"a\":"), Value::String("{\"a\":".into()));
    }

    #[test]
    fn retry_after_in_ms_seconds_and_http_date() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        assert_eq!(
            httpdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
    }
}
