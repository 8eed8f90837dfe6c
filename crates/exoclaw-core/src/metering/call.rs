//! [`MeteredModels`]: model calls made outside a turn's agent loop — memory's archival summaries
//! and fact extraction — metered the way the loop meters a turn's calls: held against the
//! budgets (and the turn's [`Payer`]) before the call, priced and recorded in the usage ledger
//! after it, marked with what they were for.

use super::{CallScope, DEFAULT_OUTPUT_ESTIMATE, Estimate, HeldCall, Metering, Payer};
use crate::{Provider, ProviderError, UsageStore};
use exoclaw_types::{CallPurpose, ChatRequest, ChatResponse, ErrorCode, SessionId, UsageRecord};
use std::sync::Arc;
use std::time::Instant;

/// A provider (the runtime's router) whose every call is metered: refused before it is made when
/// a budget or the payer cannot cover it, and recorded in the usage ledger once answered.
#[derive(Clone)]
pub struct MeteredModels {
    models: Arc<dyn Provider>,
    metering: Arc<Metering>,
    /// Where the calls' usage records go; `None` keeps them nowhere (the budgets still count
    /// them while the process runs).
    ledger: Option<Arc<dyn UsageStore>>,
}

impl std::fmt::Debug for MeteredModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredModels")
            .field("models", &self.models.name())
            .field("metering", &self.metering)
            .field("ledger", &self.ledger.is_some())
            .finish()
    }
}

/// Whom a metered call is made for: the budgets' scope, what it is for, and who pays besides the
/// budgets (the payer of the turn the work follows, when it had one).
#[derive(Clone, Copy)]
pub struct CallFor<'a> {
    /// The session the call serves, if any.
    pub session: Option<SessionId>,
    /// The agent it is made for (whose budgets count it).
    pub agent: &'a str,
    /// What it is for, as its usage record says.
    pub purpose: CallPurpose,
    /// Who pays for it besides the budgets.
    pub payer: Option<&'a dyn Payer>,
}

/// Why a metered call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ModelCallError {
    /// A budget or the payer refused it: the model was not asked.
    #[error("{model} was not called: {message}")]
    Refused {
        /// The `provider/model` asked for.
        model: String,
        /// The refusal's code (`budget_exceeded`, `budget_unpriced`).
        code: ErrorCode,
        /// What happened and what to do.
        message: String,
    },
    /// The model was asked and failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

impl MeteredModels {
    /// Calls to `models` held against `metering`'s budgets and recorded in `ledger`.
    pub fn new(models: Arc<dyn Provider>, metering: Arc<Metering>, ledger: Arc<dyn UsageStore>) -> Self {
        Self { models, metering, ledger: Some(ledger) }
    }

    /// Calls to `models` priced with the shipped prices, held against no budget and recorded
    /// nowhere: for a library user or a test that meters nothing.
    pub fn unmetered(models: Arc<dyn Provider>) -> Self {
        Self { models, metering: Arc::new(Metering::default()), ledger: None }
    }

    /// Sends `request` (its model named `provider/model`, as the router takes it) for `call` and
    /// waits for the whole answer. Before the call its most (the prompt at four characters a
    /// token, the answer at its `max_tokens`) is held against the budgets of the call's session
    /// and agent and then with its payer; a refusal asks nothing. After it, the usage (estimated
    /// where the provider reported none) is priced, settled with both and recorded in the
    /// ledger; a ledger that cannot be written is logged, the answer still given.
    pub async fn complete(
        &self,
        request: ChatRequest,
        call: CallFor<'_>,
    ) -> Result<ChatResponse, ModelCallError> {
        let asked = request.model.0.clone();
        let (provider, model) = asked.split_once('/').unwrap_or(("", asked.as_str()));
        let prompt_chars = Estimate::prompt_chars(&request);
        let max_output = request.params.max_tokens.map_or(DEFAULT_OUTPUT_ESTIMATE, u64::from);
        let estimate =
            self.metering.estimate(provider, model, Estimate::tokens_for_chars(prompt_chars), max_output);
        let scope = CallScope { session: call.session, agent: call.agent };
        let held = HeldCall::take(&self.metering, &scope, call.payer, &asked, estimate)
            .map_err(|(code, message)| ModelCallError::Refused { model: asked.clone(), code, message })?;
        let started = Instant::now();
        // A failed call drops the reservation and the payer's hold: released, charged nothing.
        let response = self.models.complete(request).await?;
        let (usage, estimated) = Estimate::fill_in(response.usage, prompt_chars, &response.message);
        let (provider, model) = match &response.served {
            Some(served) => (served.provider.clone(), served.model.0.clone()),
            None => (provider.to_owned(), model.to_owned()),
        };
        let cost_usd = self.metering.cost(&provider, &model, &usage);
        let record = UsageRecord {
            at: self.metering.now(),
            session_id: call.session,
            agent: call.agent.to_owned(),
            provider,
            model,
            usage,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ttft_ms: None,
            cost_usd,
            estimated,
            purpose: call.purpose,
        };
        held.settle(&usage, cost_usd);
        if let Some(ledger) = &self.ledger
            && let Err(e) = ledger.record_usage(&record).await
        {
            tracing::warn!(
                error = %e,
                purpose = %record.purpose,
                "a model call's usage could not be recorded in the ledger; the budgets counted it"
            );
        }
        Ok(response)
    }

    /// The provider the calls go to.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.models
    }
}
