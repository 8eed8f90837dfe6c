//! The ledger as a user meets it: refusals, scopes, window rollover on a test clock, restarts,
//! and parallel calls that must not overspend.

use super::*;
use crate::metering::TestClock;
use crate::metering::budget::BudgetWindow;
use chrono::{TimeDelta, TimeZone};
use exoclaw_types::Usage;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn clock(now: DateTime<Utc>) -> Arc<TestClock> {
    Arc::new(TestClock::new(now))
}

fn tokens(name: &str, scope: BudgetScope, window: BudgetWindow, max: u64) -> BudgetSpec {
    BudgetSpec { name: name.into(), scope, window, max_tokens: Some(max), max_usd: None }
}

fn dollars(name: &str, scope: BudgetScope, window: BudgetWindow, max: f64) -> BudgetSpec {
    BudgetSpec { name: name.into(), scope, window, max_tokens: None, max_usd: Some(max) }
}

fn est(tokens: u64) -> Estimate {
    Estimate { tokens, usd: Some(0.0) }
}

const ADA: &str = "ada";

fn call(session: SessionId) -> CallScope<'static> {
    CallScope { session: Some(session), agent: ADA }
}

/// Reserves `estimate` and settles it with `actual` tokens (and no dollars).
fn spend(budgets: &Budgets, scope: &CallScope<'_>, estimate: u64, actual: u64) -> Result<(), BudgetError> {
    budgets.reserve(scope, est(estimate)).map(|r| r.settle(actual, Some(0.0)))
}

fn refused_by(result: Result<(), BudgetError>) -> String {
    match result {
        Err(BudgetError::Exceeded(e)) => e.budget,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn spent(budgets: &Budgets, scope: &CallScope<'_>) -> Vec<(String, u64, u64)> {
    budgets.status(scope).into_iter().map(|s| (s.spec.name, s.spent_tokens, s.held_tokens)).collect()
}

fn record(
    at: DateTime<Utc>,
    session: Option<SessionId>,
    agent: &str,
    tokens: u64,
    usd: Option<f64>,
) -> UsageRecord {
    UsageRecord {
        at,
        session_id: session,
        agent: agent.into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        usage: Usage {
            input_tokens: Some(tokens - tokens / 4),
            output_tokens: Some(tokens / 4),
            ..Usage::default()
        },
        latency_ms: 1,
        ttft_ms: None,
        cost_usd: usd,
        estimated: false,
        purpose: exoclaw_types::CallPurpose::Answer,
    }
}

#[test]
fn a_call_that_would_go_over_the_limit_is_refused_and_reserves_nothing() {
    let budgets = Budgets::new(
        vec![
            tokens("roomy", BudgetScope::Global, BudgetWindow::Total, 1_000_000),
            tokens("tight", BudgetScope::Global, BudgetWindow::Total, 1_000),
        ],
        clock(at(2025, 6, 1, 12, 0)),
    );
    let scope = call(SessionId::new());
    spend(&budgets, &scope, 600, 500).unwrap();
    // 500 spent + 600 asked > 1,000.
    assert_eq!(refused_by(spend(&budgets, &scope, 600, 0)), "tight");
    // The refused call held nothing in either budget; one that fits goes through.
    assert_eq!(spent(&budgets, &scope), vec![("roomy".into(), 500, 0), ("tight".into(), 500, 0)]);
    spend(&budgets, &scope, 500, 500).unwrap();
    assert_eq!(refused_by(spend(&budgets, &scope, 1, 1)), "tight");
}

#[test]
fn running_calls_hold_their_estimate_and_release_it_when_dropped() {
    let budgets = Budgets::new(
        vec![tokens("cap", BudgetScope::Global, BudgetWindow::Total, 1_000)],
        clock(at(2025, 6, 1, 12, 0)),
    );
    let scope = call(SessionId::new());
    let first = budgets.reserve(&scope, est(700)).unwrap();
    assert_eq!(spent(&budgets, &scope), vec![("cap".into(), 0, 700)]);
    let err = budgets.reserve(&scope, est(400)).unwrap_err();
    let BudgetError::Exceeded(exceeded) = &err else { panic!("{err:?}") };
    assert_eq!((exceeded.spent_tokens, exceeded.held_tokens), (0, 700));
    assert!(err.to_string().contains("(and 700 tokens held by calls in progress)"), "{err}");
    // A call cancelled before it reached the model gives its hold back.
    drop(first);
    assert_eq!(spent(&budgets, &scope), vec![("cap".into(), 0, 0)]);
    let second = budgets.reserve(&scope, est(700)).unwrap();
    second.settle(650, Some(0.0));
    assert_eq!(spent(&budgets, &scope), vec![("cap".into(), 650, 0)]);
}

#[test]
fn scopes_count_the_calls_they_name() {
    let (s1, s2) = (SessionId::new(), SessionId::new());
    let budgets = Budgets::new(
        vec![
            tokens("everyone", BudgetScope::Global, BudgetWindow::Total, 10_000),
            tokens("ada", BudgetScope::Agent(ADA.into()), BudgetWindow::Total, 10_000),
            tokens("s1", BudgetScope::Session(s1), BudgetWindow::Total, 10_000),
            tokens("each-session", BudgetScope::PerSession, BudgetWindow::Total, 250),
            tokens("each-agent", BudgetScope::PerAgent, BudgetWindow::Total, 10_000),
        ],
        clock(at(2025, 6, 1, 12, 0)),
    );
    let bob_s2 = CallScope { session: Some(s2), agent: "bob" };
    let ada_no_session = CallScope { session: None, agent: ADA };
    spend(&budgets, &call(s1), 100, 100).unwrap();
    spend(&budgets, &call(s2), 200, 200).unwrap();
    spend(&budgets, &bob_s2, 40, 40).unwrap();
    spend(&budgets, &ada_no_session, 8, 8).unwrap();

    let view = |scope: &CallScope<'_>| {
        spent(&budgets, scope).into_iter().map(|(n, t, _)| (n, t)).collect::<Vec<_>>()
    };
    let named = |pairs: &[(&str, u64)]| pairs.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect::<Vec<_>>();
    assert_eq!(
        view(&call(s1)),
        named(&[("everyone", 348), ("ada", 308), ("s1", 100), ("each-session", 100), ("each-agent", 308)])
    );
    assert_eq!(view(&bob_s2), named(&[("everyone", 348), ("each-session", 240), ("each-agent", 40)]));
    // Outside a session only the global and agent budgets apply.
    assert_eq!(view(&ada_no_session), named(&[("everyone", 348), ("ada", 308), ("each-agent", 308)]));
    // Each session has the whole per-session limit: s2 is nearly out, s1 is not.
    assert_eq!(refused_by(spend(&budgets, &bob_s2, 20, 20)), "each-session");
    spend(&budgets, &call(s1), 20, 20).unwrap();
}

#[test]
fn daily_and_monthly_windows_roll_over_at_utc_midnight() {
    let clock = clock(at(2025, 1, 31, 23, 50));
    let budgets = Budgets::new(
        vec![
            tokens("day", BudgetScope::Global, BudgetWindow::Daily, 1_000),
            tokens("month", BudgetScope::Global, BudgetWindow::Monthly, 2_500),
            tokens("ever", BudgetScope::Global, BudgetWindow::Total, 100_000),
        ],
        clock.clone(),
    );
    let scope = call(SessionId::new());
    spend(&budgets, &scope, 900, 900).unwrap();
    let err = budgets.reserve(&scope, est(200)).unwrap_err();
    assert!(err.to_string().contains("wait for the window to reset at 2025-02-01 00:00 UTC"), "{err}");

    // Midnight, and a new month: both windows start from zero; the total keeps counting.
    clock.set(at(2025, 2, 1, 0, 0));
    assert_eq!(
        spent(&budgets, &scope),
        vec![("day".into(), 0, 0), ("month".into(), 0, 0), ("ever".into(), 900, 0)]
    );
    for _ in 0..2 {
        spend(&budgets, &scope, 900, 900).unwrap();
        clock.advance(TimeDelta::days(1));
    }
    // Feb 3: 1,800 spent this month; 900 more would pass 2,500.
    assert_eq!(refused_by(spend(&budgets, &scope, 900, 900)), "month");
    clock.set(at(2025, 3, 1, 0, 0));
    spend(&budgets, &scope, 900, 900).unwrap();
    assert_eq!(spent(&budgets, &scope)[2], ("ever".into(), 3_600, 0));
}

#[test]
fn a_call_running_over_midnight_is_charged_to_the_day_it_ended() {
    let clock = clock(at(2025, 6, 1, 23, 59));
    let budgets =
        Budgets::new(vec![tokens("day", BudgetScope::Global, BudgetWindow::Daily, 1_000)], clock.clone());
    let scope = call(SessionId::new());
    let running = budgets.reserve(&scope, est(800)).unwrap();
    clock.advance(TimeDelta::minutes(2));
    // The old day's hold went with the old day.
    assert_eq!(spent(&budgets, &scope), vec![("day".into(), 0, 0)]);
    let other = budgets.reserve(&scope, est(100)).unwrap();
    running.settle(700, None);
    assert_eq!(spent(&budgets, &scope), vec![("day".into(), 700, 100)]);
    drop(other);
    assert_eq!(spent(&budgets, &scope), vec![("day".into(), 700, 0)]);
}

#[test]
fn a_restart_restores_the_spend_of_the_current_windows_from_the_ledger() {
    let now = at(2025, 6, 15, 12, 0);
    let (s1, s2) = (SessionId::new(), SessionId::new());
    let specs = vec![
        dollars("day-usd", BudgetScope::Global, BudgetWindow::Daily, 5.0),
        tokens("month", BudgetScope::Agent(ADA.into()), BudgetWindow::Monthly, 1_000_000),
        tokens("per-session", BudgetScope::PerSession, BudgetWindow::Total, 10_000),
    ];
    let ledger = vec![
        record(at(2025, 5, 31, 23, 59), Some(s1), ADA, 4_000, Some(1.0)), // last month
        record(at(2025, 6, 14, 23, 59), Some(s1), ADA, 2_000, Some(2.0)), // yesterday
        record(at(2025, 6, 15, 0, 0), Some(s1), ADA, 1_000, Some(1.5)),   // today
        record(at(2025, 6, 15, 11, 0), Some(s2), "bob", 400, Some(0.25)), // today, another agent
        record(at(2025, 6, 15, 11, 30), None, ADA, 100, None),            // a deleted session, no price
    ];
    let since = Budgets::history_start(&specs, now).unwrap();
    assert_eq!(since, DateTime::<Utc>::UNIX_EPOCH, "a total budget needs the whole ledger");
    let budgets = Budgets::load(specs.clone(), clock(now), &ledger);
    let status: Vec<(String, u64, f64)> =
        budgets.status(&call(s1)).into_iter().map(|s| (s.spec.name, s.spent_tokens, s.spent_usd)).collect();
    assert_eq!(
        status,
        vec![
            ("day-usd".to_owned(), 1_500, 1.75),
            ("month".to_owned(), 3_100, 0.0 + 2.0 + 1.5),
            ("per-session".to_owned(), 7_000, 4.5),
        ]
    );
    // Per-session spend follows the session, whichever agent answered in it.
    assert_eq!(budgets.status(&call(s2))[2].spent_tokens, 400);
    // The restored spend refuses what the live one would have: $1.75 + $3.50 > $5.
    let pricey = Estimate { tokens: 1, usd: Some(3.5) };
    assert!(matches!(budgets.reserve(&call(s1), pricey), Err(BudgetError::Exceeded(_))));

    // Live spend and restored spend agree: replay the same calls through reservations.
    let live = Budgets::new(specs, clock(at(2025, 6, 15, 0, 0)));
    for r in &ledger[2..] {
        let scope = CallScope { session: r.session_id, agent: &r.agent };
        let estimate = Estimate { tokens: record_tokens(r), usd: Some(r.cost_usd.unwrap_or(0.0)) };
        live.reserve(&scope, estimate).unwrap().settle(record_tokens(r), r.cost_usd);
    }
    let restored_today = Budgets::load(live.specs().to_vec(), clock(at(2025, 6, 15, 0, 0)), &ledger[2..]);
    for scope in [call(s1), call(s2), CallScope { session: None, agent: ADA }] {
        assert_eq!(live.status(&scope), restored_today.status(&scope));
    }
}

#[test]
fn a_dollar_budget_refuses_a_model_without_a_price_but_a_token_budget_does_not() {
    let scope = call(SessionId::new());
    let unpriced = Estimate { tokens: 10, usd: None };
    let tokens_only = Budgets::new(
        vec![tokens("t", BudgetScope::Global, BudgetWindow::Daily, 100)],
        clock(at(2025, 6, 1, 0, 0)),
    );
    tokens_only.reserve(&scope, unpriced).unwrap().settle(10, None);
    let usd = Budgets::new(
        vec![dollars("usd", BudgetScope::Agent(ADA.into()), BudgetWindow::Monthly, 1.0)],
        clock(at(2025, 6, 1, 0, 0)),
    );
    let err = usd.reserve(&scope, unpriced).unwrap_err();
    assert_eq!(err, BudgetError::Unpriced { budget: "usd".into() });
    assert_eq!(err.code(), exoclaw_types::ErrorCode::BudgetUnpriced);
    // Another agent's calls are not under that budget.
    usd.reserve(&CallScope { session: None, agent: "bob" }, unpriced).unwrap().settle(10, None);
}

#[test]
fn no_budgets_let_everything_through_and_need_no_history() {
    let budgets = Budgets::default();
    let scope = call(SessionId::new());
    budgets.reserve(&scope, Estimate { tokens: u64::MAX, usd: None }).unwrap().settle(u64::MAX, None);
    assert!(budgets.status(&scope).is_empty());
    assert_eq!(Budgets::history_start(&[], Utc::now()), None);
    let specs = [
        tokens("d", BudgetScope::Global, BudgetWindow::Daily, 1),
        tokens("m", BudgetScope::Global, BudgetWindow::Monthly, 1),
    ];
    assert_eq!(Budgets::history_start(&specs, at(2025, 6, 15, 12, 0)), Some(at(2025, 6, 1, 0, 0)));
}

#[test]
fn spends_of_past_windows_are_dropped_once_there_are_many() {
    let clock = clock(at(2025, 6, 1, 12, 0));
    let budgets = Budgets::new(
        vec![tokens("chat", BudgetScope::PerSession, BudgetWindow::Daily, 1_000)],
        clock.clone(),
    );
    for _ in 0..1_000 {
        spend(&budgets, &call(SessionId::new()), 10, 10).unwrap();
    }
    assert_eq!(budgets.lock().spend.len(), 1_000, "nothing is stale yet");
    clock.advance(TimeDelta::days(1));
    let held = budgets.reserve(&call(SessionId::new()), est(10)).unwrap();
    for _ in 0..100 {
        spend(&budgets, &call(SessionId::new()), 10, 10).unwrap();
    }
    // Yesterday's 1,000 went when the map passed the floor; today's 101 stay.
    assert_eq!(budgets.lock().spend.len(), 101);
    held.settle(10, None);
}

// ---------------------------------------------------------------------------------------------
// Parallel calls

/// `tasks` tasks on a multi-threaded runtime each make calls until the budget refuses one; each
/// call holds its reservation across an await (the model call) before settling with
/// `actual(estimate, n)`. Returns the tokens spent and the most calls that were running at once.
async fn hammer(limit: u64, tasks: usize, estimate: u64, actual: fn(u64, u64) -> u64) -> (u64, usize) {
    let budgets = Budgets::new(
        vec![tokens("cap", BudgetScope::Global, BudgetWindow::Daily, limit)],
        Arc::new(crate::metering::SystemClock),
    );
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (budgets, running, peak, calls) = (budgets.clone(), running.clone(), peak.clone(), calls.clone());
        handles.push(tokio::spawn(async move {
            let scope = CallScope { session: Some(SessionId::new()), agent: ADA };
            loop {
                // Counted from before the reservation to after the settlement, so `peak` is never
                // below the number of calls holding reservations at once.
                let now_running = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now_running, Ordering::SeqCst);
                let Ok(reservation) = budgets.reserve(&scope, est(estimate)) else {
                    running.fetch_sub(1, Ordering::SeqCst);
                    break;
                };
                let n = calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                reservation.settle(actual(estimate, n), None);
                running.fetch_sub(1, Ordering::SeqCst);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let status = budgets.status(&CallScope { session: None, agent: ADA });
    assert_eq!(status[0].held_tokens, 0, "every hold was settled");
    (status[0].spent_tokens, peak.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_calls_never_overspend_when_estimates_are_upper_bounds() {
    // Each call uses between half and all of its estimate.
    let (spent, peak) = hammer(100_000, 64, 100, |estimate, n| estimate / 2 + n % (estimate / 2 + 1)).await;
    assert!(spent <= 100_000, "spent {spent} of 100,000");
    // The budget was used, not refused early: the last refusal came with less than one estimate
    // free beyond what running calls held, and they used at least half of it.
    assert!(spent >= 100_000 - 100 * (peak as u64 + 1), "spent only {spent} (peak {peak} calls at once)");
    assert!(peak > 1, "the calls did run in parallel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_underestimates_overspend_by_at_most_the_running_calls_errors() {
    // Every call uses 10 tokens more than it reserved.
    let (spent, peak) = hammer(100_000, 64, 100, |estimate, _| estimate + 10).await;
    assert!(spent > 100_000 - 110, "spent {spent}");
    assert!(spent <= 100_000 + 10 * peak as u64, "spent {spent} with at most {peak} calls at once");
}

#[tokio::test]
async fn calls_one_after_another_overspend_by_at_most_one_calls_error() {
    // Current-thread runtime, one task: calls never overlap.
    let (spent, peak) = hammer(100_000, 1, 100, |estimate, _| estimate + 37).await;
    assert_eq!(peak, 1);
    assert!((100_000..=100_000 + 37).contains(&spent), "spent {spent}");
}
