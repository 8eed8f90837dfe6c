//! Prometheus metrics, served at `GET /metrics` in the text exposition format: requests and their
//! latency by endpoint and status, tokens by provider and model, errors by kind, open WebSocket
//! connections and sessions with a turn running, each provider's circuit breaker, and what agent
//! turns do (turns by outcome, their errors by code, tool calls), counted by [`TurnMetrics`] on
//! the runtime.

mod monitor;

pub use monitor::TurnMetrics;

use crate::server::COMPLETIONS;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `/v1/chat/completions`, `/v1/models`, `ws:chat.send`, `webhook:slack`, …
    endpoint: String,
    /// The HTTP status, or for JSON-RPC `ok` / the error's name.
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    /// `input` or `output`.
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    provider: String,
    /// `closed`, `open` or `half_open`.
    state: &'static str,
}

type LatencyFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~200 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 22))
}

/// The gateway's metrics. Cheap to update from any task (atomics behind a lock-free map read).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    tokens: Family<TokenLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    connections: Gauge,
    busy_sessions: Gauge,
    /// Agent turns' series, counted by the runtime ([`Metrics::turn_metrics`]).
    turns: Arc<TurnMetrics>,
    /// The busiest series, `/v1/chat/completions` answered 200, held once created: a request
    /// then updates it without building labels (two strings) and hashing them.
    completions_ok: OnceLock<(Counter, Histogram)>,
}

/// One provider and model's input and output token counters, looked up once and then updated
/// directly.
#[derive(Debug, Clone)]
pub(crate) struct TokenCounters {
    input: Counter,
    output: Counter,
}

impl TokenCounters {
    /// Adds a model call's reported tokens.
    pub(crate) fn add(&self, input: Option<u64>, output: Option<u64>) {
        for (counter, count) in [(&self.input, input), (&self.output, output)] {
            if let Some(count) = count.filter(|c| *c > 0) {
                counter.inc_by(count);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("exoclaw_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by endpoint and status", requests.clone());
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of its answer (a stream's last byte)",
            latency.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("tokens", "Model tokens, by provider, model and direction", tokens.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("errors", "Failed requests, by kind", errors.clone());
        let connections = Gauge::default();
        registry.register("websocket_connections", "Open WebSocket connections", connections.clone());
        let busy_sessions = Gauge::default();
        registry.register("busy_sessions", "Sessions with a turn running or queued", busy_sessions.clone());
        let turns = Family::default();
        registry.register("turns", "Agent turns, by how they ended", turns.clone());
        let turn_errors = Family::default();
        registry.register("turn_errors", "Errors agent turns reported, by code", turn_errors.clone());
        let tool_calls = Family::default();
        registry.register(
            "tool_calls",
            "Tool calls agent turns made, by tool and result",
            tool_calls.clone(),
        );
        let turns = Arc::new(TurnMetrics::new(turns, turn_errors, tool_calls, tokens.clone()));
        Self {
            registry,
            requests,
            latency,
            tokens,
            errors,
            connections,
            busy_sessions,
            turns,
            completions_ok: OnceLock::new(),
        }
    }

    /// One request to `endpoint` answered with `status` after `elapsed`.
    pub fn request(&self, endpoint: &str, status: &str, elapsed: Duration) {
        let (count, latency) = if endpoint == COMPLETIONS && status == "200" {
            self.completions_ok.get_or_init(|| self.request_series(endpoint, status))
        } else {
            &self.request_series(endpoint, status)
        };
        count.inc();
        latency.observe(elapsed.as_secs_f64());
    }

    /// The request counter and latency histogram of `endpoint` and `status` (handles onto the
    /// registered series).
    fn request_series(&self, endpoint: &str, status: &str) -> (Counter, Histogram) {
        let count = self
            .requests
            .get_or_create(&RequestLabels { endpoint: endpoint.into(), status: status.into() })
            .clone();
        let latency = self.latency.get_or_create(&EndpointLabels { endpoint: endpoint.into() }).clone();
        (count, latency)
    }

    /// What counts agent turns into these metrics: register it on the runtime as a monitor and
    /// as a hook (see [`TurnMetrics`]). Every call returns the same counter.
    pub fn turn_metrics(&self) -> Arc<TurnMetrics> {
        Arc::clone(&self.turns)
    }

    /// Tokens a model call used.
    pub fn tokens(&self, provider: &str, model: &str, input: Option<u64>, output: Option<u64>) {
        self.token_counters(provider, model).add(input, output);
    }

    /// The token counters of `provider` and `model`, to keep and update directly. Their series
    /// exist (at zero) from this call on.
    pub(crate) fn token_counters(&self, provider: &str, model: &str) -> TokenCounters {
        let counter = |direction| {
            let labels = TokenLabels { provider: provider.into(), model: model.into(), direction };
            self.tokens.get_or_create(&labels).clone()
        };
        TokenCounters { input: counter("input"), output: counter("output") }
    }

    /// A failure of kind `kind` (`unauthenticated`, `rate_limited`, `provider_unavailable`, …).
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.into() }).inc();
    }

    /// A WebSocket connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// A session became busy (`+1`) or idle (`-1`).
    pub fn busy_sessions(&self, delta: i64) {
        self.busy_sessions.inc_by(delta);
    }

    /// The text exposition, with the breaker states (`provider`, `closed|open|half_open`) given.
    pub fn render(&self, breakers: &[(String, &'static str)]) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            return "# metrics could not be encoded\n".into();
        }
        if !breakers.is_empty() {
            let family = Family::<BreakerLabels, Gauge>::default();
            for (provider, state) in breakers {
                for candidate in ["closed", "open", "half_open"] {
                    let labels = BreakerLabels { provider: provider.clone(), state: candidate };
                    family.get_or_create(&labels).set(i64::from(candidate == *state));
                }
            }
            let mut breaker_registry = Registry::with_prefix("exoclaw_gateway");
            breaker_registry.register("breaker_state", "1 for each provider's current breaker state", family);
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, &breaker_registry);
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}
