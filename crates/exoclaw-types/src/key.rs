//! Virtual API keys: what the gateway knows about a key it handed out. The key itself is shown
//! once, when it is made, and never stored; only its SHA-256 is.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A virtual key as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKey {
    /// Its id (a UUID).
    pub id: String,
    /// The name it was given (unique among keys that are not revoked).
    pub name: String,
    /// The key's first characters (`exo-1a2b…`), to tell keys apart; not enough to use it.
    pub prefix: String,
    /// Models it may use: exact names or `*` patterns (`anthropic/*`). Empty: every model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Most US dollars it may spend in all, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Dollars spent so far.
    pub spent_usd: f64,
    /// Most requests per minute, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether `model` is on the key's allow-list (an empty list allows every model).
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|pattern| glob_match(pattern, model))
    }
}

/// Whether `text` matches `pattern` as a whole, where `*` matches any run of characters (including
/// `/`) and everything else matches itself: model allow-lists, tool-name patterns.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return pattern == text };
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(models: &[&str]) -> ApiKey {
        ApiKey {
            id: "k".into(),
            name: "n".into(),
            prefix: "exo-".into(),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            budget_usd: None,
            spent_usd: 0.0,
            rpm: None,
            created_at: Utc::now(),
            revoked_at: None,
        }
    }

    #[test]
    fn allow_lists_match_exact_names_and_patterns() {
        assert!(key(&[]).allows("anything/at-all"));
        let k = key(&["fast", "anthropic/*", "*-mini"]);
        assert!(k.allows("fast"));
        assert!(k.allows("anthropic/claude-haiku-4-5"));
        assert!(k.allows("openai/gpt-4o-mini"));
        assert!(!k.allows("openai/gpt-4o"));
        assert!(!k.allows("fast2"));
        assert!(key(&["a*b*c"]).allows("a-b-c"));
        assert!(!key(&["a*b*c"]).allows("a-c-b"));
    }
}
