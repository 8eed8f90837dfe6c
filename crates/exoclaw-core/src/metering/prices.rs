//! [`PriceTable`]: what a model call costs, in US dollars, from per-model prices matched by
//! `provider/model` patterns, with shipped defaults for common models that configuration overrides.

use exoclaw_types::Usage;
use serde::{Deserialize, Serialize};

/// A model's prices, in US dollars per million tokens.
///
/// `input` is the price of a prompt token that is neither read from nor written to the prompt
/// cache; `cache_read` and `cache_write` are the prices of the cached ones (vendors without a
/// cache-write charge bill those at `input`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: f64,
    /// Generated tokens, reasoning included.
    pub output: f64,
    /// Prompt tokens read from the cache.
    pub cache_read: f64,
    /// Prompt tokens written to the cache.
    pub cache_write: f64,
}

impl Price {
    /// Costs nothing: local models.
    pub const FREE: Price = Price { input: 0.0, output: 0.0, cache_read: 0.0, cache_write: 0.0 };

    /// `input` and `output` per million tokens; cached tokens at the input price.
    pub const fn new(input: f64, output: f64) -> Self {
        Self { input, output, cache_read: input, cache_write: input }
    }

    /// The same, with these cache prices.
    pub const fn with_cache(self, cache_read: f64, cache_write: f64) -> Self {
        Self { cache_read, cache_write, ..self }
    }

    /// What `usage` costs at these prices. Counts the provider did not report are taken as 0
    /// (the agent runner estimates them before pricing).
    ///
    /// [`Usage::input_tokens`] counts cached tokens too, so the cached ones are taken out of it and
    /// charged at their own price, never twice.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let count = |n: Option<u64>| n.unwrap_or(0);
        let read = count(usage.cache_read_tokens);
        let write = count(usage.cache_write_tokens);
        let uncached = count(usage.input_tokens).saturating_sub(read).saturating_sub(write);
        // u64 → f64 loses precision only above 2^53 tokens.
        #[allow(clippy::cast_precision_loss)]
        let dollars = uncached as f64 * self.input
            + read as f64 * self.cache_read
            + write as f64 * self.cache_write
            + count(usage.output_tokens) as f64 * self.output;
        dollars / 1_000_000.0
    }
}

/// Per-model prices, looked up by `provider/model`.
///
/// Two layers: entries set by configuration ([`PriceTable::set`]) win over every default
/// ([`PriceTable::shipped`], [`PriceTable::set_default`]), so `"anthropic/*"` in config prices
/// every Anthropic model however specific a shipped pattern is. Within a layer an exact name wins,
/// then the pattern with the most literal (non-`*`) characters: `*/gpt-4o-mini*` beats `*/gpt-4o*`.
///
/// Patterns are matched against `provider/model` as recorded with usage, where `provider` is the
/// provider instance's name (`anthropic`, `work`, `openrouter`); `*` matches any run of
/// characters, `/` included, so `*/gpt-4o` prices `openai/gpt-4o`, `work/gpt-4o` and
/// `openrouter/openai/gpt-4o` alike. Matching ignores ASCII case.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    configured: Vec<(String, Price)>,
    defaults: Vec<(String, Price)>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::shipped()
    }
}

impl PriceTable {
    /// A table without any price: every cost is unknown.
    pub fn empty() -> Self {
        Self { configured: Vec::new(), defaults: Vec::new() }
    }

    /// The shipped defaults (see [`SHIPPED`]): list prices of common models, and 0 for the
    /// embedded model and local servers.
    pub fn shipped() -> Self {
        let defaults = SHIPPED
            .iter()
            .flat_map(|(patterns, price)| patterns.iter().map(|p| ((*p).to_owned(), *price)))
            .collect();
        Self { configured: Vec::new(), defaults }
    }

    /// Sets a configured price: it wins over every default. Setting a pattern again replaces it.
    pub fn set(&mut self, pattern: impl Into<String>, price: Price) {
        upsert(&mut self.configured, pattern.into(), price);
    }

    /// Sets a default price, as if it were shipped: configured prices still win over it.
    pub fn set_default(&mut self, pattern: impl Into<String>, price: Price) {
        upsert(&mut self.defaults, pattern.into(), price);
    }

    /// The price of `model` on the provider instance `provider`, if any entry matches.
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        let name = format!("{provider}/{model}");
        best_match(&self.configured, &name).or_else(|| best_match(&self.defaults, &name))
    }

    /// What `usage` of `model` on `provider` cost; `None` when no price matches.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.price(provider, model).map(|price| price.cost(usage))
    }
}

fn upsert(entries: &mut Vec<(String, Price)>, pattern: String, price: Price) {
    match entries.iter_mut().find(|(p, _)| *p == pattern) {
        Some(entry) => entry.1 = price,
        None => entries.push((pattern, price)),
    }
}

/// The most specific entry matching `name`: exact first, then most literal characters, then
/// the first such entry.
fn best_match(entries: &[(String, Price)], name: &str) -> Option<Price> {
    let mut best: Option<(usize, Price)> = None;
    for (pattern, price) in entries {
        if !glob_match(pattern, name) {
            continue;
        }
        let literal = pattern.chars().filter(|c| *c != '*').count();
        let rank = if pattern.contains('*') { literal } else { usize::MAX };
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, *price));
        }
    }
    best.map(|(_, price)| price)
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (none included)
/// and everything else for itself, ignoring ASCII case.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    // Bytes, not chars: ASCII case folding never touches the bytes of a multi-byte character, and
    // UTF-8 never lets a literal start inside one, so this matches exactly what a char-wise match
    // would, without allocating (it runs for every priced request).
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // Greedy with one backtrack point: on a mismatch, let the last `*` swallow one more byte.
    // Linear in practice, O(len(p)·len(t)) at worst.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// The shipped prices: USD per million tokens, standard (not batch) tier, prompts under the
/// long-context thresholds, as the vendors list them. A *default* that users override with
/// `[prices]` in config.toml: vendors change prices, and a gateway or an enterprise contract may
/// charge differently.
///
/// Sources (checked when this table was last edited):
/// - Anthropic: <https://docs.anthropic.com/en/docs/about-claude/pricing> (cache write = 5-minute
///   TTL writes, 1.25× input; cache read 0.1× input);
/// - OpenAI: <https://platform.openai.com/docs/pricing> (cached input; no cache-write charge);
/// - Google: <https://ai.google.dev/gemini-api/docs/pricing> (≤200k-token prompts; context-cache
///   storage per hour is not modelled);
/// - xAI: <https://docs.x.ai/docs/models> (cached input).
///
/// Embedding models are priced by their input tokens alone (`output` 0: they answer with vectors,
/// not tokens). Google's `text-embedding-004` is listed by Vertex AI per character ($0.000025 per
/// 1,000): about $0.10 a million tokens at four characters a token.
///
/// Patterns start with `*/` so that named instances (`work/gpt-4o`) and OpenRouter
/// (`openrouter/openai/gpt-4o`) are priced too; the embedded model and local servers cost 0.
pub const SHIPPED: &[(&[&str], Price)] = &[
    // Anthropic. Opus 4.5 and later cost a third of Opus 4 / 4.1.
    (&["*/claude-opus-4*"], Price::new(15.0, 75.0).with_cache(1.50, 18.75)),
    (
        &["*/claude-opus-4-5*", "*/claude-opus-4.5*", "*/claude-opus-4-6*", "*/claude-opus-4.6*"],
        Price::new(5.0, 25.0).with_cache(0.50, 6.25),
    ),
    (&["*/claude-sonnet-4*", "*/claude-3-7-sonnet*"], Price::new(3.0, 15.0).with_cache(0.30, 3.75)),
    (&["*/claude-haiku-4*"], Price::new(1.0, 5.0).with_cache(0.10, 1.25)),
    (&["*/claude-3-5-haiku*"], Price::new(0.80, 4.0).with_cache(0.08, 1.0)),
    // OpenAI.
    (
        &["*/gpt-4o", "*/gpt-4o-2024-08-06", "*/gpt-4o-2024-11-20"],
        Price::new(2.50, 10.0).with_cache(1.25, 2.50),
    ),
    (&["*/gpt-4o-mini*"], Price::new(0.15, 0.60).with_cache(0.075, 0.15)),
    (&["*/gpt-4.1*"], Price::new(2.0, 8.0).with_cache(0.50, 2.0)),
    (&["*/gpt-4.1-mini*"], Price::new(0.40, 1.60).with_cache(0.10, 0.40)),
    (&["*/gpt-4.1-nano*"], Price::new(0.10, 0.40).with_cache(0.025, 0.10)),
    (
        &["*/gpt-5", "*/gpt-5-20*", "*/gpt-5.1", "*/gpt-5.1-20*"],
        Price::new(1.25, 10.0).with_cache(0.125, 1.25),
    ),
    (&["*/gpt-5-mini*"], Price::new(0.25, 2.0).with_cache(0.025, 0.25)),
    (&["*/gpt-5-nano*"], Price::new(0.05, 0.40).with_cache(0.005, 0.05)),
    (&["*/o3", "*/o3-20*"], Price::new(2.0, 8.0).with_cache(0.50, 2.0)),
    (&["*/o4-mini*"], Price::new(1.10, 4.40).with_cache(0.275, 1.10)),
    // OpenAI embeddings.
    (&["*/text-embedding-3-small*"], Price::new(0.02, 0.0)),
    (&["*/text-embedding-3-large*"], Price::new(0.13, 0.0)),
    (&["*/text-embedding-ada-002*"], Price::new(0.10, 0.0)),
    // Google.
    (&["*/gemini-2.5-pro*"], Price::new(1.25, 10.0).with_cache(0.125, 1.25)),
    (&["*/gemini-2.5-flash*"], Price::new(0.30, 2.50).with_cache(0.03, 0.30)),
    (&["*/gemini-2.5-flash-lite*"], Price::new(0.10, 0.40).with_cache(0.01, 0.10)),
    // Google embeddings.
    (&["*/gemini-embedding-001*"], Price::new(0.15, 0.0)),
    (&["*/text-embedding-004*"], Price::new(0.10, 0.0)),
    // xAI.
    (&["*/grok-4*", "*/grok-3", "*/grok-3-latest"], Price::new(3.0, 15.0).with_cache(0.75, 3.0)),
    (
        &["*/grok-4-fast*", "*/grok-4-1-fast*", "*/grok-4.1-fast*"],
        Price::new(0.20, 0.50).with_cache(0.05, 0.20),
    ),
    (&["*/grok-3-mini*"], Price::new(0.30, 0.50).with_cache(0.075, 0.30)),
    (&["*/grok-code-fast*"], Price::new(0.20, 1.50).with_cache(0.02, 0.20)),
    // The embedded model and local servers (the built-in instances; `Config` adds other
    // configured instances of these kinds).
    (&["local/*", "ollama/*", "llamacpp/*"], Price::FREE),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, read: Option<u64>, write: Option<u64>) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn stars_match_any_run_of_characters_slashes_included() {
        assert!(glob_match("anthropic/claude-sonnet-4*", "anthropic/claude-sonnet-4-5"));
        assert!(glob_match("*/gpt-4o-mini", "openrouter/openai/gpt-4o-mini"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(glob_match("*/GPT-4o", "work/gpt-4O"));
        assert!(!glob_match("*/gpt-4o", "openai/gpt-4o-mini"));
        assert!(!glob_match("anthropic/*", "openai/gpt-4o"));
        assert!(!glob_match("a*b", "a"));
        assert!(glob_match("local/*", "local/smollm2"));
    }

    #[test]
    fn cached_prompt_tokens_are_charged_once_at_their_own_price() {
        let sonnet = PriceTable::shipped().price("anthropic", "claude-sonnet-4-5").unwrap();
        // 10,000 prompt tokens of which 6,000 read from and 1,000 written to the cache.
        let cost = sonnet.cost(&usage(10_000, 2_000, Some(6_000), Some(1_000)));
        let expected = (3_000.0 * 3.0 + 6_000.0 * 0.30 + 1_000.0 * 3.75 + 2_000.0 * 15.0) / 1e6;
        assert!(close(cost, expected), "{cost} vs {expected}");
        // Without cache counts every prompt token is an uncached one.
        assert!(close(sonnet.cost(&usage(1_000_000, 0, None, None)), 3.0));
        // Counts the provider did not report cost nothing here.
        assert!(close(sonnet.cost(&Usage::default()), 0.0));
    }

    #[test]
    fn the_most_specific_pattern_wins_and_configuration_wins_over_defaults() {
        let mut table = PriceTable::shipped();
        let cost = |t: &PriceTable, p: &str, m: &str| t.price(p, m).map(|price| price.input);
        assert_eq!(cost(&table, "openai", "gpt-4o"), Some(2.50));
        assert_eq!(cost(&table, "openai", "gpt-4o-mini"), Some(0.15));
        assert_eq!(cost(&table, "work", "gpt-4.1-mini-2025-04-14"), Some(0.40));
        assert_eq!(cost(&table, "anthropic", "claude-opus-4-1-20250805"), Some(15.0));
        assert_eq!(cost(&table, "anthropic", "claude-opus-4-5-20251101"), Some(5.0));
        assert_eq!(cost(&table, "openrouter", "anthropic/claude-opus-4.5"), Some(5.0));
        assert_eq!(cost(&table, "gemini", "gemini-2.5-flash-lite"), Some(0.10));
        assert_eq!(cost(&table, "xai", "grok-4-fast-reasoning"), Some(0.20));
        assert_eq!(cost(&table, "local", "smollm2"), Some(0.0));
        assert_eq!(cost(&table, "fake", "fake-model"), None);
        // Embedding models: input tokens only.
        assert_eq!(cost(&table, "openai", "text-embedding-3-small"), Some(0.02));
        assert_eq!(cost(&table, "work", "text-embedding-3-large"), Some(0.13));
        assert_eq!(cost(&table, "gemini", "gemini-embedding-001"), Some(0.15));
        assert_eq!(cost(&table, "gemini", "text-embedding-004"), Some(0.10));
        let small = table.price("openai", "text-embedding-3-small").unwrap();
        let usage = Usage { input_tokens: Some(1_000_000), output_tokens: Some(0), ..Usage::default() };
        assert!(close(small.cost(&usage), 0.02));

        // A broad configured pattern beats a narrow shipped one.
        table.set("anthropic/*", Price::new(1.0, 2.0));
        assert_eq!(cost(&table, "anthropic", "claude-opus-4-1"), Some(1.0));
        assert_eq!(cost(&table, "openrouter", "anthropic/claude-opus-4-1"), Some(15.0));
        // Within configuration, specificity; an exact name beats every pattern.
        table.set("anthropic/claude-opus-*", Price::new(7.0, 8.0));
        table.set("anthropic/claude-opus-4-1", Price::new(9.0, 9.0));
        assert_eq!(cost(&table, "anthropic", "claude-opus-4-0"), Some(7.0));
        assert_eq!(cost(&table, "anthropic", "claude-opus-4-1"), Some(9.0));
        // Setting a pattern again replaces it.
        table.set("anthropic/*", Price::new(0.5, 0.5));
        assert_eq!(cost(&table, "anthropic", "claude-haiku-4-5"), Some(0.5));
        assert_eq!(PriceTable::empty().price("local", "smollm2"), None);
    }

    #[test]
    fn every_shipped_price_is_sane() {
        for (patterns, price) in SHIPPED {
            for pattern in *patterns {
                assert!(pattern.contains('/'), "{pattern} can never match provider/model");
            }
            for v in [price.input, price.output, price.cache_read, price.cache_write] {
                assert!(v.is_finite() && v >= 0.0, "{patterns:?}");
            }
            assert!(price.cache_read <= price.input, "{patterns:?}: a cache read costs more than input");
        }
    }
}
