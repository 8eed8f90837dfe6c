//! A turn's payer: held before each model call, charged what the call cost after it, and able to
//! refuse a call before the model is asked.

use super::*;
use exoclaw_core::{Estimate, Hold, NoCheckpoints, Payer, PayerRefusal};
use exoclaw_types::ErrorCode;
use pretty_assertions::assert_eq;

/// A purse of `budget_usd` that holds estimates and records what it was charged.
#[derive(Debug)]
struct Purse {
    budget_usd: f64,
    state: Mutex<PurseState>,
}

#[derive(Debug, Default)]
struct PurseState {
    held: f64,
    spent: f64,
    /// `priced_as` of every hold asked for.
    asked: Vec<String>,
    /// Every hold given, USD.
    holds: Vec<f64>,
}

impl Purse {
    fn new(budget_usd: f64) -> Arc<Self> {
        Arc::new(Self { budget_usd, state: Mutex::default() })
    }

    fn held_and_spent(&self) -> (f64, f64) {
        let state = self.state.lock().unwrap();
        (state.held, state.spent)
    }
}

impl Payer for Purse {
    fn reserve(&self, priced_as: &str, estimate: Estimate) -> Result<Hold, PayerRefusal> {
        let mut state = self.state.lock().unwrap();
        state.asked.push(priced_as.to_owned());
        let usd = estimate.usd.unwrap_or(0.0);
        if state.spent + state.held + usd > self.budget_usd {
            return Err(PayerRefusal {
                code: ErrorCode::BudgetExceeded,
                message: "the key `team` cannot cover this call".into(),
            });
        }
        state.held += usd;
        state.holds.push(usd);
        Ok(Hold { usd })
    }

    fn settle(&self, hold: Hold, cost_usd: Option<f64>) {
        let mut state = self.state.lock().unwrap();
        state.held -= hold.usd;
        state.spent += cost_usd.unwrap_or(0.0);
    }
}

async fn paid_turn(h: &Harness, purse: &Arc<Purse>) -> Outcome {
    let recorder = Recorder::new();
    let run = h.runner.start(Vec::new(), Message::user("go"));
    let payer: &dyn Payer = &**purse;
    let result = h
        .runner
        .drive_checkpointed(
            run,
            SessionId::new(),
            &CancellationToken::new(),
            &recorder,
            &NoCheckpoints,
            Some(payer),
        )
        .await;
    Outcome { result, events: recorder.events() }
}

fn priced(h: Harness) -> Harness {
    let runner = h
        .runner
        .clone()
        .with_params(GenerationParams { max_tokens: Some(100), ..Default::default() })
        .with_metering(metered(Vec::new()));
    Harness { runner, ..h }
}

#[tokio::test]
async fn each_call_is_held_before_it_is_made_and_charged_what_it_cost() {
    let h = priced(harness([
        Script::Answer(calls(&[("c1", "echo", json!({"text": "x"}))])),
        Script::Answer(text("Done.")),
    ]));
    let purse = Purse::new(1.0);
    let out = paid_turn(&h, &purse).await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    let (held, spent) = purse.held_and_spent();
    let recorded: f64 = out.result.usage.iter().map(|r| r.cost_usd.unwrap()).sum();
    assert_eq!(out.result.usage.len(), 2);
    assert!(held.abs() < 1e-12, "nothing stays held: {held}");
    assert!((spent - recorded).abs() < 1e-12, "charged {spent}, the records say {recorded}");
    assert_eq!(purse.state.lock().unwrap().asked, ["fake/fake-model", "fake/fake-model"]);
}

#[tokio::test]
async fn a_payer_that_refuses_ends_the_turn_before_the_model_is_asked_with_its_code() {
    let script = || {
        priced(harness([
            Script::Answer(calls(&[("c1", "echo", json!({"text": "x"}))])),
            Script::Answer(text("Never sent.")),
        ]))
    };
    // What the first call holds (100 answer tokens at $15/M and the prompt), from a turn that can
    // pay for everything. The second call's prompt is longer, so it holds more.
    let rich = Purse::new(1.0);
    paid_turn(&script(), &rich).await;
    let first_hold = rich.state.lock().unwrap().holds[0];
    // Room for the first call's hold only.
    let h = script();
    let purse = Purse::new(first_hold * 1.01);
    let out = paid_turn(&h, &purse).await;
    assert_eq!(h.provider.requests().len(), 1, "the second call was refused before it was sent");
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(
        out.error(),
        Some((
            "budget_exceeded".to_owned(),
            "fake/fake-model was not called: the key `team` cannot cover this call".to_owned()
        ))
    );
    // The first call was charged what it cost; the refused one holds nothing.
    let (held, spent) = purse.held_and_spent();
    assert!(held.abs() < 1e-12, "{held}");
    assert!((spent - out.result.usage[0].cost_usd.unwrap()).abs() < 1e-12);
    assert_eq!(out.roles(), vec![Role::User, Role::Assistant, Role::Tool]);
}

#[tokio::test]
async fn a_call_that_fails_before_answering_is_settled_at_zero() {
    let refusal = ProviderError::new(ErrorKind::Server, "fake", "upstream down");
    let h = priced(harness([Script::Refuse(refusal)]));
    let purse = Purse::new(1.0);
    let out = paid_turn(&h, &purse).await;
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(out.error().unwrap().0, "server");
    assert_eq!(purse.held_and_spent(), (0.0, 0.0));
}

// ---------------------------------------------------------------------------------------------
// Calls outside a turn (memory's summaries and facts): held, charged and refused the same way.

/// A usage ledger in memory.
#[derive(Default)]
struct Ledger(Mutex<Vec<exoclaw_types::UsageRecord>>);

#[async_trait]
impl exoclaw_core::UsageStore for Ledger {
    async fn record_usage(
        &self,
        record: &exoclaw_types::UsageRecord,
    ) -> Result<(), exoclaw_core::StoreError> {
        self.0.lock().unwrap().push(record.clone());
        Ok(())
    }

    async fn usage_since(
        &self,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<exoclaw_types::UsageRecord>, exoclaw_core::StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// Calls to the harness's provider metered by `metering`, recorded in the returned ledger.
fn metered_models(h: &Harness, metering: &Arc<Metering>) -> (exoclaw_core::MeteredModels, Arc<Ledger>) {
    let ledger = Arc::new(Ledger::default());
    let models = exoclaw_core::MeteredModels::new(h.provider.clone(), Arc::clone(metering), ledger.clone());
    (models, ledger)
}

/// A summary of the kind memory asks for, answered in at most 100 tokens.
fn summary_request() -> ChatRequest {
    ChatRequest {
        params: GenerationParams { max_tokens: Some(100), ..Default::default() },
        ..ChatRequest::new("fake/fake-model", vec![Message::user("Summarise what was said.")])
    }
}

fn for_summary<'a>(session: SessionId, payer: &'a Purse) -> exoclaw_core::CallFor<'a> {
    exoclaw_core::CallFor {
        session: Some(session),
        agent: "tester",
        purpose: exoclaw_types::CallPurpose::Summary,
        payer: Some(payer),
    }
}

#[tokio::test]
async fn a_call_outside_a_turn_is_held_charged_and_recorded_with_its_purpose() {
    let h = harness([Script::Answer(text("A short summary."))]);
    let metering = metered(vec![global_tokens(1_000_000)]);
    let (models, ledger) = metered_models(&h, &metering);
    let purse = Purse::new(1.0);
    let session = SessionId::new();
    let answer = models.complete(summary_request(), for_summary(session, &purse)).await.unwrap();
    assert_eq!(answer.message.text(), "A short summary.");

    let records = ledger.0.lock().unwrap().clone();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.session_id, Some(session));
    assert_eq!(
        (record.agent.as_str(), record.provider.as_str(), record.model.as_str(), record.purpose),
        ("tester", "fake", "fake-model", exoclaw_types::CallPurpose::Summary)
    );
    let cost = record.cost_usd.expect("fake/fake-model has a price");
    let (held, spent) = purse.held_and_spent();
    assert!(held.abs() < 1e-12, "nothing stays held: {held}");
    assert!((spent - cost).abs() < 1e-12, "charged {spent}, the record says {cost}");
    let tokens = record.usage.input_tokens.unwrap() + record.usage.output_tokens.unwrap();
    assert_eq!(budget_spend(&metering), (tokens, 0), "the budget counts it");
}

#[tokio::test]
async fn a_call_outside_a_turn_that_a_budget_refuses_is_never_sent_and_records_nothing() {
    let h = harness([Script::Answer(text("Never sent."))]);
    // The answer's 100 tokens alone pass the cap.
    let metering = metered(vec![global_tokens(50)]);
    let (models, ledger) = metered_models(&h, &metering);
    let purse = Purse::new(1.0);
    let refused =
        models.complete(summary_request(), for_summary(SessionId::new(), &purse)).await.unwrap_err();
    let exoclaw_core::ModelCallError::Refused { model, code, message } = &refused else {
        panic!("refused by the budget, not {refused:?}");
    };
    assert_eq!((model.as_str(), *code), ("fake/fake-model", ErrorCode::BudgetExceeded));
    assert!(message.contains("budget `cap`"), "{message}");
    assert!(refused.to_string().starts_with("fake/fake-model was not called: budget `cap`"), "{refused}");
    assert!(h.provider.requests().is_empty(), "the model was not asked");
    assert!(ledger.0.lock().unwrap().is_empty());
    assert!(purse.state.lock().unwrap().asked.is_empty(), "the payer is asked only once the budgets agreed");
    assert_eq!(budget_spend(&metering), (0, 0), "the refused call holds nothing");
}

#[tokio::test]
async fn a_call_outside_a_turn_that_its_payer_refuses_is_never_sent_and_releases_the_budget() {
    let h = harness([Script::Answer(text("Never sent."))]);
    let metering = metered(vec![global_tokens(1_000_000)]);
    let (models, ledger) = metered_models(&h, &metering);
    let broke = Purse::new(0.0);
    let refused =
        models.complete(summary_request(), for_summary(SessionId::new(), &broke)).await.unwrap_err();
    assert_eq!(refused.to_string(), "fake/fake-model was not called: the key `team` cannot cover this call");
    assert!(h.provider.requests().is_empty());
    assert!(ledger.0.lock().unwrap().is_empty());
    assert_eq!(budget_spend(&metering), (0, 0), "the budgets' hold is released");
}
