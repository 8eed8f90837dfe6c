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
    /// Failed requests (each after its retries) within the breaker's window needed before a
    /// provider's circuit breaker may open. Before the rate rule this was "failures in a row";
    /// the key keeps working as the minimum volume of the rate rule.
    pub breaker_failures: u32,
    /// The share of the window's requests that must have failed for the breaker to open, in
    /// `(0, 1]`.
    #[serde(deserialize_with = "failure_rate")]
    pub breaker_failure_rate: f64,
    /// Seconds of recent requests the breaker judges.
    pub breaker_window_secs: u64,
    /// Seconds an open breaker waits before letting one probe request through.
    pub breaker_cool_down_secs: u64,
}

/// Reads `breaker_failure_rate`, refusing values a rate cannot have.
fn failure_rate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let rate = f64::deserialize(deserializer)?;
    if rate > 0.0 && rate <= 1.0 {
        Ok(rate)
    } else {
        Err(serde::de::Error::custom(format!(
            "breaker_failure_rate must be a share of requests above 0 and at most 1 (0.5 is half), not {rate}"
        )))
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let retry = exoclaw_providers::router::RetryPolicy::default();
        let breaker = exoclaw_providers::router::BreakerPolicy::default();
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
            breaker_failures: breaker.min_failures,
            breaker_failure_rate: breaker.failure_rate,
            breaker_window_secs: breaker.window.as_secs(),
            breaker_cool_down_secs: breaker.cool_down.as_secs(),
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

    /// The circuit-breaker policy these settings describe.
    pub fn breaker_policy(&self) -> exoclaw_providers::router::BreakerPolicy {
        exoclaw_providers::router::BreakerPolicy {
            min_failures: self.breaker_failures.max(1),
            failure_rate: self.breaker_failure_rate,
            window: Duration::from_secs(self.breaker_window_secs.max(1)),
            cool_down: Duration::from_secs(self.breaker_cool_down_secs),
        }
    }

    /// The first-token timeout, when one is set (and positive).
    pub fn first_token_timeout(&self) -> Option<Duration> {
        self.first_token_timeout_secs.filter(|s| *s > 0.0).map(Duration::from_secs_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_breaker_key_keeps_working_as_the_minimum_of_the_rate_rule() {
        let routing: RoutingConfig =
            toml::from_str("breaker_failures = 3\nbreaker_cool_down_secs = 10").unwrap();
        let policy = routing.breaker_policy();
        assert_eq!((policy.min_failures, policy.cool_down), (3, Duration::from_secs(10)));
        assert_eq!(policy.failure_rate, exoclaw_providers::router::DEFAULT_FAILURE_RATE);
        assert_eq!(
            RoutingConfig::default().breaker_policy(),
            exoclaw_providers::router::BreakerPolicy::default()
        );
    }

    #[test]
    fn a_failure_rate_outside_zero_to_one_is_refused_saying_what_it_must_be() {
        let routing: RoutingConfig =
            toml::from_str("breaker_failure_rate = 0.8\nbreaker_window_secs = 10").unwrap();
        assert_eq!(routing.breaker_policy().failure_rate, 0.8);
        assert_eq!(routing.breaker_policy().window, Duration::from_secs(10));
        for bad in ["1.5", "0", "-0.2"] {
            let err = toml::from_str::<RoutingConfig>(&format!("breaker_failure_rate = {bad}")).unwrap_err();
            assert!(err.to_string().contains("at most 1 (0.5 is half)"), "{bad}: {err}");
        }
    }
}
