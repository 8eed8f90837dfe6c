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
