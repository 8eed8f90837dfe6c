//! [`Payer`]: someone besides the runtime's own budgets who pays for one turn's model calls.

use super::Estimate;
use exoclaw_types::ErrorCode;
use std::fmt;

/// Someone besides the runtime's own budgets who pays for a turn's model calls — a gateway's
/// virtual key, say. Given to one turn (`TurnInput::with_payer`), it is asked before each of the
/// turn's model calls, once the runtime's `[budgets]` agreed, and told after the call what it
/// really cost. Because the hold is taken before the call, concurrent turns paying from one
/// purse never overshoot it.
pub trait Payer: Send + Sync + fmt::Debug {
    /// Before a model call priced as `priced_as` (`provider/model`) that may cost up to
    /// `estimate`: hold it, or refuse (the call is not made; the turn ends `Failed` with the
    /// refusal's code and message).
    fn reserve(&self, priced_as: &str, estimate: Estimate) -> Result<Hold, PayerRefusal>;

    /// After the call: give back `hold` and charge `cost_usd` (`None` when the model has no
    /// price). A call that never reached the model settles at zero.
    fn settle(&self, hold: Hold, cost_usd: Option<f64>);
}

/// What a [`Payer`] holds for one call, handed back at [`Payer::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hold {
    /// US dollars held.
    pub usd: f64,
}

/// A [`Payer`]'s refusal of a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PayerRefusal {
    /// The code the turn's `Error` event carries (`budget_exceeded`, `budget_unpriced`).
    pub code: ErrorCode,
    /// What happened and what to do, for the user.
    pub message: String,
}

/// A payer's hold for one call: settled with the call's cost, or at zero when dropped unsettled
/// (the call never reached the model).
pub(crate) struct PaidCall<'a> {
    payer: &'a dyn Payer,
    hold: Option<Hold>,
}

impl<'a> PaidCall<'a> {
    pub(crate) fn new(payer: &'a dyn Payer, hold: Hold) -> Self {
        Self { payer, hold: Some(hold) }
    }

    pub(crate) fn settle(mut self, cost_usd: Option<f64>) {
        if let Some(hold) = self.hold.take() {
            self.payer.settle(hold, cost_usd);
        }
    }
}

impl Drop for PaidCall<'_> {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            self.payer.settle(hold, Some(0.0));
        }
    }
}
