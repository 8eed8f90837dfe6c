//! `[routing]`: aliases, pattern rules and fallback chains for the provider router, and its
//! retry, breaker and health-check settings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One pattern rule: models matching `pattern` go to `provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// A glob over model names (`claude-*`).
    pub pattern: String,
    /// The provider instance.
    pub provider: String,
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Short names for models: `fast = "anthropic/claude-haiku-4-5"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
    /// Pattern rules, first match wins: `[[routing.rules]] pattern = "claude-*", provider = "anthropic"`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
    /// Fallback chains, keyed by alias, `provider/model` or rule pattern:
    /// `"claude-*" = ["openai/gpt-4o-mini", "local/smollm2"]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Retries on the same provider before falling over.
    pub retries: u32,
    /// Upper bound of the first backoff, in milliseconds (full jitter, doubling per retry).
    pub retry_base_ms: u64,
    /// No backoff is longer, in milliseconds.
    pub retry_cap_ms: u64,
    /// A vendor's Retry-After longer than this (seconds) sends the request to the fallback instead.
    pub max_retry_after_secs: u64,
    /// All attempts before an answer begins end within this many seconds.
    pub deadline_secs: u64,
    /// A provider that has not begun answering within this many seconds is given up on (and the
    /// fallback asked). Unset: each provider's own first-byte timeout (120 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token_timeout_secs: Option<f64>,
    /// Consecutive failures that open a provider's circuit breaker.
    pub breaker_failures: u32,
    /// Seconds an open breaker waits before letting one probe request through.
    pub breaker_cool_down_secs: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let retry = exoclaw_providers::router::RetryPolicy::default();
        Self {
            aliases: BTreeMap::new(),
            rules: Vec::new(),
            fallbacks: BTreeMap::new(),
            retries: retry.retries,
            retry_base_ms: millis(retry.base),
            retry_cap_ms: millis(retry.cap),
            max_retry_after_secs: retry.max_retry_after.as_secs(),
            deadline_secs: retry.deadline.as_secs(),
            first_token_timeout_secs: None,
            breaker_failures: exoclaw_providers::router::DEFAULT_FAILURE_THRESHOLD,
            breaker_cool_down_secs: exoclaw_providers::router::DEFAULT_COOL_DOWN.as_secs(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RoutingConfig {
    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> exoclaw_providers::router::RetryPolicy {
        exoclaw_providers::router::RetryPolicy {
            retries: self.retries,
            base: Duration::from_millis(self.retry_base_ms),
            cap: Duration::from_millis(self.retry_cap_ms),
            max_retry_after: Duration::from_secs(self.max_retry_after_secs),
            deadline: Duration::from_secs(self.deadline_secs.max(1)),
        }
    }

    /// The first-token timeout, when one is set (and positive).
    pub fn first_token_timeout(&self) -> Option<Duration> {
        self.first_token_timeout_secs.filter(|s| *s > 0.0).map(Duration::from_secs_f64)
    }
}
