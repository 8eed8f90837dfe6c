//! What each `/v1` request cost, settled off the request path: the usage ledger gets a record, a
//! virtual key its spend, the metrics their tokens. A background task writes records in batches
//! (one transaction for many requests), so a busy gateway does not queue behind its database.

use crate::Gateway;
use crate::keys::Caller;
use crate::metrics::TokenCounters;
use exoclaw_core::{KeyStore, Price, UsageStore};
use exoclaw_types::{Usage, UsageRecord};
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
        match self.sender.try_send(Entry::Settled { record: Box::new(record), key_id }) {
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
    fn get(&self, gateway: &Gateway, model: &str) -> Arc<Billing> {
        if let Some(billing) = self.entries.read().ok().and_then(|entries| entries.get(model).cloned()) {
            return billing;
        }
        let (provider, routed) =
            gateway.source.billed_as(model).unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let price = gateway.metering.as_ref().and_then(|m| m.prices.price(&provider, &routed));
        let tokens = gateway.metrics.token_counters(&provider, &routed);
        let billing = Arc::new(Billing { provider, model: routed, price, tokens });
        if let Ok(mut entries) = self.entries.write()
            && entries.len() < BILLING_ENTRIES
        {
            entries.insert(model.to_owned(), Arc::clone(&billing));
        }
        billing
    }
}

/// A request being served: settles its usage when [`Bill::settle`] is called or, for a stream the
/// client left, when dropped.
pub(crate) struct Bill {
    gateway: Arc<Gateway>,
    caller: Caller,
    billing: Arc<Billing>,
    started: Instant,
    first_token: Option<Duration>,
    usage: Usage,
    settled: bool,
}

impl Bill {
    pub(crate) fn new(gateway: Arc<Gateway>, caller: Caller, model: &str) -> Self {
        let billing = gateway.billing.get(&gateway, model);
        Self {
            gateway,
            caller,
            billing,
            started: Instant::now(),
            first_token: None,
            usage: Usage::default(),
            settled: false,
        }
    }

    /// The answer has begun.
    pub(crate) fn first_token(&mut self) {
        self.first_token.get_or_insert_with(|| self.started.elapsed());
    }

    /// Adds reported usage (a stream may report it in parts).
    pub(crate) fn add_usage(&mut self, usage: &Usage) {
        self.usage.update(*usage);
    }

    /// Settles the request now.
    pub(crate) fn settle(mut self) {
        self.settle_once();
    }

    fn settle_once(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let billing = &self.billing;
        let usage = &self.usage;
        billing.tokens.add(usage.input_tokens, usage.output_tokens);
        let Some(ledger) = &self.gateway.ledger else { return };
        let cost = billing.price.map(|price| price.cost(usage));
        let record = UsageRecord {
            at: chrono::Utc::now(),
            session_id: None,
            agent: format!("api:{}", self.caller.label()),
            provider: billing.provider.clone(),
            model: billing.model.clone(),
            usage: self.usage,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ttft_ms: self.first_token.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            cost_usd: cost,
            estimated: false,
        };
        let key_id = match &self.caller {
            Caller::Key(key) => {
                if let Some(cost) = cost {
                    self.gateway.key_cache.add_spend(&key.id, cost);
                }
                Some(key.id.clone())
            }
            _ => None,
        };
        ledger.push(record, key_id);
    }
}

impl Drop for Bill {
    fn drop(&mut self) {
        self.settle_once();
    }
}
