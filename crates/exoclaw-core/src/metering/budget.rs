//! What a budget is ([`BudgetSpec`]: a scope, a UTC window, a limit in tokens and/or US dollars),
//! what a call asks of it ([`CallScope`], [`Estimate`]), and why it may say no ([`BudgetError`]).

use chrono::{DateTime, Datelike, Months, NaiveTime, TimeDelta, Utc};
use exoclaw_types::{ErrorCode, SessionId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One budget: at most `max_tokens` tokens and/or `max_usd` dollars per `window`, over the calls
/// of `scope`. A budget with neither limit never refuses anything.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpec {
    /// The budget's name, as errors and reports show it.
    pub name: String,
    /// Which calls it counts.
    pub scope: BudgetScope,
    /// Over what time its spend adds up.
    pub window: BudgetWindow,
    /// Most tokens (prompt plus output, cached prompt tokens included) per window.
    pub max_tokens: Option<u64>,
    /// Most US dollars per window.
    pub max_usd: Option<f64>,
}

/// Which model calls a budget counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// Every call, of every agent and session, together.
    Global,
    /// The calls of the agent with this name, together.
    Agent(String),
    /// The calls of this one session.
    Session(SessionId),
    /// Every session on its own: each has the whole limit.
    PerSession,
    /// Every agent on its own: each has the whole limit.
    PerAgent,
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("all agents together"),
            Self::Agent(agent) => write!(f, "agent `{agent}`"),
            Self::Session(id) => write!(f, "session {id}"),
            Self::PerSession => f.write_str("each session"),
            Self::PerAgent => f.write_str("each agent"),
        }
    }
}

/// Over what time a budget's spend adds up. Windows are UTC calendar days and months: a daily
/// budget starts afresh at 00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetWindow {
    /// For ever: spend never resets.
    Total,
    /// The UTC calendar day.
    Daily,
    /// The UTC calendar month.
    Monthly,
}

impl BudgetWindow {
    /// When the window holding `now` began ([`DateTime::<Utc>::MIN_UTC`] for `Total`).
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let day = now.date_naive();
        match self {
            Self::Total => DateTime::<Utc>::MIN_UTC,
            Self::Daily => day.and_time(NaiveTime::MIN).and_utc(),
            // Day 1 exists in every month.
            Self::Monthly => day.with_day(1).unwrap_or(day).and_time(NaiveTime::MIN).and_utc(),
        }
    }

    /// When the window holding `now` ends and the next begins; `None` for `Total`.
    pub fn end(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.start(now);
        match self {
            Self::Total => None,
            Self::Daily => start.checked_add_signed(TimeDelta::days(1)),
            Self::Monthly => start.checked_add_months(Months::new(1)),
        }
    }

    /// The window's name as config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }
}

impl fmt::Display for BudgetWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose call is asking: what budget scopes it falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallScope<'a> {
    /// The session the call serves, if any (calls outside a session count only for global and
    /// agent budgets).
    pub session: Option<SessionId>,
    /// The agent making the call.
    pub agent: &'a str,
}

/// What a call is expected to cost at most, reserved before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Estimate {
    /// Tokens: the prompt's, plus the most the answer may have.
    pub tokens: u64,
    /// US dollars; `None` when the model has no price.
    pub usd: Option<f64>,
}

/// Which limit of a budget a call would break.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetLimit {
    /// `max_tokens`.
    Tokens(u64),
    /// `max_usd`.
    Usd(f64),
}

/// A call was refused because it could take a budget over its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExceeded {
    /// The budget's name.
    pub budget: String,
    /// The budget's scope.
    pub scope: BudgetScope,
    /// The budget's window.
    pub window: BudgetWindow,
    /// The limit the call would break.
    pub limit: BudgetLimit,
    /// Tokens spent in this window by calls that finished.
    pub spent_tokens: u64,
    /// Dollars spent in this window by calls that finished.
    pub spent_usd: f64,
    /// Tokens reserved by calls still running.
    pub held_tokens: u64,
    /// Dollars reserved by calls still running.
    pub held_usd: f64,
    /// What the refused call asked for.
    pub estimate: Estimate,
    /// When the window resets; `None` for a `total` budget.
    pub resets_at: Option<DateTime<Utc>>,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match (self.window, &self.scope) {
            (BudgetWindow::Total, BudgetScope::Session(_) | BudgetScope::PerSession) => "in this session",
            (BudgetWindow::Total, _) => "so far",
            (BudgetWindow::Daily, _) => "today (UTC)",
            (BudgetWindow::Monthly, _) => "this month (UTC)",
        };
        let (field, spent, held, limit, needed) = match self.limit {
            BudgetLimit::Tokens(max) => (
                "max_tokens",
                tokens(self.spent_tokens),
                (self.held_tokens > 0).then(|| tokens(self.held_tokens)),
                tokens(max),
                tokens(self.estimate.tokens),
            ),
            BudgetLimit::Usd(max) => (
                "max_usd",
                usd(self.spent_usd),
                (self.held_usd > 0.0).then(|| usd(self.held_usd)),
                usd(max),
                usd(self.estimate.usd.unwrap_or(0.0)),
            ),
        };
        write!(
            f,
            "budget `{}` ({}, {}) would be exceeded: {spent} of {limit} spent {period}",
            self.budget, self.scope, self.window
        )?;
        if let Some(held) = held {
            write!(f, " (and {held} held by calls in progress)")?;
        }
        write!(
            f,
            ", and this call may need up to {needed} more; raise `{field}` of this budget in config.toml"
        )?;
        match self.resets_at {
            Some(at) => write!(f, ", or wait for the window to reset at {} UTC", at.format("%Y-%m-%d %H:%M")),
            None if matches!(self.scope, BudgetScope::Session(_) | BudgetScope::PerSession) => {
                f.write_str(", or start a new session")
            }
            None => Ok(()),
        }
    }
}

impl std::error::Error for BudgetExceeded {}

/// Why a budget refused a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// The call could take a budget over its limit.
    #[error("{0}")]
    Exceeded(Box<BudgetExceeded>),
    /// A budget caps dollars and the model has no price, so the call's cost could not be counted.
    #[error(
        "budget `{budget}` caps spending in US dollars, but no price is known for this model, so \
         what it costs cannot be counted; add the model's price under [prices] in config.toml (USD \
         per million tokens), or use a model with a known price"
    )]
    Unpriced {
        /// The budget's name.
        budget: String,
    },
}

impl BudgetError {
    /// The code front ends see in `AgentEvent::Error`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Exceeded(_) => ErrorCode::BudgetExceeded,
            Self::Unpriced { .. } => ErrorCode::BudgetUnpriced,
        }
    }
}

/// `1,234,567 tokens`.
fn tokens(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 7);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(if n == 1 { " token" } else { " tokens" });
    out
}

/// `$4.98`, or `$0.0042` below a dollar, where cents would hide the spend.
fn usd(v: f64) -> String {
    if v.abs() >= 1.0 || v == 0.0 { format!("${v:.2}") } else { format!("${v:.4}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 30, 0).unwrap()
    }

    #[test]
    fn windows_are_utc_calendar_days_and_months() {
        let now = at(2024, 2, 29, 23);
        assert_eq!(BudgetWindow::Daily.start(now), Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap());
        assert_eq!(BudgetWindow::Daily.end(now), Some(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()));
        assert_eq!(BudgetWindow::Monthly.start(now), Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap());
        assert_eq!(BudgetWindow::Monthly.end(now), Some(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()));
        let december = at(2025, 12, 31, 12);
        assert_eq!(
            BudgetWindow::Monthly.end(december),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(BudgetWindow::Total.start(now), DateTime::<Utc>::MIN_UTC);
        assert_eq!(BudgetWindow::Total.end(now), None);
    }

    #[test]
    fn the_refusal_names_the_budget_the_spend_the_limit_and_what_to_do() {
        let exceeded = BudgetExceeded {
            budget: "daily-cap".into(),
            scope: BudgetScope::Global,
            window: BudgetWindow::Daily,
            limit: BudgetLimit::Usd(5.0),
            spent_usd: 4.9812,
            spent_tokens: 0,
            held_usd: 0.004,
            held_tokens: 0,
            estimate: Estimate { tokens: 5_000, usd: Some(0.0615) },
            resets_at: Some(Utc.with_ymd_and_hms(2025, 6, 2, 0, 0, 0).unwrap()),
        };
        assert_eq!(
            BudgetError::Exceeded(Box::new(exceeded.clone())).to_string(),
            "budget `daily-cap` (all agents together, daily) would be exceeded: $4.98 of $5.00 spent \
             today (UTC) (and $0.0040 held by calls in progress), and this call may need up to $0.0615 \
             more; raise `max_usd` of this budget in config.toml, or wait for the window to reset at \
             2025-06-02 00:00 UTC"
        );
        let per_session = BudgetExceeded {
            budget: "chat".into(),
            scope: BudgetScope::PerSession,
            window: BudgetWindow::Total,
            limit: BudgetLimit::Tokens(1_000_000),
            spent_tokens: 998_001,
            held_tokens: 0,
            resets_at: None,
            ..exceeded
        };
        assert_eq!(
            per_session.to_string(),
            "budget `chat` (each session, total) would be exceeded: 998,001 tokens of 1,000,000 tokens \
             spent in this session, and this call may need up to 5,000 tokens more; raise `max_tokens` \
             of this budget in config.toml, or start a new session"
        );
    }

    #[test]
    fn token_counts_are_grouped_in_thousands() {
        assert_eq!(tokens(0), "0 tokens");
        assert_eq!(tokens(1), "1 token");
        assert_eq!(tokens(999), "999 tokens");
        assert_eq!(tokens(1_000), "1,000 tokens");
        assert_eq!(tokens(12_345_678), "12,345,678 tokens");
    }
}
