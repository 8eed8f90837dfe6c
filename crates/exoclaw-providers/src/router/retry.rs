//! Retries: full-jitter exponential backoff (AWS's "full jitter": a uniformly random wait between
//! zero and `min(cap, base · 2^attempt)`), a vendor's `Retry-After` honoured, and an overall deadline
//! per request that no wait may cross.

use std::time::Duration;

/// How a router retries one provider before falling over to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, on the same provider (default 2).
    pub retries: u32,
    /// The first backoff's upper bound (default 200 ms).
    pub base: Duration,
    /// No backoff exceeds this (default 5 s).
    pub cap: Duration,
    /// A vendor's `Retry-After` longer than this is not waited for: the router falls over to the
    /// next provider instead (default 10 s).
    pub max_retry_after: Duration,
    /// All attempts on all providers, before the first event of an answer, end by then
    /// (default 60 s).
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries (each provider is tried once).
    pub fn none() -> Self {
        Self { retries: 0, ..Self::default() }
    }

    /// The wait before retry number `attempt` (0 for the first retry): full jitter, using `unit`
    /// (a uniform random number in `[0, 1)`), or the vendor's `retry_after` when it gave one.
    /// `None` when the vendor asks for longer than [`RetryPolicy::max_retry_after`].
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        if let Some(after) = retry_after {
            return (after <= self.max_retry_after).then_some(after);
        }
        let ceiling = self.base.saturating_mul(2u32.saturating_pow(attempt.min(20))).min(self.cap);
        Some(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(p.backoff(0, None, 0.75), Some(Duration::from_millis(75)));
        assert_eq!(p.backoff(2, None, 0.5), Some(Duration::from_millis(200)));
        assert_eq!(p.backoff(10, None, 0.5), Some(Duration::from_millis(500)), "capped at 1 s");
        assert_eq!(p.backoff(3, None, 0.0), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_honoured_unless_it_is_too_long() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0, Some(Duration::from_secs(2)), 0.1), Some(Duration::from_secs(2)));
        assert_eq!(p.backoff(0, Some(Duration::from_secs(60)), 0.1), None);
    }
}
