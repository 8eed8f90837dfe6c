//! The state of a channel that keeps a connection to its platform (Discord's Gateway, the KĀDI
//! broker, Slack's Socket Mode, Telegram's long polling), reported as it changes so that the
//! gateway can record it and `exoclaw channels status` — another process — can show whether each
//! channel is connected right now, since when, and what went wrong last.

use exoclaw_core::ChannelHealth;
use std::sync::{Arc, Mutex};

/// Where a channel's connection reports its state.
pub trait ConnectionMonitor: Send + Sync {
    /// The channel's state changed to `state`.
    fn report(&self, state: ChannelHealth);
}

/// A monitor that keeps nothing: a channel's until it is given one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unmonitored;

impl ConnectionMonitor for Unmonitored {
    fn report(&self, _state: ChannelHealth) {}
}

/// One channel's reports: each change of state once (a reconnect loop failing the same way again
/// and again reports it once).
pub(crate) struct Reporter {
    channel: &'static str,
    monitor: Arc<dyn ConnectionMonitor>,
    /// What was last reported: connected, and the error.
    last: Mutex<Option<(bool, Option<String>)>>,
}

impl Reporter {
    /// Reports for `channel` to `monitor`.
    pub(crate) fn new(channel: &'static str, monitor: Arc<dyn ConnectionMonitor>) -> Self {
        Self { channel, monitor, last: Mutex::new(None) }
    }

    /// The channel is connected.
    pub(crate) fn connected(&self) {
        self.report(true, None);
    }

    /// The channel is not connected, because of `error`.
    pub(crate) fn disconnected(&self, error: impl Into<String>) {
        self.report(false, Some(error.into()));
    }

    fn report(&self, connected: bool, error: Option<String>) {
        let state = (connected, error);
        {
            let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.as_ref() == Some(&state) {
                return;
            }
            *last = Some(state.clone());
        }
        let (connected, error) = state;
        self.monitor.report(ChannelHealth {
            channel: self.channel.to_owned(),
            connected,
            since: chrono::Utc::now(),
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Kept(Mutex<Vec<(bool, Option<String>)>>);

    impl ConnectionMonitor for Kept {
        fn report(&self, state: ChannelHealth) {
            self.0.lock().unwrap().push((state.connected, state.error));
        }
    }

    #[test]
    fn each_change_is_reported_once() {
        let kept = Arc::new(Kept::default());
        let reporter = Reporter::new("kadi", Arc::clone(&kept) as Arc<dyn ConnectionMonitor>);
        reporter.disconnected("refused");
        reporter.disconnected("refused");
        reporter.connected();
        reporter.connected();
        reporter.disconnected("dropped");
        let refused = Some("refused".to_owned());
        let dropped = Some("dropped".to_owned());
        assert_eq!(*kept.0.lock().unwrap(), [(false, refused), (true, None), (false, dropped)]);
    }
}
