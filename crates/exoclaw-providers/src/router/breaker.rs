//! A circuit breaker per provider: closed → open after N consecutive failures → half-open after a
//! cool-down, admitting exactly one probe → closed on the probe's success, open again on its
//! failure.
//!
//! The state sits in atomics, so the hot path (is this provider admitted?) reads it without a lock;
//! only the last error's text, written on failure, is behind a mutex.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Failures in a row that open the breaker, by default.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// How long an open breaker waits before admitting a probe, by default.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What a breaker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// The provider is skipped until the cool-down ends.
    Open,
    /// One probe request is in flight; everyone else skips the provider.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Whether a request may go to the provider.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes, normally.
    Admitted,
    /// Yes, as the single probe of a half-open breaker.
    Probe,
    /// No: the breaker is open (or a probe is already in flight).
    Rejected {
        /// Time left until a probe is admitted (zero while a probe is in flight).
        retry_in: Duration,
    },
}

/// One provider's breaker.
#[derive(Debug)]
pub struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    /// When the breaker last opened, in milliseconds since `base`.
    opened_at_ms: AtomicU64,
    base: Instant,
    threshold: u32,
    cool_down: Duration,
    last_error: Mutex<Option<String>>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` failures in a row and probes after `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            base: Instant::now(),
            threshold: threshold.max(1),
            cool_down,
            last_error: Mutex::new(None),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Acquire)
    }

    /// The last failure's message.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Asks to send a request. An open breaker whose cool-down is over admits exactly one caller
    /// as its probe; that caller must report [`Breaker::success`] or [`Breaker::failure`] (or
    /// [`Breaker::abandon`] if it never got an answer).
    pub fn admit(&self) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Admitted,
            HALF_OPEN => Admission::Rejected { retry_in: Duration::ZERO },
            _ => {
                let open_for = Duration::from_millis(
                    self.now_ms().saturating_sub(self.opened_at_ms.load(Ordering::Acquire)),
                );
                if open_for < self.cool_down {
                    return Admission::Rejected { retry_in: self.cool_down - open_for };
                }
                match self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => Admission::Probe,
                    Err(CLOSED) => Admission::Admitted,
                    Err(_) => Admission::Rejected { retry_in: Duration::ZERO },
                }
            }
        }
    }

    /// The provider answered: the breaker closes and the failure count resets.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.state.store(CLOSED, Ordering::Release);
    }

    /// The provider failed with `error`. A failed probe reopens the breaker for another
    /// cool-down; the threshold-th failure in a row opens a closed one.
    pub fn failure(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_owned());
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let state = self.state.load(Ordering::Acquire);
        if state == HALF_OPEN || (state == CLOSED && failures >= self.threshold) {
            self.opened_at_ms.store(self.now_ms(), Ordering::Release);
            self.state.store(OPEN, Ordering::Release);
        }
    }

    /// A probe ended without an answer either way (the caller gave up): the breaker goes back to
    /// open with its cool-down already over, so the next caller probes.
    pub fn abandon(&self) {
        let _ = self.state.compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(DEFAULT_FAILURE_THRESHOLD, DEFAULT_COOL_DOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_admits_exactly_one_probe_after_the_cool_down() {
        let breaker = Breaker::new(3, Duration::from_secs(30));
        breaker.failure("500");
        breaker.failure("500");
        assert_eq!(breaker.admit(), Admission::Admitted, "two failures keep it closed");
        breaker.failure("503 overloaded");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.last_error().as_deref(), Some("503 overloaded"));
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));

        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        for _ in 0..10 {
            assert!(matches!(breaker.admit(), Admission::Rejected { .. }), "only one probe");
        }
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.failures(), 0);
        assert_eq!(breaker.admit(), Admission::Admitted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_whole_cool_down() {
        let breaker = Breaker::new(1, Duration::from_secs(10));
        breaker.failure("connect refused");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.failure("still refused");
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_caller_probe() {
        let breaker = Breaker::new(1, Duration::from_secs(5));
        breaker.failure("timeout");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(breaker.admit(), Admission::Probe);
        breaker.abandon();
        assert_eq!(breaker.admit(), Admission::Probe);
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let breaker = Breaker::new(3, Duration::from_secs(30));
        breaker.failure("a");
        breaker.failure("b");
        breaker.success();
        breaker.failure("c");
        breaker.failure("d");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
