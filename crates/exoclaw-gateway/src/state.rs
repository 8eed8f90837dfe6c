//! The [`Gateway`]: what a running gateway serves (models, agents, sessions), whom it lets in
//! (operator tokens, virtual keys), its limits and metrics, and the signal that it is shutting
//! down. Built with [`Gateway::builder`]; shared by every connection as an `Arc<Gateway>`.

use crate::TokenSet;
use crate::accounting::{BillingCache, Ledger};
use crate::keys::{KeyCache, RateLimiter};
use crate::metrics::Metrics;
use crate::server::ModelSource;
use crate::webhook::Webhooks;
use exoclaw_core::{AgentRuntime, Bindings, KeyStore, Metering, SessionStore, UsageStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How often a gateway whose key store holds no key asks it whether one has been made.
pub const KEY_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What one client may send, how long the gateway waits, and how much it holds for all clients
/// together. The defaults are the `[gateway]` defaults of `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest WebSocket frame and message, in bytes.
    pub max_message_bytes: usize,
    /// JSON-RPC requests one connection may send per second (a burst of as many is allowed).
    pub requests_per_second: u32,
    /// How long a WebSocket connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// Messages that may wait behind a running turn in one session before `session_busy`.
    pub session_queue: usize,
    /// How long running turns and streams get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// How long a request's head (request line and headers) may take to arrive, from its first
    /// byte; a new connection must send its first byte within this too. Past it, the connection
    /// is answered 408 (a new silent one is just closed). Applies under [`crate::serve`].
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive, from the end of its head; past it, 408.
    pub body_timeout: Duration,
    /// How long an HTTP connection with no request running is kept open for the next request.
    /// Applies under [`crate::serve`].
    pub keep_alive: Duration,
    /// Most connections open at once, HTTP and WebSocket; past it a new connection is answered
    /// 503 (with `Retry-After`) and closed. Applies under [`crate::serve`].
    pub max_connections: usize,
    /// Most WebSocket connections open at once that have not authenticated (no bearer header on
    /// the upgrade, no successful `connect` yet), on a gateway that requires a token; past it
    /// the upgrade is answered 503.
    pub max_unauthenticated: usize,
    /// Most request-body bytes being read or held at once, over all requests; a body that does
    /// not fit is answered 503 with `Retry-After` (one larger than the whole budget, 413).
    pub max_body_bytes_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
            requests_per_second: 20,
            idle_timeout: Duration::from_secs(300),
            session_queue: 8,
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            keep_alive: Duration::from_secs(60),
            max_connections: 1024,
            max_unauthenticated: 256,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
        }
    }
}

/// What a running gateway serves and whom it lets in.
pub struct Gateway {
    pub(crate) source: Arc<dyn ModelSource>,
    pub(crate) tokens: TokenSet,
    pub(crate) keys: Option<Arc<dyn KeyStore>>,
    /// Whether callers need a key (or an operator token): from the start with
    /// [`GatewayBuilder::keys`], from the first key made with [`GatewayBuilder::keys_once_made`].
    /// Once set it stays set: a revoked key is still a key.
    keys_required: AtomicBool,
    /// When the key store was last asked whether a key has been made (milliseconds after start).
    keys_checked_ms: AtomicU64,
    /// Where `chat.send` turns go: the agents, the bindings, the session queues.
    pub(crate) runtime: Option<Arc<dyn AgentRuntime>>,
    /// What `/mcp` serves, when it is on.
    pub(crate) mcp: Option<crate::mcp::McpEndpoint>,
    pub(crate) sessions: Option<Arc<dyn SessionStore>>,
    /// The runtime's layered memory, which the `memory.*` methods read and prune.
    pub(crate) memory: Option<Arc<exoclaw_memory::Memory>>,
    pub(crate) usage: Option<Arc<dyn UsageStore>>,
    pub(crate) limits: Limits,
    /// Web origins allowed to call, and the host names they imply (see [`crate::guard`]).
    pub(crate) origins: crate::guard::Origins,
    /// The request-body bytes still free under `limits.max_body_bytes_in_flight`.
    pub(crate) body_budget: Arc<Semaphore>,
    /// Room for WebSocket connections that have not authenticated yet.
    pub(crate) unauthenticated: Arc<Semaphore>,
    pub(crate) webhooks: Webhooks,
    pub(crate) metrics: Metrics,
    pub(crate) rate: RateLimiter,
    pub(crate) key_cache: KeyCache,
    /// Prices, for what `/v1` requests cost.
    pub(crate) metering: Option<Arc<Metering>>,
    /// Where `/v1` requests' usage is written, in batches.
    pub(crate) ledger: Option<Ledger>,
    /// Each requested model's provider, routed name and price.
    pub(crate) billing: BillingCache,
    /// Each embedding model's billing, by the `provider/model` that serves it (apart from
    /// `billing`, whose keys are the names clients send).
    pub(crate) embedding_billing: BillingCache,
    pub(crate) shutdown: CancellationToken,
    /// The WebSocket side: session queues, running turns, open connections.
    pub(crate) chat: crate::chat::ChatRuntime,
    /// Unix seconds at start (`/v1/models`' `created`).
    pub(crate) started: u64,
    pub(crate) started_at: Instant,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("models", &self.source.models())
            .field("tokens", &self.tokens)
            .field("keys", &self.keys.is_some())
            .field("agents", &self.runtime.as_ref().map(|r| r.agents().len()))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Gateway {
    /// A gateway serving `source`'s models on `/v1` to holders of `tokens` (none: to anyone who
    /// can connect; see [`crate::check_bind`]), with no agents, store or virtual keys.
    pub fn new(source: Arc<dyn ModelSource>, tokens: TokenSet) -> Self {
        Self::builder(source).tokens(tokens).build()
    }

    /// Starts building a gateway over `source`.
    pub fn builder(source: Arc<dyn ModelSource>) -> GatewayBuilder {
        GatewayBuilder {
            gateway: Gateway {
                source,
                tokens: TokenSet::open(),
                keys: None,
                keys_required: AtomicBool::new(false),
                keys_checked_ms: AtomicU64::new(0),
                runtime: None,
                mcp: None,
                sessions: None,
                memory: None,
                usage: None,
                limits: Limits::default(),
                origins: crate::guard::Origins::default(),
                body_budget: Arc::new(Semaphore::new(0)),
                unauthenticated: Arc::new(Semaphore::new(0)),
                webhooks: Webhooks::new(),
                metrics: Metrics::new(),
                rate: RateLimiter::default(),
                key_cache: KeyCache::default(),
                metering: None,
                ledger: None,
                billing: BillingCache::default(),
                embedding_billing: BillingCache::default(),
                shutdown: CancellationToken::new(),
                chat: crate::chat::ChatRuntime::new(),
                started: now_secs(),
                started_at: Instant::now(),
            },
        }
    }

    /// The accepted operator tokens.
    pub fn tokens(&self) -> &TokenSet {
        &self.tokens
    }

    /// Whether a caller must authenticate: operator tokens are configured, or virtual keys are
    /// required (see [`GatewayBuilder::keys_once_made`]).
    pub fn requires_auth(&self) -> bool {
        self.tokens.is_required() || self.keys_required.load(Ordering::Relaxed)
    }

    /// While nothing requires a token but a key store is attached, asks the store (at most once
    /// every [`KEY_CHECK_INTERVAL`]) whether a key has been made: from then on every caller needs
    /// a key or an operator token, with no restart.
    pub(crate) async fn notice_new_keys(&self) {
        if self.requires_auth() {
            return;
        }
        let Some(keys) = &self.keys else { return };
        let now = u64::try_from(self.started_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.keys_checked_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(KEY_CHECK_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        // One caller asks; the others go on as before.
        if now.saturating_sub(last) < interval
            || self.keys_checked_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        match keys.list_keys().await {
            Ok(made) if !made.is_empty() => {
                self.keys_required.store(true, Ordering::Relaxed);
                tracing::info!("a virtual key exists now: every request needs a key or an operator token");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not ask the key store whether a key was made"),
        }
    }

    /// The runtime `chat.send` turns go to, if the gateway runs agents.
    pub fn runtime(&self) -> Option<&Arc<dyn AgentRuntime>> {
        self.runtime.as_ref()
    }

    /// The bindings in force now (none without a runtime).
    pub fn bindings(&self) -> Arc<Bindings> {
        self.runtime.as_ref().map_or_else(|| Arc::new(Bindings::default()), |r| r.bindings())
    }

    /// Replaces the bindings (on SIGHUP or a changed file); turns already routed keep their agent,
    /// connections stay open.
    pub fn reload_bindings(&self, bindings: Bindings) {
        if let Some(runtime) = &self.runtime {
            runtime.reload_bindings(bindings);
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Cancelled when the gateway starts shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the usage of every request settled so far is written.
    pub async fn flush_usage(&self) {
        if let Some(ledger) = &self.ledger {
            ledger.flush().await;
        }
    }

    /// How long it has been running.
    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }
}

/// Builds a [`Gateway`].
#[derive(Debug)]
pub struct GatewayBuilder {
    gateway: Gateway,
}

impl GatewayBuilder {
    /// The operator tokens (full access).
    pub fn tokens(mut self, tokens: TokenSet) -> Self {
        self.gateway.tokens = tokens;
        self
    }

    /// Where virtual keys are looked up; with a key store, every `/v1` and WebSocket caller needs
    /// an operator token or a live key.
    pub fn keys(mut self, keys: Arc<dyn KeyStore>) -> Self {
        self.gateway.keys = Some(keys);
        self.gateway.keys_required = AtomicBool::new(true);
        self
    }

    /// Where virtual keys are looked up, for a store that holds none yet: callers need no key
    /// until one is made (the gateway notices within [`KEY_CHECK_INTERVAL`]), then every caller
    /// needs a key or an operator token, as with [`GatewayBuilder::keys`].
    pub fn keys_once_made(mut self, keys: Arc<dyn KeyStore>) -> Self {
        self.gateway.keys = Some(keys);
        self.gateway.keys_required = AtomicBool::new(false);
        self
    }

    /// The runtime that runs `chat.send` turns: its agents, bindings and session queues.
    pub fn runtime(mut self, runtime: Arc<dyn AgentRuntime>) -> Self {
        self.gateway.runtime = Some(runtime);
        self
    }

    /// The layered memory the `memory.*` methods read and prune: the runtime's own
    /// (`Runtime::memory`), so that they see what its turns remember.
    pub fn memory(mut self, memory: Arc<exoclaw_memory::Memory>) -> Self {
        self.gateway.memory = Some(memory);
        self
    }

    /// Serves MCP at `/mcp` (streamable HTTP: `exoclaw_mcp::ExoclawServer::streamable_http`), to
    /// operator tokens only (and to anyone on a gateway that needs no token), behind the same
    /// `Host`/`Origin` guard as every route.
    pub fn mcp<S>(mut self, service: S) -> Self
    where
        S: tower::Service<axum::extract::Request, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.gateway.mcp = Some(crate::mcp::McpEndpoint::new(service));
        self
    }

    /// Where sessions and usage are kept. `/v1` requests' usage is written by a background task
    /// started here (so this must be called inside a Tokio runtime).
    pub fn store(mut self, sessions: Arc<dyn SessionStore>, usage: Arc<dyn UsageStore>) -> Self {
        self.gateway.sessions = Some(sessions);
        self.gateway.usage = Some(usage);
        self
    }

    /// Prices (and budgets) for what requests cost.
    pub fn metering(mut self, metering: Arc<Metering>) -> Self {
        self.gateway.metering = Some(metering);
        self
    }

    /// Per-client limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.gateway.limits = limits;
        self
    }

    /// Web origins (`https://app.example.com`, or `*` for any) allowed to call the gateway from a
    /// browser: browsers send `Origin` with what a page asks for, other clients send none. On a
    /// gateway that needs no token their host names are also accepted in `Host` (besides this
    /// machine's names).
    pub fn allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.gateway.origins = crate::guard::Origins::new(origins);
        self
    }

    /// The metrics `/metrics` serves (default: new ones). Give the [`Metrics`] whose
    /// [`Metrics::turn_metrics`] the runtime was built with, so that its turns are counted in
    /// them.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.gateway.metrics = metrics;
        self
    }

    /// The channels that receive webhooks.
    pub fn webhooks(mut self, webhooks: Webhooks) -> Self {
        self.gateway.webhooks = webhooks;
        self
    }

    /// The gateway. With a store, starts the task that writes `/v1` usage (so this must be
    /// called inside a Tokio runtime).
    pub fn build(mut self) -> Gateway {
        let limits = &self.gateway.limits;
        let permits = |n: usize| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)));
        self.gateway.body_budget = permits(limits.max_body_bytes_in_flight);
        self.gateway.unauthenticated = permits(limits.max_unauthenticated);
        if let Some(usage) = &self.gateway.usage {
            self.gateway.ledger = Some(Ledger::start(Arc::clone(usage), self.gateway.keys.clone()));
        }
        self.gateway
    }
}
