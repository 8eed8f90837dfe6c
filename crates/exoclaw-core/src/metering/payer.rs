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

/// What one model call holds before it is made: its reservation against the budgets and, when
/// someone pays for it besides them, that payer's hold. Dropped unsettled (the call never reached
/// the model), both are released at zero.
pub(crate) struct HeldCall<'a> {
    reservation: super::Reservation,
    paid: Option<PaidCall<'a>>,
}

impl<'a> HeldCall<'a> {
    /// Holds `estimate` against the budgets of `scope`, then with `payer` (asked only once the
    /// budgets agreed, as `priced_as`). A refusal gives its code and why.
    pub(crate) fn take(
        metering: &super::Metering,
        scope: &super::CallScope<'_>,
        payer: Option<&'a dyn Payer>,
        priced_as: &str,
        estimate: Estimate,
    ) -> Result<Self, (ErrorCode, String)> {
        let reservation = metering.budgets.reserve(scope, estimate).map_err(|e| (e.code(), e.to_string()))?;
        let paid = match payer {
            None => None,
            Some(payer) => {
                let hold = payer.reserve(priced_as, estimate).map_err(|r| (r.code, r.message))?;
                Some(PaidCall::new(payer, hold))
            }
        };
        Ok(Self { reservation, paid })
    }

    /// The call used `usage` (counts filled in) and cost `cost_usd`: settles both holds with it.
    pub(crate) fn settle(self, usage: &exoclaw_types::Usage, cost_usd: Option<f64>) {
        let tokens = usage.input_tokens.unwrap_or(0).saturating_add(usage.output_tokens.unwrap_or(0));
        self.reservation.settle(tokens, cost_usd);
        if let Some(paid) = self.paid {
            paid.settle(cost_usd);
        }
    }
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
