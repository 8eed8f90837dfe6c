//! `[prices]` and `[[budgets]]`: what model calls cost and how much they may spend, read strictly
//! (unknown keys, negative prices, budgets without a limit are errors at their line and column),
//! and [`Config::metering`], which turns them into the agent runner's [`Metering`].

use super::Config;
use super::provider::ProviderKind;
use chrono::{DateTime, Utc};
use exoclaw_core::{BudgetScope, BudgetSpec, BudgetWindow, Budgets, Clock, Metering, Price, PriceTable};
use exoclaw_types::{SessionId, UsageRecord};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// One `[prices]` entry: US dollars per million tokens. Cache prices default to `input`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Uncached prompt tokens.
    #[serde(deserialize_with = "rate")]
    pub input: f64,
    /// Generated tokens.
    #[serde(deserialize_with = "rate")]
    pub output: f64,
    /// Prompt tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_rate")]
    pub cache_read: Option<f64>,
    /// Prompt tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_rate")]
    pub cache_write: Option<f64>,
}

impl PriceConfig {
    /// The price it sets.
    pub fn price(&self) -> Price {
        Price::new(self.input, self.output)
            .with_cache(self.cache_read.unwrap_or(self.input), self.cache_write.unwrap_or(self.input))
    }
}

/// One `[[budgets]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBudget")]
pub struct BudgetConfig {
    /// Its name, as refusals show it; unique.
    pub name: String,
    /// Which calls it counts: `global` (the default), `agent:NAME`, `session:ID`, `per-session`,
    /// `per-agent`.
    #[serde(serialize_with = "scope_str")]
    pub scope: BudgetScope,
    /// `total`, `daily` or `monthly` (UTC calendar days and months).
    pub window: BudgetWindow,
    /// Most tokens per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Most US dollars per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<f64>,
}

impl BudgetConfig {
    /// The budget it sets.
    pub fn spec(&self) -> BudgetSpec {
        BudgetSpec {
            name: self.name.clone(),
            scope: self.scope.clone(),
            window: self.window,
            max_tokens: self.max_tokens,
            max_usd: self.max_usd,
        }
    }
}

/// A budget as written, checked as a whole by `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    name: String,
    #[serde(default = "global", deserialize_with = "scope")]
    scope: BudgetScope,
    window: BudgetWindow,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default, deserialize_with = "some_rate")]
    max_usd: Option<f64>,
}

impl TryFrom<RawBudget> for BudgetConfig {
    type Error = String;

    fn try_from(raw: RawBudget) -> Result<Self, Self::Error> {
        let name = raw.name.trim().to_owned();
        if name.is_empty() {
            return Err("a budget needs a `name`, shown when it refuses a call".into());
        }
        if raw.max_tokens.is_none() && raw.max_usd.is_none() {
            return Err(format!(
                "budget `{name}` sets no limit: give it `max_tokens`, `max_usd` or both, or remove it"
            ));
        }
        Ok(Self {
            name,
            scope: raw.scope,
            window: raw.window,
            max_tokens: raw.max_tokens,
            max_usd: raw.max_usd,
        })
    }
}

impl Config {
    /// The price table: the shipped defaults, 0 for every configured instance of a local kind
    /// (`ollama`, `llamacpp`, `local`), then the `[prices]` entries, which win over all of them.
    pub fn price_table(&self) -> PriceTable {
        let mut table = PriceTable::shipped();
        for (name, provider) in &self.providers {
            if matches!(provider.kind, ProviderKind::Ollama | ProviderKind::LlamaCpp | ProviderKind::Local) {
                table.set_default(format!("{name}/*"), Price::FREE);
            }
        }
        for (pattern, price) in &self.prices {
            table.set(pattern.clone(), price.price());
        }
        table
    }

    /// The `[[budgets]]`, in the order written.
    pub fn budget_specs(&self) -> Vec<BudgetSpec> {
        self.budgets.iter().map(BudgetConfig::spec).collect()
    }

    /// The earliest usage [`Config::metering`] must be given to restore the budgets' spend at
    /// `now` (pass it to `UsageStore::usage_since`); `None` without budgets, when nothing need be
    /// read.
    pub fn usage_history_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Budgets::history_start(&self.budget_specs(), now)
    }

    /// The prices and budgets for the agent runner (`AgentRunner::with_metering`), with the
    /// budgets' spend restored from `past_usage`: the usage ledger from
    /// [`Config::usage_history_start`] on. Windows read `clock` (`SystemClock` outside tests).
    pub fn metering(&self, clock: Arc<dyn Clock>, past_usage: &[UsageRecord]) -> Metering {
        Metering::load(self.price_table(), self.budget_specs(), clock, past_usage)
    }
}

/// `[prices]`, every key a `provider/model` pattern.
pub(crate) fn prices<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, PriceConfig>, D::Error> {
    let prices = BTreeMap::<Pattern, PriceConfig>::deserialize(d)?;
    Ok(prices.into_iter().map(|(Pattern(p), price)| (p, price)).collect())
}

/// A `[prices]` key, checked on its own so that a bad one is reported at its line.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pattern(String);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(d)?;
        if !pattern.contains('/') {
            return Err(D::Error::custom(format!(
                "price pattern `{pattern}` never matches: prices are looked up by provider/model, so \
                 write `*/{pattern}` for that model on any provider, or `PROVIDER/{pattern}`"
            )));
        }
        Ok(Self(pattern))
    }
}

/// `[[budgets]]`, names unique.
pub(crate) fn budgets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BudgetConfig>, D::Error> {
    let budgets = Vec::<BudgetConfig>::deserialize(d)?;
    let mut seen = HashSet::new();
    if let Some(twice) = budgets.iter().find(|b| !seen.insert(b.name.as_str())) {
        return Err(D::Error::custom(format!(
            "two budgets are named `{}`: give each its own name, so a refusal says which one it was",
            twice.name
        )));
    }
    Ok(budgets)
}

fn global() -> BudgetScope {
    BudgetScope::Global
}

/// A price or dollar limit: a finite number, not negative.
fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if !value.is_finite() || value < 0.0 {
        return Err(D::Error::custom(format!(
            "{value} is not a price: write a number of US dollars, 0 or more"
        )));
    }
    Ok(value)
}

fn some_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    rate(d).map(Some)
}

fn scope<'de, D: Deserializer<'de>>(d: D) -> Result<BudgetScope, D::Error> {
    let text = String::deserialize(d)?;
    parse_scope(&text).map_err(D::Error::custom)
}

pub(crate) fn parse_scope(text: &str) -> Result<BudgetScope, String> {
    let text = text.trim();
    let scope = match text.split_once(':') {
        None if text == "global" => BudgetScope::Global,
        None if text == "per-session" => BudgetScope::PerSession,
        None if text == "per-agent" => BudgetScope::PerAgent,
        Some(("agent", name)) if !name.trim().is_empty() => BudgetScope::Agent(name.trim().to_owned()),
        Some(("session", id)) => BudgetScope::Session(
            id.trim()
                .parse::<SessionId>()
                .map_err(|_| format!("`{}` is not a session id (see `exoclaw sessions list`)", id.trim()))?,
        ),
        _ => {
            return Err(format!(
                "unknown budget scope `{text}`: write \"global\", \"agent:NAME\", \"session:ID\", \
                 \"per-session\" (each session on its own) or \"per-agent\" (each agent on its own)"
            ));
        }
    };
    Ok(scope)
}

fn scope_string(scope: &BudgetScope) -> String {
    match scope {
        BudgetScope::Global => "global".to_owned(),
        BudgetScope::Agent(name) => format!("agent:{name}"),
        BudgetScope::Session(id) => format!("session:{id}"),
        BudgetScope::PerSession => "per-session".to_owned(),
        BudgetScope::PerAgent => "per-agent".to_owned(),
    }
}

fn scope_str<S: Serializer>(scope: &BudgetScope, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&scope_string(scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse_in;
    use crate::config::tests::env;
    use chrono::TimeZone;
    use exoclaw_core::{CallScope, TestClock};
    use exoclaw_types::Usage;
    use pretty_assertions::assert_eq;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        parse_in(text, Path::new("/etc/exoclaw.toml"), &env(&[])).map_err(|e| e.to_string())
    }

    #[test]
    fn prices_and_budgets_are_read_from_the_config() {
        let config = parse(
            r#"
[prices]
"*/gpt-4o" = { input = 2, output = 8 }

[prices."anthropic/claude-sonnet-4*"]
input = 3.0
output = 15.0
cache_read = 0.3
cache_write = 3.75

[[budgets]]
name = "daily"
window = "daily"
max_usd = 5

[[budgets]]
name = "dev-tokens"
scope = "agent:dev"
window = "monthly"
max_tokens = 2_000_000

[[budgets]]
name = "chat"
scope = "per-session"
window = "total"
max_tokens = 100_000
max_usd = 0.5
"#,
        )
        .unwrap();
        assert_eq!(
            config.budget_specs(),
            vec![
                BudgetSpec {
                    name: "daily".into(),
                    scope: BudgetScope::Global,
                    window: BudgetWindow::Daily,
                    max_tokens: None,
                    max_usd: Some(5.0),
                },
                BudgetSpec {
                    name: "dev-tokens".into(),
                    scope: BudgetScope::Agent("dev".into()),
                    window: BudgetWindow::Monthly,
                    max_tokens: Some(2_000_000),
                    max_usd: None,
                },
                BudgetSpec {
                    name: "chat".into(),
                    scope: BudgetScope::PerSession,
                    window: BudgetWindow::Total,
                    max_tokens: Some(100_000),
                    max_usd: Some(0.5),
                },
            ]
        );
        let table = config.price_table();
        // Configured: cache prices default to the input price.
        assert_eq!(table.price("work", "gpt-4o"), Some(Price::new(2.0, 8.0)));
        assert_eq!(
            table.price("anthropic", "claude-sonnet-4-5"),
            Some(Price::new(3.0, 15.0).with_cache(0.3, 3.75))
        );
        // Shipped defaults still price the rest.
        assert_eq!(table.price("openai", "gpt-4o-mini").map(|p| p.input), Some(0.15));
    }

    #[test]
    fn configured_local_servers_are_free_unless_priced() {
        let config = parse(
            "[providers.box]\nkind = \"ollama\"\n[providers.work]\nkind = \"openai\"\n\
             [prices]\n\"box/big-*\" = { input = 0.1, output = 0.1 }\n",
        )
        .unwrap();
        let table = config.price_table();
        assert_eq!(table.price("box", "qwen3:8b"), Some(Price::FREE));
        assert_eq!(table.price("box", "big-model").map(|p| p.input), Some(0.1));
        assert_eq!(table.price("work", "some-internal-model"), None);
    }

    #[test]
    fn mistakes_are_reported_at_their_line_with_what_to_write() {
        let cases = [
            (
                "[[budgets]]\nname = \"x\"\nwindow = \"daily\"\nmax_tokenz = 5\n",
                "/etc/exoclaw.toml:4:1: unknown field `max_tokenz`",
            ),
            (
                "[[budgets]]\nname = \"x\"\nwindow = \"weekly\"\nmax_usd = 1\n",
                "/etc/exoclaw.toml:3:10: unknown variant `weekly`",
            ),
            (
                "[[budgets]]\nname = \"x\"\nscope = \"team:a\"\nwindow = \"daily\"\nmax_usd = 1\n",
                "/etc/exoclaw.toml:3:9: unknown budget scope `team:a`: write \"global\", \"agent:NAME\"",
            ),
            (
                "[[budgets]]\nname = \"x\"\nscope = \"session:nope\"\nwindow = \"daily\"\nmax_usd = 1\n",
                "/etc/exoclaw.toml:3:9: `nope` is not a session id",
            ),
            (
                "[[budgets]]\nname = \"x\"\nwindow = \"daily\"\nmax_usd = -1\n",
                "/etc/exoclaw.toml:4:11: -1 is not a price",
            ),
            (
                "[[budgets]]\nname = \"x\"\nwindow = \"daily\"\n",
                "budget `x` sets no limit: give it `max_tokens`",
            ),
            ("[[budgets]]\nwindow = \"daily\"\nmax_usd = 1\n", "missing field `name`"),
            ("[[budgets]]\nname = \"x\"\nmax_usd = 1\n", "missing field `window`"),
            (
                "[[budgets]]\nname = \"x\"\nwindow = \"daily\"\nmax_usd = 1\n\
                 [[budgets]]\nname = \"x\"\nwindow = \"total\"\nmax_usd = 1\n",
                "two budgets are named `x`",
            ),
            (
                "[prices]\n\"*/a\" = { input = 1, output = 2 }\n\"gpt-4o\" = { input = 1, output = 2 }\n",
                "/etc/exoclaw.toml:3:1: price pattern `gpt-4o` never matches",
            ),
            ("[prices]\n\"*/m\" = { input = 1 }\n", "missing field `output`"),
            ("[prices]\n\"*/m\" = { input = 1, output = 2, cached = 1 }\n", "unknown field `cached`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}\n→ {err}\n(expected {expected})");
        }
    }

    #[test]
    fn the_budgets_survive_a_restart_through_the_usage_ledger() {
        let config = parse(
            "[[budgets]]\nname = \"daily\"\nwindow = \"daily\"\nmax_usd = 1\n\
             [[budgets]]\nname = \"month\"\nwindow = \"monthly\"\nmax_tokens = 1000000\n",
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2025, 6, 15, 12, 0, 0).unwrap();
        assert_eq!(config.usage_history_start(now), Some(Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()));
        assert_eq!(Config::default().usage_history_start(now), None);

        let record = |at: DateTime<Utc>, cost_usd: Option<f64>| UsageRecord {
            at,
            session_id: None,
            agent: "default".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            usage: Usage { input_tokens: Some(100_000), output_tokens: Some(10_000), ..Usage::default() },
            latency_ms: 1,
            ttft_ms: None,
            cost_usd,
            estimated: false,
            purpose: exoclaw_types::CallPurpose::Answer,
        };
        // Two calls today, one stored before its model had a price: priced now at $0.25 + $0.10.
        let ledger = [
            record(Utc.with_ymd_and_hms(2025, 6, 2, 0, 0, 0).unwrap(), Some(9.0)),
            record(Utc.with_ymd_and_hms(2025, 6, 15, 1, 0, 0).unwrap(), Some(0.35)),
            record(Utc.with_ymd_and_hms(2025, 6, 15, 2, 0, 0).unwrap(), None),
        ];
        let metering = config.metering(Arc::new(TestClock::new(now)), &ledger);
        let status = metering.budgets.status(&CallScope { session: None, agent: "default" });
        assert_eq!((status[0].spec.name.as_str(), status[1].spec.name.as_str()), ("daily", "month"));
        assert!((status[0].spent_usd - 0.70).abs() < 1e-9, "{status:?}");
        assert_eq!(status[1].spent_tokens, 330_000);
    }

    #[test]
    fn the_redacted_toml_shows_prices_and_budgets_as_written() {
        let text = "[prices.\"*/m\"]\ninput = 1.0\noutput = 2.0\n\n\
                    [[budgets]]\nname = \"s\"\nscope = \"per-agent\"\nwindow = \"daily\"\nmax_tokens = 5\n";
        let config = parse(text).unwrap();
        let shown = config.redacted_toml();
        assert!(shown.contains("[prices.\"*/m\"]\ninput = 1.0\noutput = 2.0\n"), "{shown}");
        assert!(
            shown.contains(
                "[[budgets]]\nname = \"s\"\nscope = \"per-agent\"\nwindow = \"daily\"\nmax_tokens = 5\n"
            ),
            "{shown}"
        );
        let again = parse(&shown).unwrap();
        assert_eq!(again.budget_specs(), config.budget_specs());
        assert_eq!(again.prices, config.prices);
    }

    #[test]
    fn scopes_read_back_what_they_write() {
        let id = SessionId::new();
        for scope in [
            BudgetScope::Global,
            BudgetScope::Agent("dev".into()),
            BudgetScope::Session(id),
            BudgetScope::PerSession,
            BudgetScope::PerAgent,
        ] {
            assert_eq!(parse_scope(&scope_string(&scope)), Ok(scope));
        }
        assert!(parse_scope("agent:").is_err());
    }
}
