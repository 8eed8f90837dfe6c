//! [`Budgets`]: the spend of every budget in its current window, and the [`Reservation`]s that
//! calls take before they run and settle when they have run.
//!
//! A call reserves its [`Estimate`] against every budget it falls under, atomically: either all of
//! them have room and all are charged the estimate, or the call is refused and none is. When the
//! call ends its reservation is settled with what it really used (or, if it never reached the
//! model, released). So parallel turns cannot all see "room left" and overspend together: the
//! only overspend left is estimate error.

use crate::metering::budget::{
    BudgetError, BudgetExceeded, BudgetLimit, BudgetScope, BudgetSpec, CallScope, Estimate,
};
use crate::metering::clock::{Clock, SystemClock};
use chrono::{DateTime, Utc};
use exoclaw_types::{SessionId, UsageRecord};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Dollar sums are floating point: a call that lands exactly on the limit must not be refused
/// for a rounding error.
const USD_EPSILON: f64 = 1e-9;

/// Stale per-session windows are dropped once the map holds this many entries (then twice as many
/// as after the last sweep).
const PRUNE_FLOOR: usize = 1024;

/// The budgets in force and what has been spent against them.
///
/// Cheap to clone (clones share the spend) and safe to share between tasks: every check and
/// charge happens under one short lock, with no IO and no await inside it.
///
/// # What "exact" means
///
/// A call is let through only if the spend so far, plus the estimates of calls still running,
/// plus its own estimate, stays within every limit. The spend can then exceed a limit only by the
/// amount calls used beyond their estimates: with calls one after another, by at most one call's
/// `actual − estimate`; with calls in parallel, by the sum of that error over the calls running
/// together when the last one was let through. The agent runner estimates the answer at its
/// `max_tokens`, an upper bound, so in practice only a short prompt-size guess can be exceeded.
///
/// # Restarts
///
/// Spend lives in memory. [`Budgets::load`] rebuilds it from the usage ledger (what
/// `UsageStore::usage_since` returns from [`Budgets::history_start`]), counting every record
/// whose time falls in a budget's current window — the same rule live spend follows, since a call
/// is settled into the window it finished in, and its usage record carries that time.
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Inner>,
}

struct Inner {
    specs: Vec<BudgetSpec>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    spend: HashMap<Key, Spend>,
    prune_at: usize,
}

/// One budget's spend for one subject (everyone, one session, one agent).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    budget: usize,
    subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    All,
    Session(SessionId),
    Agent(String),
}

/// Spend in the window that began at `window_start`.
#[derive(Debug, Clone, Copy)]
struct Spend {
    window_start: DateTime<Utc>,
    tokens: u64,
    usd: f64,
    held_tokens: u64,
    held_usd: f64,
}

impl Spend {
    fn fresh(window_start: DateTime<Utc>) -> Self {
        Self { window_start, tokens: 0, usd: 0.0, held_tokens: 0, held_usd: 0.0 }
    }
}

impl State {
    /// The spend of `key` in the window that began at `start`; a spend from an earlier window
    /// rolls over to zero.
    fn current(&mut self, key: Key, start: DateTime<Utc>) -> &mut Spend {
        let spend = self.spend.entry(key).or_insert_with(|| Spend::fresh(start));
        if spend.window_start != start {
            // Holds of calls still running in the old window are forgotten with it: releasing
            // them later finds a different window and leaves the new one alone.
            *spend = Spend::fresh(start);
        }
        spend
    }

    fn release(&mut self, key: &Key, window_start: DateTime<Utc>, estimate: Estimate) {
        if let Some(spend) = self.spend.get_mut(key)
            && spend.window_start == window_start
        {
            spend.held_tokens = spend.held_tokens.saturating_sub(estimate.tokens);
            // With no tokens held no call holds anything: clear the rounding error that adding
            // and taking away dollar amounts leaves, which a refusal would show as held.
            spend.held_usd = if spend.held_tokens == 0 {
                0.0
            } else {
                (spend.held_usd - estimate.usd.unwrap_or(0.0)).max(0.0)
            };
        }
    }
}

impl Default for Budgets {
    /// No budgets: every call is let through.
    fn default() -> Self {
        Self::new(Vec::new(), Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets").field("specs", &self.inner.specs).field("clock", &self.inner.clock).finish()
    }
}

impl Budgets {
    /// `specs` with nothing spent yet, windows read from `clock`.
    pub fn new(specs: Vec<BudgetSpec>, clock: Arc<dyn Clock>) -> Self {
        let state = State { spend: HashMap::new(), prune_at: PRUNE_FLOOR };
        Self { inner: Arc::new(Inner { specs, clock, state: Mutex::new(state) }) }
    }

    /// `specs` with the spend of their current windows restored from `past_usage`, the usage
    /// ledger from [`Budgets::history_start`] on (older records are ignored). A record's tokens
    /// are its input plus output tokens; its dollars are its `cost_usd` (0 when unknown — see
    /// `Metering::load`, which prices such records first).
    pub fn load(specs: Vec<BudgetSpec>, clock: Arc<dyn Clock>, past_usage: &[UsageRecord]) -> Self {
        let budgets = Self::new(specs, clock);
        for record in past_usage {
            budgets.record(record);
        }
        budgets
    }

    /// The earliest usage [`Budgets::load`] needs to see for `specs` at `now`: the start of the
    /// oldest current window (the Unix epoch when a budget is `total`); `None` without budgets.
    pub fn history_start(specs: &[BudgetSpec], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        specs.iter().map(|spec| spec.window.start(now).max(DateTime::<Utc>::UNIX_EPOCH)).min()
    }

    /// The budgets in force.
    pub fn specs(&self) -> &[BudgetSpec] {
        &self.inner.specs
    }

    /// The time, from this ledger's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Reserves `estimate` against every budget `scope` falls under, or refuses the call.
    ///
    /// Refused with [`BudgetError::Exceeded`] when the spend so far plus what running calls hold
    /// plus `estimate` would go over a limit; with [`BudgetError::Unpriced`] when a budget caps
    /// dollars and `estimate.usd` is `None`. Nothing is reserved when the call is refused.
    pub fn reserve(&self, scope: &CallScope<'_>, estimate: Estimate) -> Result<Reservation, BudgetError> {
        let now = self.now();
        let holds: Vec<(Key, DateTime<Utc>)> = self
            .inner
            .specs
            .iter()
            .enumerate()
            .filter_map(|(budget, spec)| {
                subject(&spec.scope, scope).map(|subject| (Key { budget, subject }, spec.window.start(now)))
            })
            .collect();
        if let Some((key, _)) = holds
            .iter()
            .find(|(key, _)| estimate.usd.is_none() && self.inner.specs[key.budget].max_usd.is_some())
        {
            return Err(BudgetError::Unpriced { budget: self.inner.specs[key.budget].name.clone() });
        }
        if !holds.is_empty() {
            let mut state = self.lock();
            for (key, start) in &holds {
                let spend = *state.current(key.clone(), *start);
                let spec = &self.inner.specs[key.budget];
                if let Some(limit) = over_limit(spec, &spend, estimate) {
                    return Err(BudgetError::Exceeded(Box::new(BudgetExceeded {
                        budget: spec.name.clone(),
                        scope: spec.scope.clone(),
                        window: spec.window,
                        limit,
                        spent_tokens: spend.tokens,
                        spent_usd: spend.usd,
                        held_tokens: spend.held_tokens,
                        held_usd: spend.held_usd,
                        estimate,
                        resets_at: spec.window.end(now),
                    })));
                }
            }
            for (key, start) in &holds {
                let spend = state.current(key.clone(), *start);
                spend.held_tokens = spend.held_tokens.saturating_add(estimate.tokens);
                spend.held_usd += estimate.usd.unwrap_or(0.0);
            }
            self.prune(&mut state, now);
        }
        Ok(Reservation { budgets: self.clone(), holds, estimate })
    }

    /// Adds a call's usage that was not reserved beforehand (a call made outside the agent
    /// runner) to the budgets it falls under, if it happened in their current windows.
    pub fn record(&self, record: &UsageRecord) {
        let tokens = record_tokens(record);
        let scope = CallScope { session: record.session_id, agent: &record.agent };
        self.add(&scope, record.at, tokens, record.cost_usd);
    }

    /// What the budgets `scope` falls under have spent in their current windows.
    pub fn status(&self, scope: &CallScope<'_>) -> Vec<BudgetStatus> {
        let now = self.now();
        let state = self.lock();
        self.inner
            .specs
            .iter()
            .enumerate()
            .filter_map(|(budget, spec)| {
                let key = Key { budget, subject: subject(&spec.scope, scope)? };
                let start = spec.window.start(now);
                let spend = state
                    .spend
                    .get(&key)
                    .filter(|s| s.window_start == start)
                    .copied()
                    .unwrap_or_else(|| Spend::fresh(start));
                Some(BudgetStatus {
                    spec: spec.clone(),
                    resets_at: spec.window.end(now),
                    spent_tokens: spend.tokens,
                    spent_usd: spend.usd,
                    held_tokens: spend.held_tokens,
                    held_usd: spend.held_usd,
                })
            })
            .collect()
    }

    pub(crate) fn add(&self, scope: &CallScope<'_>, at: DateTime<Utc>, tokens: u64, usd: Option<f64>) {
        let now = self.now();
        let mut state = self.lock();
        for (budget, spec) in self.inner.specs.iter().enumerate() {
            let Some(subject) = subject(&spec.scope, scope) else { continue };
            let start = spec.window.start(now);
            if at < start {
                continue;
            }
            let spend = state.current(Key { budget, subject }, start);
            spend.tokens = spend.tokens.saturating_add(tokens);
            spend.usd += usd.unwrap_or(0.0);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock can panic half-way through an update; a poisoned lock still
        // holds consistent numbers.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops per-session and per-agent spends of past windows, so a gateway serving millions of
    /// sessions under a daily budget does not keep every one of them.
    fn prune(&self, state: &mut State, now: DateTime<Utc>) {
        if state.spend.len() <= state.prune_at {
            return;
        }
        let specs = &self.inner.specs;
        state.spend.retain(|key, spend| {
            spend.held_tokens > 0
                || spend.held_usd > 0.0
                || spend.window_start == specs[key.budget].window.start(now)
        });
        state.prune_at = (state.spend.len() * 2).max(PRUNE_FLOOR);
    }
}

/// What a budget has spent in its current window, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The budget.
    pub spec: BudgetSpec,
    /// When the window resets; `None` for `total`.
    pub resets_at: Option<DateTime<Utc>>,
    /// Tokens spent by calls that finished.
    pub spent_tokens: u64,
    /// Dollars spent by calls that finished.
    pub spent_usd: f64,
    /// Tokens reserved by calls still running.
    pub held_tokens: u64,
    /// Dollars reserved by calls still running.
    pub held_usd: f64,
}

/// A call's hold on its budgets, taken by [`Budgets::reserve`].
///
/// [`Reservation::settle`] replaces the hold with what the call really used. Dropping an
/// unsettled reservation releases the hold and charges nothing: right for a call that never
/// reached the model (refused, or cancelled before it started). A call that streamed anything —
/// even one cancelled half-way — has consumed tokens and must be settled with them.
#[must_use = "settle the reservation with the call's usage; dropping it charges nothing"]
pub struct Reservation {
    budgets: Budgets,
    holds: Vec<(Key, DateTime<Utc>)>,
    estimate: Estimate,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("budgets", &self.holds.len())
            .field("estimate", &self.estimate)
            .finish()
    }
}

impl Reservation {
    /// What was reserved.
    pub fn estimate(&self) -> Estimate {
        self.estimate
    }

    /// Ends the hold and charges what the call used: `tokens` (prompt plus output) and `usd`
    /// (`None`, no price: no dollars) to the window it ended in.
    pub fn settle(mut self, tokens: u64, usd: Option<f64>) {
        let holds = std::mem::take(&mut self.holds);
        if holds.is_empty() {
            return;
        }
        let now = self.budgets.now();
        let specs = &self.budgets.inner.specs;
        let mut state = self.budgets.lock();
        for (key, start) in holds {
            state.release(&key, start, self.estimate);
            let current = specs[key.budget].window.start(now);
            let spend = state.current(key, current);
            spend.tokens = spend.tokens.saturating_add(tokens);
            spend.usd += usd.unwrap_or(0.0);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.holds.is_empty() {
            return;
        }
        let mut state = self.budgets.lock();
        for (key, start) in &self.holds {
            state.release(key, *start, self.estimate);
        }
    }
}

/// Which of a budget's spends a call counts against, if it falls under the budget at all.
fn subject(budget: &BudgetScope, call: &CallScope<'_>) -> Option<Subject> {
    match budget {
        BudgetScope::Global => Some(Subject::All),
        BudgetScope::Agent(agent) => (agent == call.agent).then_some(Subject::All),
        BudgetScope::Session(id) => (call.session == Some(*id)).then_some(Subject::All),
        BudgetScope::PerSession => call.session.map(Subject::Session),
        BudgetScope::PerAgent => Some(Subject::Agent(call.agent.to_owned())),
    }
}

/// The limit `estimate` would break on top of `spend`, if any.
fn over_limit(spec: &BudgetSpec, spend: &Spend, estimate: Estimate) -> Option<BudgetLimit> {
    if let Some(max) = spec.max_tokens
        && spend.tokens.saturating_add(spend.held_tokens).saturating_add(estimate.tokens) > max
    {
        return Some(BudgetLimit::Tokens(max));
    }
    if let Some(max) = spec.max_usd
        && spend.usd + spend.held_usd + estimate.usd.unwrap_or(0.0) > max + USD_EPSILON
    {
        return Some(BudgetLimit::Usd(max));
    }
    None
}

/// The tokens a usage record counts for: prompt (cached included) plus output.
pub(crate) fn record_tokens(record: &UsageRecord) -> u64 {
    record.usage.input_tokens.unwrap_or(0).saturating_add(record.usage.output_tokens.unwrap_or(0))
}

#[cfg(test)]
mod tests;
