//! The wait between tries of a connection a channel keeps (Telegram's long polls, Slack's Socket
//! Mode): from 1 s, doubling to a minute, each wait ±20% at random so that many bots that lost
//! the network together do not all come back at the same instant.

use std::time::Duration;

/// The first wait after a failure.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
pub(crate) const MAX: Duration = Duration::from_secs(60);

/// Waits between tries; [`Backoff::default`] starts again from the first.
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next try, with jitter; the one after is twice as long (up to a minute).
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.next.mul_f64(0.8 + 0.4 * fastrand::f64());
        self.next = (self.next * 2).min(MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_a_minute_with_jitter() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(waits[0] >= Duration::from_millis(800) && waits[0] <= Duration::from_millis(1200));
        assert!(waits[1] >= Duration::from_millis(1600) && waits[1] <= Duration::from_millis(2400));
        assert!(waits.iter().all(|wait| *wait <= MAX.mul_f64(1.2)));
        assert!(waits[9] >= MAX.mul_f64(0.8));
    }
}
