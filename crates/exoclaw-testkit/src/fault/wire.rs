//! What the proxy writes itself: OpenAI-style error bodies, HTTP dates for `Retry-After`, and the
//! garbage body.

use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// The body of [`Fault::Garbage`](super::Fault::Garbage): an HTML error page as a misconfigured
/// gateway would send, then bytes that are not UTF-8 and a truncated JSON object — no `data:` line,
/// nothing an SSE or JSON parser can accept.
pub const GARBAGE: &[u8] =
    b"<html><body><h1>502 Bad Gateway</h1></body></html>\r\n\xff\xfe\x00\x9f{\"choices\": [{\"delta\"\n\n";

/// OpenAI's error body for `status`, with the messages and types its API sends (429: `requests` /
/// `rate_limit_exceeded`; 503: overloaded; other 5xx: `server_error`; else
/// `invalid_request_error`).
pub fn error_body(status: u16) -> Value {
    let (message, kind, code) = match status {
        429 => (
            "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.",
            "requests",
            json!("rate_limit_exceeded"),
        ),
        503 => ("The engine is currently overloaded, please try again later.", "server_error", Value::Null),
        500..=599 => ("The server had an error while processing your request.", "server_error", Value::Null),
        _ => ("Injected error.", "invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// `at` as an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`; times before
/// 1970 are written as the epoch.
pub fn http_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (hour, minute, second) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (year, month, day) = civil_from_days(days);
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        [(month - 1) as usize];
    format!("{weekday}, {day:02} {month} {year} {hour:02}:{minute:02}:{second:02} GMT")
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn http_dates_match_known_instants() {
        // RFC 9110's own example.
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        // A leap day and the last second of a century leap year.
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(at(978_307_199)), "Sun, 31 Dec 2000 23:59:59 GMT");
        assert_eq!(http_date(UNIX_EPOCH - Duration::from_secs(5)), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn garbage_is_neither_utf8_nor_sse_nor_json() {
        assert!(String::from_utf8(GARBAGE.to_vec()).is_err());
        assert!(!GARBAGE.split(|b| *b == b'\n').any(|line| line.starts_with(b"data:")));
        assert!(serde_json::from_slice::<Value>(GARBAGE).is_err());
    }

    #[test]
    fn error_bodies_have_openai_shape() {
        for status in [400, 429, 500, 502, 503] {
            let body = error_body(status);
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
            assert!(body["error"]["type"].is_string(), "{body}");
        }
        assert_eq!(error_body(429)["error"]["code"], "rate_limit_exceeded");
    }
}
