//! A channel's circuit breaker for its platform's API: 5 failed calls within a minute open it, and
//! while it is open answers are not attempted (each fails at once, saying why) instead of piling
//! retries on a platform that is down; after 30 s one call is let through as a probe, and its
//! success closes the breaker again (its failure opens it for another 30 s). Sans-IO: the caller
//! says what time it is.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures within [`WINDOW`] that open the breaker.
pub const THRESHOLD: usize = 5;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long the breaker stays open before a probe.
pub const OPEN_FOR: Duration = Duration::from_secs(30);

/// The breaker of one channel.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: VecDeque<Instant>,
    open_until: Option<Instant>,
    probing: bool,
}

/// The breaker is open: the platform is failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the platform's API failed {THRESHOLD} times within a minute; answers are paused for {}s before a retry", .0.as_secs())]
pub struct Open(pub Duration);

impl Breaker {
    /// Whether a call may go now: `Ok` when closed, or as the one probe when its time came.
    pub fn allow(&self, now: Instant) -> Result<(), Open> {
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        match state.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(Open(until - now)),
            Some(_) if state.probing => Err(Open(OPEN_FOR)),
            Some(_) => {
                state.probing = true;
                Ok(())
            }
        }
    }

    /// Records how a call that was allowed went.
    pub fn record(&self, now: Instant, succeeded: bool) {
        let Ok(mut state) = self.state.lock() else { return };
        if succeeded {
            if state.open_until.is_some() {
                tracing::info!("a channel's platform API answers again; its breaker is closed");
            }
            *state = State::default();
            return;
        }
        if state.probing {
            state.probing = false;
            state.open_until = Some(now + OPEN_FOR);
            return;
        }
        state.failures.push_back(now);
        while state.failures.front().is_some_and(|&t| now.duration_since(t) > WINDOW) {
            state.failures.pop_front();
        }
        if state.failures.len() >= THRESHOLD && state.open_until.is_none() {
            tracing::warn!(
                "a channel's platform API failed {THRESHOLD} times within a minute; pausing answers for 30 s"
            );
            state.open_until = Some(now + OPEN_FOR);
            state.failures.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_a_minute_open_it_and_a_successful_probe_closes_it() {
        let breaker = Breaker::default();
        let start = Instant::now();
        for i in 0..4 {
            breaker.allow(start).unwrap();
            breaker.record(start + Duration::from_secs(i), false);
        }
        breaker.allow(start + Duration::from_secs(5)).unwrap();
        breaker.record(start + Duration::from_secs(5), false);
        let open = breaker.allow(start + Duration::from_secs(6)).unwrap_err();
        assert_eq!(open, Open(Duration::from_secs(29)));
        // After 30 s one probe goes, and only one.
        let later = start + Duration::from_secs(36);
        breaker.allow(later).unwrap();
        assert!(breaker.allow(later).is_err());
        breaker.record(later, true);
        breaker.allow(later).unwrap();
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_open_it() {
        let breaker = Breaker::default();
        let start = Instant::now();
        for i in 0..10 {
            let at = start + Duration::from_secs(20 * i);
            breaker.allow(at).unwrap();
            breaker.record(at, false);
        }
        breaker.allow(start + Duration::from_secs(200)).unwrap();
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let breaker = Breaker::default();
        let start = Instant::now();
        for _ in 0..THRESHOLD {
            breaker.record(start, false);
        }
        let probe = start + OPEN_FOR;
        breaker.allow(probe).unwrap();
        breaker.record(probe, false);
        assert!(breaker.allow(probe + Duration::from_secs(1)).is_err());
        breaker.allow(probe + OPEN_FOR).unwrap();
    }
}
