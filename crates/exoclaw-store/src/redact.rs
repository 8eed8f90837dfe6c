//! Keeping passwords out of error messages: a database URL is shown with its password replaced by
//! `***`, and any error text that echoes the password has it scrubbed.

use exoclaw_core::StoreError;

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// Shown instead of a secret.
const MASK: &str = "***";

/// The URL as it may be shown: `postgres://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_query(url);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    // The last `@` ends the user info. Passwords may hold unescaped `/`, `?` or `#`, so the first of
    // those is not a safe end; if the `@` is really in the query this masks too much, never too little.
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host_and_more) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:{MASK}{}", &userinfo[..colon], redact_query(host_and_more)),
                None => format!("{userinfo}{}", redact_query(host_and_more)),
            }
        }
        None => redact_query(rest),
    };
    format!("{scheme}{rest}")
}

/// Masks the values of secret query parameters.
fn redact_query(text: &str) -> String {
    let Some(q) = text.find('?') else {
        return text.to_owned();
    };
    let (before, query) = text.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s)) => {
                format!("{key}={MASK}")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{before}{}", params.join("&"))
}

/// The secrets a URL carries, raw and percent-decoded, as they might be echoed back in an error.
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.rfind('@')
            && let Some((_, password)) = rest[..at].split_once(':')
        {
            found.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for param in query.split('&') {
            if let Some((key, value)) = param.split_once('=')
                && SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s))
            {
                found.push(value.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().filter_map(|s| percent_decode(s)).collect();
    found.extend(decoded);
    // Very short secrets would mangle the message wherever those letters occur; error texts from
    // the driver do not echo passwords anyway, so this is only a second line of defence.
    found.retain(|s| s.len() >= 4);
    found
}

/// `text` with every secret from `url` replaced by `***`.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut text = text.to_owned();
    for secret in secrets(url) {
        text = text.replace(&secret, MASK);
    }
    text
}

/// [`StoreError::Open`] for the database at `url`: `message` with `url`'s secrets scrubbed, caused
/// by `source`. The source is kept (for `Error::source` and a report's chain) unless its text or
/// debug form, or those of an error under it, would show a secret; then its scrubbed text joins
/// the message instead, and the driver's error is dropped.
pub(crate) fn open_error(
    message: &str,
    url: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    let message = scrub(message, url);
    let mut shows_secret = false;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&source);
    while let Some(error) = next {
        for text in [error.to_string(), format!("{error:?}")] {
            shows_secret |= scrub(&text, url) != text;
        }
        next = error.source();
    }
    if shows_secret {
        StoreError::open(format!("{message} ({})", scrub(&source.to_string(), url)))
    } else {
        StoreError::open_from(message, source)
    }
}

/// Percent-decoding, when it changes anything and yields UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_in_the_user_info_is_masked() {
        assert_eq!(
            redact_url("postgres://alice:s3cret@db.example:5432/exoclaw"),
            "postgres://alice:***@db.example:5432/exoclaw"
        );
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgresql://localhost/exoclaw?sslmode=disable",
            "sqlite:///var/lib/exoclaw/exoclaw.db",
            "/home/me/.local/share/exoclaw/exoclaw.db",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn passwords_with_slashes_and_at_signs_are_masked_whole() {
        let url = "postgres://bob:pa/ss@w?rd@host/db";
        let shown = redact_url(url);
        assert_eq!(shown, "postgres://bob:***@host/db");
        assert!(!shown.contains("pa/ss"));
    }

    #[test]
    fn password_query_parameters_are_masked() {
        assert_eq!(
            redact_url("postgres://host/db?user=carol&password=hunter22&sslmode=disable"),
            "postgres://host/db?user=carol&password=***&sslmode=disable"
        );
    }

    #[test]
    fn error_text_echoing_the_password_is_scrubbed() {
        let url = "postgres://dave:p%40ssword@host/db";
        let text = scrub("login failed with p@ssword and p%40ssword", url);
        assert_eq!(text, "login failed with *** and ***");
    }
}
