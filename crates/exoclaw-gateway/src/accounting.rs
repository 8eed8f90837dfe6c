//! What each `/v1` request may cost and what it did. Before a request goes upstream its bill
//! (`Bill`) reserves an estimate against its virtual key's budget and the `[budgets]` it falls under
//! (refusing it with a [`BudgetRefusal`] when that does not fit); after the answer (or when the
//! client leaves mid-stream) the bill settles what it really used, priced as the provider and model
//! that served it. Chat completions and embeddings are billed alike; an embeddings request has no
//! answer tokens, so it reserves and is charged its input alone. The usage ledger gets a record, the key its spend, the metrics their tokens; a
//! background task writes records in batches (one transaction for many requests), so a busy
//! gateway does not queue behind its database.

use crate::keys::Caller;
use crate::metrics::TokenCounters;
use crate::{Gateway, GatewayError};
use exoclaw_core::{
    BudgetError, BudgetExceeded, CallScope, DEFAULT_OUTPUT_ESTIMATE, Estimate, KeyStore, Price, Reservation,
    UsageStore,
};
use exoclaw_types::{ChatRequest, ChatResponse, ErrorCode, StreamEvent, Usage, UsageRecord};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Records waiting to be written at most; past it, requests wait for the writer (nothing is
/// dropped).
const QUEUE: usize = 16 * 1024;

/// Most records written in one transaction.
const BATCH: usize = 512;

/// How long the writer lets records gather before a transaction: one write every tenth of a
/// second at most, instead of one per request (a transaction costs the database thread about as
/// much as a whole proxied request costs the gateway).
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// What the writer task is sent.
#[derive(Debug)]
enum Entry {
    /// One settled request.
    Settled { record: Box<UsageRecord>, key_id: Option<String> },
    /// A key's spend on an agent turn's model call (the turn stores its own usage records).
    KeySpend { key_id: String, usd: f64 },
    /// Answer once everything before has been written.
    Flush(oneshot::Sender<()>),
}

/// The writer's end: where settled requests go.
#[derive(Debug, Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Entry>,
}

impl Ledger {
    /// Starts the writer task over `usage` (and `keys`, for key spend). It ends when every
    /// [`Ledger`] clone is dropped, after writing what was queued.
    pub fn start(usage: Arc<dyn UsageStore>, keys: Option<Arc<dyn KeyStore>>) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(receiver, usage, keys));
        Self { sender }
    }

    /// Queues a settled request; when the queue is full, a task waits for room (nothing is
    /// dropped, and the request's answer is not held up).
    fn push(&self, record: UsageRecord, key_id: Option<String>) {
        self.enqueue(Entry::Settled { record: Box::new(record), key_id });
    }

    fn enqueue(&self, entry: Entry) {
        match self.sender.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(entry)) => {
                let sender = self.sender.clone();
                tokio::spawn(async move { sender.send(entry).await });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the usage ledger has stopped; a request's usage was not recorded");
            }
        }
    }

    /// Queues `usd` more spent by key `key_id` (an agent turn's model call, whose usage record
    /// the turn stores itself), written with the next batch.
    fn push_key_spend(&self, key_id: String, usd: f64) {
        self.enqueue(Entry::KeySpend { key_id, usd });
    }

    /// Waits until everything pushed before has been written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Entry::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_batches(
    mut receiver: mpsc::Receiver<Entry>,
    usage: Arc<dyn UsageStore>,
    keys: Option<Arc<dyn KeyStore>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        // A flush is answered at once; otherwise let more records arrive.
        if batch.len() < BATCH && !batch.iter().any(|e| matches!(e, Entry::Flush(_))) {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
        }
        let mut spend: HashMap<String, f64> = HashMap::new();
        let mut records = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for entry in batch.drain(..) {
            match entry {
                Entry::Settled { record, key_id } => {
                    if let (Some(id), Some(cost)) = (key_id, record.cost_usd) {
                        *spend.entry(id).or_default() += cost;
                    }
                    records.push(*record);
                }
                Entry::KeySpend { key_id, usd } => *spend.entry(key_id).or_default() += usd,
                Entry::Flush(done) => flushes.push(done),
            }
        }
        write(&*usage, keys.as_deref(), &records, spend).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(
    usage: &dyn UsageStore,
    keys: Option<&dyn KeyStore>,
    records: &[UsageRecord],
    spend: HashMap<String, f64>,
) {
    if !records.is_empty()
        && let Err(e) = usage.record_usage_batch(records).await
    {
        tracing::error!(error = %e, records = records.len(), "could not record usage");
    }
    if let Some(keys) = keys {
        for (id, usd) in spend {
            if let Err(e) = keys.add_key_spend(&id, usd).await {
                tracing::error!(error = %e, key = %id, "could not record a key's spend");
            }
        }
    }
}

/// Most model names whose billing is remembered; names past it are resolved per request (rules
/// route unbounded sets of names, and a client may send any of them).
const BILLING_ENTRIES: usize = 4096;

/// Where a model name's usage is recorded, what it costs and the token counters it adds to:
/// resolved once per name, not per request (a route lookup, a walk of the price table, two
/// label lookups).
#[derive(Debug)]
pub(crate) struct Billing {
    /// `provider/model` the usage is recorded under, as routed.
    provider: String,
    model: String,
    price: Option<Price>,
    tokens: TokenCounters,
}

/// Each model name's [`Billing`]. The routes and prices behind it are fixed while the gateway
/// runs (a reload changes bindings only), so entries never go stale.
#[derive(Debug, Default)]
pub(crate) struct BillingCache {
    entries: RwLock<HashMap<String, Arc<Billing>>>,
}

impl BillingCache {
    /// The billing of a chat model name, as [`crate::ModelSource::billed_as`] routes it.
    fn get(&self, gateway: &Gateway, model: &str) -> Arc<Billing> {
        self.cached(gateway, model, || {
            gateway.source.billed_as(model).unwrap_or_else(|| ("unknown".into(), "unknown".into()))
        })
    }

    /// The billing of `model` on the provider instance `provider`, as named (an embedding model:
    /// its source says who serves it when it is opened).
    fn served_as(&self, gateway: &Gateway, provider: &str, model: &str) -> Arc<Billing> {
        self.cached(gateway, &format!("{provider}/{model}"), || (provider.to_owned(), model.to_owned()))
    }

    /// The entry under `key`, else the billing of what `resolve` names, remembered.
    fn cached(
        &self,
        gateway: &Gateway,
        key: &str,
        resolve: impl FnOnce() -> (String, String),
    ) -> Arc<Billing> {
        if let Some(billing) = self.entries.read().ok().and_then(|entries| entries.get(key).cloned()) {
            return billing;
        }
        let (provider, routed) = resolve();
        let price = gateway.metering.as_ref().and_then(|m| m.prices.price(&provider, &routed));
        let tokens = gateway.metrics.token_counters(&provider, &routed);
        let billing = Arc::new(Billing { provider, model: routed, price, tokens });
        if let Ok(mut entries) = self.entries.write()
            && entries.len() < BILLING_ENTRIES
        {
            entries.insert(key.to_owned(), Arc::clone(&billing));
        }
        billing
    }
}

/// Why a budget refused a `/v1` request. Every refusal comes before anything is sent upstream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetRefusal {
    /// The virtual key has spent its whole budget.
    #[error(
        "the key `{key}` has spent its budget (${spent_usd:.4} of ${budget_usd:.2}); ask the gateway's operator to raise it or for a new key"
    )]
    KeySpent {
        /// The key's name.
        key: String,
        /// Its budget, USD.
        budget_usd: f64,
        /// What it has spent, USD.
        spent_usd: f64,
    },
    /// What the request may cost does not fit in what the key has left.
    #[error(
        "the key `{key}` cannot cover this request: ${spent_usd:.4} of its ${budget_usd:.2} budget is spent and ${held_usd:.4} is held by its requests in progress, and this one may cost up to ${request_usd:.4} (its prompt at four characters a token, plus `max_tokens`, or 4096 tokens without it); send a smaller `max_tokens`, wait for requests in progress to finish, or ask the gateway's operator to raise the budget"
    )]
    KeyShort {
        /// The key's name.
        key: String,
        /// Its budget, USD.
        budget_usd: f64,
        /// What it has spent, USD.
        spent_usd: f64,
        /// What its requests in progress hold, USD.
        held_usd: f64,
        /// The most this request may cost, USD.
        request_usd: f64,
    },
    /// What an embeddings request may cost (its input; embeddings have no answer tokens) does
    /// not fit in what the key has left.
    #[error(
        "the key `{key}` cannot cover this request: ${spent_usd:.4} of its ${budget_usd:.2} budget is spent and ${held_usd:.4} is held by its requests in progress, and this one may cost up to ${request_usd:.4} (its input at four characters a token); embed fewer or shorter texts per request, wait for requests in progress to finish, or ask the gateway's operator to raise the budget"
    )]
    InputShort {
        /// The key's name.
        key: String,
        /// Its budget, USD.
        budget_usd: f64,
        /// What it has spent, USD.
        spent_usd: f64,
        /// What its requests in progress hold, USD.
        held_usd: f64,
        /// The most this request may cost, USD.
        request_usd: f64,
    },
    /// What an agent turn's next model call may cost does not fit in what the key has left
    /// (`chat.send` with a virtual key).
    #[error(
        "the key `{key}` cannot cover the agent's next model call: ${spent_usd:.4} of its ${budget_usd:.2} budget is spent and ${held_usd:.4} is held by its requests in progress, and the call may cost up to ${call_usd:.4} (the conversation at four characters a token, plus the agent's `max_tokens`); wait for requests in progress to finish, start a new session (a shorter conversation costs less), or ask the gateway's operator to raise the budget"
    )]
    TurnShort {
        /// The key's name.
        key: String,
        /// Its budget, USD.
        budget_usd: f64,
        /// What it has spent, USD.
        spent_usd: f64,
        /// What its requests in progress hold, USD.
        held_usd: f64,
        /// The most the call may cost, USD.
        call_usd: f64,
    },
    /// One of the gateway's `[budgets]` would be exceeded (the message says which, and when it
    /// resets).
    #[error("the gateway's {0}")]
    Limit(Box<BudgetExceeded>),
    /// The model has no price and a budget counts dollars: what the request costs could not be
    /// counted, so it is not made (rather than billed as free).
    #[error(
        "no price is known for `{priced_as}` (where the model `{model}` is routed), so what this request costs cannot be counted against {budget}; the gateway's operator can add its price under [prices] in config.toml (USD per million tokens: `\"{priced_as}\" = {{ input = …, output = … }}`), or use a model with a known price"
    )]
    Unpriced {
        /// The model as the client asked for it.
        model: String,
        /// The `provider/model` it is billed as, as `[prices]` patterns match it.
        priced_as: String,
        /// What counts dollars: "the key `NAME`'s budget", or "budget `NAME`".
        budget: String,
    },
}

impl BudgetRefusal {
    /// The stable code: [`ErrorCode::BudgetUnpriced`] for [`BudgetRefusal::Unpriced`], else
    /// [`ErrorCode::BudgetExceeded`].
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unpriced { .. } => ErrorCode::BudgetUnpriced,
            Self::KeySpent { .. }
            | Self::KeyShort { .. }
            | Self::InputShort { .. }
            | Self::TurnShort { .. }
            | Self::Limit(_) => ErrorCode::BudgetExceeded,
        }
    }
}

/// Records that key `key_id` spent `usd` on an agent turn's model call: into the key store with
/// the ledger's next batch, or at once where the gateway keeps no ledger. The key's books in
/// this process are the caller's to update.
pub(crate) fn record_key_spend(gateway: &Arc<Gateway>, key_id: &str, usd: f64) {
    if let Some(ledger) = &gateway.ledger {
        ledger.push_key_spend(key_id.to_owned(), usd);
    } else if let Some(keys) = gateway.keys.clone() {
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = keys.add_key_spend(&key_id, usd).await {
                tracing::error!(error = %e, key = %key_id, "could not record a key's spend");
            }
        });
    }
}

/// A `/v1` request from the moment its budgets are reserved ([`Bill::open`]) until it is settled
/// ([`Bill::settle`], or on drop: a stream the client left, a request that failed). Settling
/// charges the key and the `[budgets]` what the request really used in place of what they held,
/// and writes its usage record; a request that was never sent upstream only releases its holds.
pub(crate) struct Bill {
    gateway: Arc<Gateway>,
    caller: Caller,
    billing: Arc<Billing>,
    /// The provider and model that served the answer, when the answer named others than
    /// `billing` ([`StreamEvent::Served`] or [`ChatResponse::served`], after a router's fallback).
    served: Option<(String, String)>,
    /// Characters of the prompt, and of the answer seen so far: what counts the provider did not
    /// report are estimated from.
    prompt_chars: usize,
    answer_chars: usize,
    /// Dollars held of the key's budget.
    key_hold: Option<f64>,
    /// The hold on the `[budgets]` this request falls under.
    budget_hold: Option<Reservation>,
    started: Instant,
    first_token: Option<Duration>,
    usage: Usage,
    /// Whether the request went upstream.
    sent: bool,
    /// An embeddings request: no answer tokens, and no time to a first token to record.
    embeddings: bool,
    settled: bool,
}

impl Bill {
    /// Opens the bill of `request`, made for the model the client called `model`: reserves what
    /// it may cost (its prompt at four characters a token plus `max_tokens`, or
    /// [`DEFAULT_OUTPUT_ESTIMATE`]) against the caller's key budget and the `[budgets]` it falls
    /// under (scope: agent `api:NAME`, no session), or refuses it. A caller with neither pays for
    /// no reservation.
    pub(crate) fn open(
        gateway: &Arc<Gateway>,
        caller: Caller,
        model: &str,
        request: &ChatRequest,
    ) -> Result<Self, GatewayError> {
        let billing = gateway.billing.get(gateway, model);
        let max_output = request.params.max_tokens.map_or(DEFAULT_OUTPUT_ESTIMATE, u64::from);
        let prompt_chars = Estimate::prompt_chars(request);
        Self::reserve(gateway, caller, model, billing, prompt_chars, Some(max_output))
    }

    /// Opens the bill of an embeddings request for `model` (as the client called it), served by
    /// `provider`'s `upstream` model, whose inputs come to `input_chars` characters: reserves the
    /// inputs at four characters a token (embeddings have no answer tokens), as [`Bill::open`]
    /// does, or refuses it.
    pub(crate) fn open_embeddings(
        gateway: &Arc<Gateway>,
        caller: Caller,
        model: &str,
        provider: &str,
        upstream: &str,
        input_chars: usize,
    ) -> Result<Self, GatewayError> {
        let billing = gateway.embedding_billing.served_as(gateway, provider, upstream);
        Self::reserve(gateway, caller, model, billing, input_chars, None)
    }

    /// Opens a bill and reserves what its request may cost: `prompt_chars` characters of input
    /// and `max_output` answer tokens (`None`: the request has no answer tokens, an embeddings
    /// request).
    fn reserve(
        gateway: &Arc<Gateway>,
        caller: Caller,
        model: &str,
        billing: Arc<Billing>,
        prompt_chars: usize,
        max_output: Option<u64>,
    ) -> Result<Self, GatewayError> {
        let mut bill = Self {
            gateway: Arc::clone(gateway),
            caller,
            billing,
            served: None,
            prompt_chars,
            answer_chars: 0,
            key_hold: None,
            budget_hold: None,
            started: Instant::now(),
            first_token: None,
            usage: Usage::default(),
            sent: false,
            embeddings: max_output.is_none(),
            settled: false,
        };
        let key_budget = match &bill.caller {
            Caller::Key(key) => key.budget_usd,
            Caller::Anyone | Caller::Operator => None,
        };
        let budgets = gateway.metering.as_deref().map(|m| &m.budgets).filter(|b| !b.specs().is_empty());
        if key_budget.is_none() && budgets.is_none() {
            return Ok(bill);
        }
        let estimate = Estimate::priced(
            Estimate::tokens_for_chars(bill.prompt_chars),
            max_output.unwrap_or(0),
            bill.billing.price,
        );
        // Dropping `bill` on a refusal releases whatever it holds already.
        if let (Caller::Key(key), Some(budget_usd)) = (&bill.caller, key_budget) {
            let Some(usd) = estimate.usd else {
                return Err(bill.unpriced(model, format!("the key `{}`'s budget", key.name)));
            };
            if let Err(short) = gateway.key_cache.reserve(&key.id, budget_usd, usd) {
                let (key, spent_usd, held_usd) = (key.name.clone(), short.spent_usd, short.held_usd);
                return Err(GatewayError::BudgetExceeded(match max_output {
                    Some(_) => {
                        BudgetRefusal::KeyShort { key, budget_usd, spent_usd, held_usd, request_usd: usd }
                    }
                    None => {
                        BudgetRefusal::InputShort { key, budget_usd, spent_usd, held_usd, request_usd: usd }
                    }
                }));
            }
            bill.key_hold = Some(usd);
        }
        if let Some(budgets) = budgets {
            let agent = bill.agent();
            match budgets.reserve(&CallScope { session: None, agent: &agent }, estimate) {
                Ok(hold) => bill.budget_hold = Some(hold),
                Err(BudgetError::Exceeded(exceeded)) => {
                    return Err(GatewayError::BudgetExceeded(BudgetRefusal::Limit(exceeded)));
                }
                Err(BudgetError::Unpriced { budget }) => {
                    return Err(bill.unpriced(model, format!("budget `{budget}`")));
                }
            }
        }
        Ok(bill)
    }

    fn unpriced(&self, model: &str, budget: String) -> GatewayError {
        GatewayError::BudgetExceeded(BudgetRefusal::Unpriced {
            model: model.to_owned(),
            priced_as: format!("{}/{}", self.billing.provider, self.billing.model),
            budget,
        })
    }

    /// The caller as the usage ledger and `[budgets]` scopes name it.
    fn agent(&self) -> String {
        format!("api:{}", self.caller.label())
    }

    /// The request is about to go upstream: from now on it is charged what it uses.
    pub(crate) fn sent(&mut self) {
        self.sent = true;
    }

    /// The answer has begun.
    pub(crate) fn first_token(&mut self) {
        self.first_token.get_or_insert_with(|| self.started.elapsed());
    }

    /// A whole answer arrived: its usage, and who served it (a router names its target, another
    /// than the route's first after a fallback).
    pub(crate) fn answered(&mut self, answer: &ChatResponse) {
        self.first_token();
        self.usage.update(answer.usage);
        if answer.usage.output_tokens.is_none() {
            self.answer_chars = Estimate::message_chars(&answer.message);
        }
        if let Some(served) = &answer.served {
            self.served_by(&served.provider, &served.model.0);
        }
    }

    /// The answer is served by `provider`/`model`: kept when that is not what the request was
    /// billed as when it was opened (a router names its target even without a fallback).
    fn served_by(&mut self, provider: &str, model: &str) {
        let same = provider == self.billing.provider && model == self.billing.model;
        self.served = (!same).then(|| (provider.to_owned(), model.to_owned()));
    }

    /// Embeddings came back, their inputs counted as `input_tokens` when the provider said
    /// (else they are estimated from the inputs' characters when the bill is settled). They have
    /// no answer tokens.
    pub(crate) fn embedded(&mut self, input_tokens: Option<u64>) {
        self.first_token();
        self.usage.update(Usage { input_tokens, output_tokens: Some(0), ..Usage::default() });
    }

    /// Notes what a streamed event tells the bill: usage (a stream may report it in parts), who
    /// serves the answer, and how much of it there is so far.
    pub(crate) fn observe(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::TextDelta { text } | StreamEvent::ThinkingDelta { text } => {
                self.answer_chars += text.chars().count();
            }
            StreamEvent::ToolCallStart { name, .. } => self.answer_chars += name.chars().count(),
            StreamEvent::ToolCallArgsDelta { fragment, .. } => self.answer_chars += fragment.len(),
            StreamEvent::Usage(usage) => self.usage.update(*usage),
            StreamEvent::Served { provider, model } => self.served_by(provider, model),
            StreamEvent::ThinkingSignature { .. }
            | StreamEvent::ToolCall { .. }
            | StreamEvent::Finish { .. } => {}
        }
    }

    /// Settles the request now.
    pub(crate) fn settle(mut self) {
        self.settle_once();
    }

    fn settle_once(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let gateway = Arc::clone(&self.gateway);
        let key_id = match &self.caller {
            Caller::Key(key) => Some(key.id.as_str()),
            Caller::Anyone | Caller::Operator => None,
        };
        let (key_hold, budget_hold) = (self.key_hold.take(), self.budget_hold.take());
        if !self.sent {
            // Refused before it went upstream: nothing was used, so nothing is charged or recorded.
            if let (Some(id), Some(held)) = (key_id, key_hold) {
                gateway.key_cache.settle(id, held, 0.0);
            }
            drop(budget_hold);
            return;
        }
        let billing = &self.billing;
        let served_tokens;
        let (provider, model, price, tokens) = match &self.served {
            Some((provider, model)) => {
                served_tokens = gateway.metrics.token_counters(provider, model);
                let price = gateway.metering.as_ref().and_then(|m| m.prices.price(provider, model));
                // A fallback to a model without a price is charged at the price the request was
                // admitted at, so a budget never sees it as free.
                (provider.as_str(), model.as_str(), price.or(billing.price), &served_tokens)
            }
            None => (billing.provider.as_str(), billing.model.as_str(), billing.price, &billing.tokens),
        };
        let mut usage = self.usage;
        let mut estimated = false;
        if self.first_token.is_some() {
            // An answer began, so tokens were used even if the provider did not say how many (a
            // client that left mid-stream, before the usage that comes last).
            if usage.input_tokens.is_none() {
                usage.input_tokens = Some(Estimate::tokens_for_chars(self.prompt_chars));
                estimated = true;
            }
            if usage.output_tokens.is_none() {
                usage.output_tokens = Some(Estimate::tokens_for_chars(self.answer_chars));
                estimated = true;
            }
        }
        tokens.add(usage.input_tokens, usage.output_tokens);
        let cost = price.map(|price| price.cost(&usage));
        if let Some(id) = key_id {
            gateway.key_cache.charge(id, key_hold, cost.unwrap_or(0.0));
        }
        if let Some(hold) = budget_hold {
            let used = usage.input_tokens.unwrap_or(0).saturating_add(usage.output_tokens.unwrap_or(0));
            hold.settle(used, cost);
        }
        let Some(ledger) = &gateway.ledger else { return };
        let record = UsageRecord {
            // The budgets' clock, so the record falls in the window it was settled into.
            at: gateway.metering.as_ref().map_or_else(chrono::Utc::now, |m| m.now()),
            session_id: None,
            agent: self.agent(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            usage,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ttft_ms: self
                .first_token
                .filter(|_| !self.embeddings)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            cost_usd: cost,
            estimated,
            purpose: exoclaw_types::CallPurpose::Answer,
        };
        ledger.push(record, key_id.map(str::to_owned));
    }
}

impl Drop for Bill {
    fn drop(&mut self) {
        self.settle_once();
    }
}
