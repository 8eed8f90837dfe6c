//! `exoclaw usage`: what the model calls cost, by day, model, agent and purpose (answers, or
//! memory's summaries and fact extraction), from the usage ledger.

#![allow(clippy::print_stdout)]

use crate::app::App;
use exoclaw_core::UsageStore;
use exoclaw_types::UsageRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// `exoclaw usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// How many days back, counting today (UTC).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// As JSON: `{"by_day": […], "by_model": […], "by_agent": […], "by_purpose": […], "total": {…}}`.
    #[arg(long)]
    json: bool,
}

/// Totals of a group of calls.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Totals {
    /// The group: a day (`2026-12-01`), a `provider/model`, an agent, a purpose (`answer`,
    /// `summary`, `facts`), or `total`.
    pub key: String,
    /// Model calls.
    pub calls: u64,
    /// Input tokens (cached ones included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in USD of the calls whose price is known.
    pub cost_usd: f64,
    /// Calls with no known price.
    pub unpriced_calls: u64,
    /// Calls whose token counts were estimated (the provider did not report them).
    pub estimated_calls: u64,
}

impl Totals {
    fn add(&mut self, record: &UsageRecord) {
        self.calls += 1;
        self.input_tokens += record.usage.input_tokens.unwrap_or(0);
        self.output_tokens += record.usage.output_tokens.unwrap_or(0);
        match record.cost_usd {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced_calls += 1,
        }
        if record.estimated {
            self.estimated_calls += 1;
        }
    }
}

/// The ledger grouped four ways, and the grand total.
#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    /// Per UTC day, oldest first.
    pub by_day: Vec<Totals>,
    /// Per `provider/model`, most expensive (then most used) first.
    pub by_model: Vec<Totals>,
    /// Per agent, most expensive first.
    pub by_agent: Vec<Totals>,
    /// Per purpose: answers, and memory's own calls (summaries, facts); most expensive first.
    pub by_purpose: Vec<Totals>,
    /// Everything.
    pub total: Totals,
}

/// Groups `records`.
pub fn report(records: &[UsageRecord]) -> Report {
    let mut by_day: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_agent: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_purpose: BTreeMap<String, Totals> = BTreeMap::new();
    let mut total = Totals { key: "total".to_owned(), ..Totals::default() };
    for record in records {
        let day = record.at.format("%Y-%m-%d").to_string();
        let model = format!("{}/{}", record.provider, record.model);
        let purpose = record.purpose.as_str().to_owned();
        for (map, key) in [
            (&mut by_day, day),
            (&mut by_model, model),
            (&mut by_agent, record.agent.clone()),
            (&mut by_purpose, purpose),
        ] {
            map.entry(key.clone()).or_insert_with(|| Totals { key, ..Totals::default() }).add(record);
        }
        total.add(record);
    }
    let ranked = |map: BTreeMap<String, Totals>| {
        let mut rows: Vec<Totals> = map.into_values().collect();
        rows.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then(b.calls.cmp(&a.calls)));
        rows
    };
    Report {
        by_day: by_day.into_values().collect(),
        by_model: ranked(by_model),
        by_agent: ranked(by_agent),
        by_purpose: ranked(by_purpose),
        total,
    }
}

/// Runs `exoclaw usage`.
pub async fn run(config: Option<&Path>, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    let today = chrono::Utc::now().date_naive();
    let first = today - chrono::Days::new(u64::from(args.days.max(1) - 1));
    let since = first.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(chrono::Utc::now);
    let records = app.store.usage_since(since).await?;
    let report = report(&records);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        println!("no model calls since {first} (UTC)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Usage since {first} (UTC)\n");
    table("DAY", &report.by_day);
    table("MODEL", &report.by_model);
    table("AGENT", &report.by_agent);
    table("PURPOSE", &report.by_purpose);
    let t = &report.total;
    println!(
        "total: {} calls, {} in / {} out tokens, ${:.4}{}{}",
        t.calls,
        t.input_tokens,
        t.output_tokens,
        t.cost_usd,
        if t.unpriced_calls > 0 {
            format!(" (+{} calls with no known price)", t.unpriced_calls)
        } else {
            String::new()
        },
        if t.estimated_calls > 0 {
            format!("; {} calls' tokens estimated", t.estimated_calls)
        } else {
            String::new()
        },
    );
    Ok(ExitCode::SUCCESS)
}

fn table(title: &str, rows: &[Totals]) {
    println!("{title:<40} {:>6} {:>10} {:>10} {:>10}", "CALLS", "IN", "OUT", "USD");
    for row in rows {
        let estimated = if row.estimated_calls > 0 { " ~" } else { "" };
        println!(
            "{:<40} {:>6} {:>10} {:>10} {:>10.4}{estimated}",
            row.key, row.calls, row.input_tokens, row.output_tokens, row.cost_usd
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::Usage;

    fn record(day: u32, provider: &str, agent: &str, cost: Option<f64>, estimated: bool) -> UsageRecord {
        purposed(day, provider, agent, cost, estimated, exoclaw_types::CallPurpose::Answer)
    }

    fn purposed(
        day: u32,
        provider: &str,
        agent: &str,
        cost: Option<f64>,
        estimated: bool,
        purpose: exoclaw_types::CallPurpose,
    ) -> UsageRecord {
        UsageRecord {
            at: chrono::NaiveDate::from_ymd_opt(2026, 12, day)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc(),
            session_id: None,
            agent: agent.into(),
            provider: provider.into(),
            model: "m".into(),
            usage: Usage { input_tokens: Some(100), output_tokens: Some(10), ..Usage::default() },
            latency_ms: 5,
            ttft_ms: None,
            cost_usd: cost,
            estimated,
            purpose,
        }
    }

    #[test]
    fn groups_by_day_model_and_agent_and_counts_unpriced_and_estimated_calls() {
        let records = [
            record(1, "anthropic", "dev", Some(0.01), false),
            record(1, "local", "dev", Some(0.0), true),
            record(2, "anthropic", "qa", Some(0.03), false),
            record(2, "work", "qa", None, false),
        ];
        let r = report(&records);
        assert_eq!(
            r.by_day.iter().map(|t| (t.key.as_str(), t.calls)).collect::<Vec<_>>(),
            [("2026-12-01", 2), ("2026-12-02", 2)]
        );
        assert_eq!(r.by_model[0].key, "anthropic/m", "most expensive first");
        assert!((r.by_model[0].cost_usd - 0.04).abs() < 1e-12);
        assert_eq!(r.by_agent[0].key, "qa");
        assert_eq!((r.total.calls, r.total.input_tokens, r.total.output_tokens), (4, 400, 40));
        assert_eq!((r.total.unpriced_calls, r.total.estimated_calls), (1, 1));
    }

    #[test]
    fn memorys_calls_are_told_apart_from_answers() {
        use exoclaw_types::CallPurpose;
        let records = [
            purposed(1, "anthropic", "dev", Some(0.01), false, CallPurpose::Answer),
            purposed(1, "anthropic", "dev", Some(0.003), false, CallPurpose::Summary),
            purposed(1, "anthropic", "dev", Some(0.001), false, CallPurpose::Facts),
            purposed(2, "anthropic", "dev", Some(0.001), false, CallPurpose::Facts),
        ];
        let r = report(&records);
        assert_eq!(
            r.by_purpose.iter().map(|t| (t.key.as_str(), t.calls)).collect::<Vec<_>>(),
            [("answer", 1), ("summary", 1), ("facts", 2)],
            "most expensive first"
        );
        assert_eq!(r.by_agent[0].calls, 4, "memory's calls count for the agent they were made for");
    }
}
