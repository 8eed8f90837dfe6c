//! [`KeyPayer`]: a virtual key paying for the model calls of the agent turns its caller asks for
//! (`chat.send`), by the same books and rules as its `/v1` requests: before each call the runtime
//! asks the key to hold what the call may cost, and the call is not made when that does not fit
//! what the key has left; after the call the key is charged what it really cost. So concurrent
//! turns (and `/v1` requests) of one key never spend past its budget together.

use crate::Gateway;
use crate::accounting::BudgetRefusal;
use exoclaw_core::{Estimate, Hold, Payer, PayerRefusal};
use std::sync::Arc;

/// A virtual key as the payer of one turn's model calls ([`Payer`]): holds against the key's
/// budget in the gateway's key books, refuses with `budget_exceeded` when a call does not fit and
/// with `budget_unpriced` when the key has a budget and the model has no price (never billed as
/// free), and charges what each call cost, to the books at once and to the key store in the
/// gateway's next usage batch.
pub(crate) struct KeyPayer {
    gateway: Arc<Gateway>,
    id: String,
    name: String,
    budget_usd: Option<f64>,
    /// The model as the turn's agent names it, for the refusals.
    model: String,
}

impl std::fmt::Debug for KeyPayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPayer")
            .field("key", &self.name)
            .field("budget_usd", &self.budget_usd)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl KeyPayer {
    /// The key `key` paying for a turn of an agent answering with `model`.
    pub(crate) fn new(gateway: &Arc<Gateway>, key: &exoclaw_types::ApiKey, model: &str) -> Self {
        Self {
            gateway: Arc::clone(gateway),
            id: key.id.clone(),
            name: key.name.clone(),
            budget_usd: key.budget_usd,
            model: model.to_owned(),
        }
    }

    fn refuse(refusal: &BudgetRefusal) -> PayerRefusal {
        PayerRefusal { code: refusal.code(), message: refusal.to_string() }
    }
}

impl Payer for KeyPayer {
    fn reserve(&self, priced_as: &str, estimate: Estimate) -> Result<Hold, PayerRefusal> {
        let Some(budget_usd) = self.budget_usd else {
            return Ok(Hold { usd: 0.0 });
        };
        let Some(usd) = estimate.usd else {
            return Err(Self::refuse(&BudgetRefusal::Unpriced {
                model: self.model.clone(),
                priced_as: priced_as.to_owned(),
                budget: format!("the key `{}`'s budget", self.name),
            }));
        };
        match self.gateway.key_cache.reserve(&self.id, budget_usd, usd) {
            Ok(()) => Ok(Hold { usd }),
            Err(short) if short.spent_usd >= budget_usd => Err(Self::refuse(&BudgetRefusal::KeySpent {
                key: self.name.clone(),
                budget_usd,
                spent_usd: short.spent_usd,
            })),
            Err(short) => Err(Self::refuse(&BudgetRefusal::TurnShort {
                key: self.name.clone(),
                budget_usd,
                spent_usd: short.spent_usd,
                held_usd: short.held_usd,
                call_usd: usd,
            })),
        }
    }

    fn settle(&self, hold: Hold, cost_usd: Option<f64>) {
        let cost = cost_usd.unwrap_or(0.0);
        // Only a key with a budget took a hold.
        self.gateway.key_cache.charge(&self.id, self.budget_usd.map(|_| hold.usd), cost);
        if cost > 0.0 {
            crate::accounting::record_key_spend(&self.gateway, &self.id, cost);
        }
    }
}
