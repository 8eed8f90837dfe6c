//! Metering: what model calls cost and the budgets that cap them.
//!
//! - [`PriceTable`] ([`prices`](self::prices)): USD per million tokens by `provider/model`
//!   pattern, shipped defaults overridden by configuration; prices a [`Usage`] with cached prompt
//!   tokens at their own rate.
//! - [`BudgetSpec`] ([`budget`](self::budget)): a limit in tokens and/or dollars over a scope
//!   (everyone, an agent, a session, each session, each agent) and a UTC window (total, daily,
//!   monthly); [`BudgetError`] says why a call was refused and what to do.
//! - [`Budgets`] ([`ledger`](self::ledger)): the spend per budget and window, reservations taken
//!   atomically before a call and settled after it, restored from the usage ledger at start.
//! - [`Clock`]: where windows read the time ([`TestClock`] in tests).
//! - [`Payer`]: someone besides the budgets who pays for one turn's calls (a virtual key).
//! - [`MeteredModels`]: calls made outside a turn's agent loop (memory's summaries and facts),
//!   metered the same way and recorded in the usage ledger.
//!
//! [`Metering`] bundles the price table and the budgets for the agent runner
//! (`AgentRunner::with_metering`).

mod budget;
mod call;
mod clock;
mod ledger;
mod payer;
mod prices;

pub use budget::{
    BudgetError, BudgetExceeded, BudgetLimit, BudgetScope, BudgetSpec, BudgetWindow, CallScope, Estimate,
};
pub use call::{CallFor, MeteredModels, ModelCallError};
pub use clock::{Clock, SystemClock, TestClock};
pub use ledger::{BudgetStatus, Budgets, Reservation};
pub(crate) use payer::HeldCall;
pub use payer::{Hold, Payer, PayerRefusal};
pub use prices::{Price, PriceTable, SHIPPED as SHIPPED_PRICES};

use chrono::{DateTime, Utc};
use exoclaw_types::{ChatRequest, Message, Usage, UsageRecord};
use std::sync::Arc;

/// The answer length reserved for a call that sets no `max_tokens`: the Anthropic provider's own
/// default, and more than most answers of other vendors.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 4096;

/// How calls made outside the agent runner (the gateway's `/v1` API) estimate themselves the way
/// the runner does: the prompt at four characters a token, the answer at its `max_tokens` (or
/// [`DEFAULT_OUTPUT_ESTIMATE`]).
impl Estimate {
    /// `prompt_tokens` plus `max_output_tokens`, priced at `price` as uncached input and output
    /// (`usd` is `None` without a price).
    pub fn priced(prompt_tokens: u64, max_output_tokens: u64, price: Option<Price>) -> Self {
        let usage = Usage {
            input_tokens: Some(prompt_tokens),
            output_tokens: Some(max_output_tokens),
            ..Usage::default()
        };
        Self { tokens: prompt_tokens.saturating_add(max_output_tokens), usd: price.map(|p| p.cost(&usage)) }
    }

    /// Tokens in `chars` characters of text, at four characters a token, rounded up.
    pub fn tokens_for_chars(chars: usize) -> u64 {
        u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX)
    }

    /// Characters of what `request` sends the model, as the runner counts a prompt: the system
    /// prompt, every message (an image counts as 4,000) and the tools' names, descriptions and
    /// schemas.
    pub fn prompt_chars(request: &ChatRequest) -> usize {
        let system = request.system.as_deref().map_or(0, |s| s.chars().count());
        let tools: usize = request
            .tools
            .iter()
            .map(|t| {
                t.name.chars().count() + t.description.chars().count() + t.input_schema.to_string().len()
            })
            .sum();
        system + tools + request.messages.iter().map(Self::message_chars).sum::<usize>()
    }

    /// `reported` with the counts a provider left out estimated at four characters a token:
    /// the prompt from its `prompt_chars`, the answer from `output`. Gives the usage and whether
    /// anything was estimated.
    pub fn fill_in(reported: Usage, prompt_chars: usize, output: &Message) -> (Usage, bool) {
        let mut usage = reported;
        let mut estimated = false;
        if usage.input_tokens.is_none() {
            usage.input_tokens = Some(Self::tokens_for_chars(prompt_chars));
            estimated = true;
        }
        if usage.output_tokens.is_none() {
            usage.output_tokens = Some(Self::tokens_for_chars(Self::message_chars(output)));
            estimated = true;
        }
        (usage, estimated)
    }

    /// Characters of one message (text, thinking, tool calls and results; an image counts as
    /// 4,000): what an answer whose length the provider did not report is estimated from.
    pub fn message_chars(message: &Message) -> usize {
        crate::agent::run::message_chars(message)
    }
}

/// Prices and budgets, as one agent runner (or many: share it in an `Arc`) uses them.
///
/// The default has the shipped prices and no budgets: costs are filled in, nothing is refused.
#[derive(Debug, Clone, Default)]
pub struct Metering {
    /// What calls cost.
    pub prices: PriceTable,
    /// What calls may spend.
    pub budgets: Budgets,
}

impl Metering {
    /// Metering with these prices and budgets.
    pub fn new(prices: PriceTable, budgets: Budgets) -> Self {
        Self { prices, budgets }
    }

    /// Metering with `specs` restored from `past_usage`, the usage ledger since
    /// [`Budgets::history_start`] (see [`Budgets::load`]). Records stored without a cost (before
    /// their model had a price, or by an older exoclaw) are priced with `prices` first, so a
    /// dollar budget counts them.
    pub fn load(
        prices: PriceTable,
        specs: Vec<BudgetSpec>,
        clock: Arc<dyn Clock>,
        past_usage: &[UsageRecord],
    ) -> Self {
        let budgets = Budgets::new(specs, clock);
        for record in past_usage {
            let usd = record.cost_usd.or_else(|| prices.cost(&record.provider, &record.model, &record.usage));
            let scope = CallScope { session: record.session_id, agent: &record.agent };
            budgets.add(&scope, record.at, ledger::record_tokens(record), usd);
        }
        Self { prices, budgets }
    }

    /// What a call to `model` on `provider` may cost at most: `prompt_tokens` plus
    /// `max_output_tokens`, priced as uncached input and output (cache reads only make it
    /// cheaper).
    pub fn estimate(
        &self,
        provider: &str,
        model: &str,
        prompt_tokens: u64,
        max_output_tokens: u64,
    ) -> Estimate {
        Estimate::priced(prompt_tokens, max_output_tokens, self.prices.price(provider, model))
    }

    /// What `usage` of `model` on `provider` cost; `None` without a price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.prices.cost(provider, model, usage)
    }

    /// The time, from the budgets' clock: usage records are stamped with it, so that a record
    /// falls in the window its call was settled into.
    pub fn now(&self) -> DateTime<Utc> {
        self.budgets.now()
    }
}
