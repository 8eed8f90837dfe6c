//! The provider router: one [`Provider`] in front of several, that picks where each request goes
//! ([`Routes`]), retries transient failures with full-jitter backoff ([`RetryPolicy`]), skips
//! providers whose [`Breaker`] is open, and falls over along the route's fallback chain.
//!
//! Breakers rank providers; they never leave a request with nothing to try. When every provider
//! of a route has been tried or skipped for an open breaker and none answered, the skipped ones
//! are tried anyway, once each, in route order (as Envoy's panic threshold sends traffic to
//! ejected hosts when too few healthy ones are left): a route whose providers are all open still
//! answers whenever one of them does, instead of failing every request for a whole cool-down.
//! Each request reports one outcome per provider to its breaker — an answer after retries counts
//! as a success — see [`breaker`](Breaker) for how the breaker decides.
//!
//! Falling over is transparent only before an answer begins: the router waits for a provider's
//! first event before committing to it (a stalled, refusing or failing provider costs at most the
//! first-token timeout), then announces the choice with [`StreamEvent::Served`]. An error after
//! that ends the stream as it would without a router: the caller keeps the partial answer, and no
//! text is ever sent twice.

mod breaker;
mod retry;
mod routes;

pub use breaker::{
    Admission, Breaker, BreakerPolicy, BreakerState, DEFAULT_COOL_DOWN, DEFAULT_FAILURE_RATE,
    DEFAULT_MIN_FAILURES, DEFAULT_WINDOW,
};
pub use retry::RetryPolicy;
pub use routes::{RouteError, Routes, Target};

use async_trait::async_trait;
use exoclaw_core::{ErrorKind, EventStream, ModelInfo, Provider, ProviderError, Recovery};
use exoclaw_types::{ChatRequest, ChatResponse, ModelId, ModelRef, StreamEvent};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One provider behind the router.
#[derive(Debug)]
struct Member {
    provider: Arc<dyn Provider>,
    breaker: Breaker,
    health_checks: bool,
}

/// What `exoclaw providers status` shows of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    /// The provider instance's name.
    pub name: String,
    /// Its breaker.
    pub state: BreakerState,
    /// Requests the breaker counted within its window (see [`BreakerPolicy::window`]).
    pub calls: u32,
    /// How many of those failed at the provider.
    pub failures: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Whether periodic health checks watch it.
    pub health_checks: bool,
}

/// One provider's health check ([`Router::check_health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The provider's name.
    pub provider: String,
    /// Why it failed; `None` when the provider answered.
    pub error: Option<String>,
}

/// Builds a [`Router`].
#[derive(Debug)]
pub struct RouterBuilder {
    name: String,
    members: BTreeMap<String, Member>,
    retry: RetryPolicy,
    first_token_timeout: Option<Duration>,
    breaker: BreakerPolicy,
    seed: Option<u64>,
}

impl RouterBuilder {
    /// Adds a provider under its [`Provider::name`]. `health_checks`: whether
    /// [`Router::spawn_health_checks`] polls it (sensible for local servers; off for paid APIs,
    /// whose listings may cost requests against a quota).
    pub fn provider(mut self, provider: Arc<dyn Provider>, health_checks: bool) -> Self {
        let breaker = Breaker::new(self.breaker);
        self.members.insert(provider.name().to_owned(), Member { provider, breaker, health_checks });
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How long a provider may take to send an answer's first event before the router gives up
    /// on it and falls over (default: none beyond each provider's own first-byte timeout).
    pub fn first_token_timeout(mut self, timeout: Duration) -> Self {
        self.first_token_timeout = Some(timeout);
        self
    }

    /// Breaker settings for providers added after this call: the failed requests within the
    /// window needed before it may open (default 5) and the cool-down before a probe (default
    /// 30 s); the failure rate and window keep their current values. See [`BreakerPolicy`].
    pub fn breaker(mut self, min_failures: u32, cool_down: Duration) -> Self {
        self.breaker.min_failures = min_failures;
        self.breaker.cool_down = cool_down;
        self
    }

    /// The whole breaker policy for providers added after this call (default:
    /// [`BreakerPolicy::default`]).
    pub fn breaker_policy(mut self, policy: BreakerPolicy) -> Self {
        self.breaker = policy;
        self
    }

    /// A fixed seed for the backoff jitter (tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The provider names, for building [`Routes`] over them.
    pub fn provider_names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// The router, with `routes` (built over [`RouterBuilder::provider_names`]).
    pub fn build(self, routes: Routes) -> Router {
        let rng = match self.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Router {
            name: self.name,
            members: self.members.into_iter().map(|(name, m)| (name, Arc::new(m))).collect(),
            routes,
            retry: self.retry,
            first_token_timeout: self.first_token_timeout,
            rng: Mutex::new(rng),
        }
    }
}

/// Routes each request to a provider, with retries, breakers and fallback. See the module docs.
#[derive(Debug)]
pub struct Router {
    name: String,
    members: BTreeMap<String, Arc<Member>>,
    routes: Routes,
    retry: RetryPolicy,
    first_token_timeout: Option<Duration>,
    rng: Mutex<fastrand::Rng>,
}

/// Failures that say the provider cannot serve requests now, and so count against its breaker:
/// exactly the ones worth retrying ([`ErrorKind::is_retryable`]: 5xx, overload, timeouts, refused
/// or broken connections, malformed streams, and rate limits — a provider refusing most of our
/// requests with 429 is as unusable to this route as one answering 503). A bad request, a missing
/// or refused key, an unknown model, a context too long or a cancelled call say nothing about the
/// server's health and never count.
fn counts_against_breaker(kind: ErrorKind) -> bool {
    kind.is_retryable()
}

/// The one outcome a request reports to a provider's breaker, however many attempts it made
/// there: set to the last counting failure as attempts fail, reported when the request leaves
/// the provider — or is dropped, so a caller that gives up mid-retry still reports what it saw.
/// An admitted probe that ends with no verdict either way is reported abandoned.
struct Verdict<'a> {
    breaker: &'a Breaker,
    failure: Option<String>,
    probe: bool,
}

impl<'a> Verdict<'a> {
    fn new(breaker: &'a Breaker) -> Self {
        Self { breaker, failure: None, probe: false }
    }

    /// The provider answered. `fresh`: proof it works now (a probe, or a last resort tried while
    /// its breaker was open), which closes an open breaker.
    fn answered(mut self, fresh: bool) {
        self.failure = None;
        if fresh || self.probe {
            self.breaker.recovered();
        } else {
            self.breaker.success();
        }
        self.probe = false;
    }
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        if let Some(error) = self.failure.take() {
            self.breaker.failure(&error);
        } else if self.probe {
            self.breaker.abandon();
        }
    }
}

/// Where one provider left a request.
enum Step<T> {
    /// It answered.
    Answered(T),
    /// It failed in a way no other provider can help with.
    Failed(ProviderError),
    /// Its breaker was open: not tried.
    Skipped,
    /// It was tried and did not answer: on to the next.
    Next,
}

/// What a request went through, for the error when nothing answers.
#[derive(Default)]
struct Trail {
    tried: Vec<String>,
    last: Option<ProviderError>,
}

impl Router {
    /// A builder for a router called `name` (the name its usage is reported under when a provider
    /// does not say; answers name their real provider with [`StreamEvent::Served`]).
    pub fn builder(name: impl Into<String>) -> RouterBuilder {
        RouterBuilder {
            name: name.into(),
            members: BTreeMap::new(),
            retry: RetryPolicy::default(),
            first_token_timeout: None,
            breaker: BreakerPolicy::default(),
            seed: None,
        }
    }

    /// Where a request for `model` would go, primary first: the routing decision alone.
    pub fn route(&self, model: &str) -> Result<Vec<Target>, RouteError> {
        self.routes.resolve(model)
    }

    /// Each provider's breaker and last error, by name.
    pub fn status(&self) -> Vec<ProviderStatus> {
        self.members
            .iter()
            .map(|(name, m)| {
                let (calls, failures) = m.breaker.window();
                ProviderStatus {
                    name: name.clone(),
                    state: m.breaker.state(),
                    calls,
                    failures,
                    last_error: m.breaker.last_error(),
                    health_checks: m.health_checks,
                }
            })
            .collect()
    }

    /// Checks every provider's health once (those with health checks on, or all with `all`),
    /// feeding the breakers (a passed check closes an open one); each check may take up to
    /// `timeout`. Returns each check's result, by provider name.
    pub async fn check_health(&self, all: bool, timeout: Duration) -> Vec<HealthCheck> {
        let checks =
            self.members.iter().filter(|(_, m)| all || m.health_checks).map(|(name, m)| async move {
                let error = match tokio::time::timeout(timeout, m.provider.health()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(err)) => Some(err.to_string()),
                    Err(_) => Some(format!("no health answer within {} s", timeout.as_secs())),
                };
                match &error {
                    None => m.breaker.recovered(),
                    Some(error) => m.breaker.failure(error),
                }
                HealthCheck { provider: name.clone(), error }
            });
        futures::future::join_all(checks).await
    }

    /// Checks health every `every` until `cancel` is cancelled, handing each round's results to
    /// `report` (to record them where another process can read them, say).
    pub fn spawn_health_checks(
        self: &Arc<Self>,
        every: Duration,
        cancel: CancellationToken,
        report: impl Fn(Vec<HealthCheck>) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let router = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = ticks.tick() => {
                        let round = router.check_health(false, every.min(Duration::from_secs(10))).await;
                        if !round.is_empty() {
                            report(round);
                        }
                    }
                }
            }
        })
    }

    fn unit(&self) -> f64 {
        self.rng.lock().map(|mut rng| rng.f64()).unwrap_or(0.5)
    }

    /// Sends `request` to `member` and waits for its first event, within the first-token timeout
    /// and what is left of the deadline.
    async fn open(
        &self,
        member: &Member,
        request: ChatRequest,
        deadline: Instant,
    ) -> Result<(StreamEvent, EventStream), ProviderError> {
        let name = member.provider.name().to_owned();
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = self.first_token_timeout.map_or(left, |t| t.min(left));
        let first = async {
            let mut stream = member.provider.stream(request).await?;
            match stream.next().await {
                Some(Ok(event)) => Ok((event, stream)),
                Some(Err(err)) => Err(err),
                None => {
                    Err(ProviderError::new(ErrorKind::Protocol, &name, "the answer ended before it began"))
                }
            }
        };
        match tokio::time::timeout(limit, first).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::new(
                ErrorKind::Timeout,
                &name,
                format!("no answer began within {} ms", limit.as_millis()),
            )),
        }
    }

    /// The answer's stream once committed to `target`: `Served`, the first event, the rest. The
    /// request already counted as a success when its first event came; a server failure after
    /// that (a cut stream) is counted as a failure as well, rare enough not to skew the rate.
    fn committed(
        &self,
        target: Target,
        member: Arc<Member>,
        first: StreamEvent,
        rest: EventStream,
    ) -> EventStream {
        let served = StreamEvent::Served { provider: target.provider, model: target.model };
        let head = futures::stream::iter([Ok(served), Ok(first)]);
        let rest = rest.inspect(move |item| {
            if let Err(err) = item
                && counts_against_breaker(err.kind)
            {
                member.breaker.failure(&err.to_string());
            }
        });
        Box::pin(head.chain(rest))
    }

    /// Routes `request` down its chain (retries, breakers, fallbacks): `call` makes one attempt
    /// on one target (with the request addressed to the target's model, and the deadline), and
    /// its answer — a stream or a whole response — is the router's.
    async fn answer<T, F>(
        &self,
        request: ChatRequest,
        call: impl Fn(&Target, &Arc<Member>, ChatRequest, Instant) -> F,
    ) -> Result<T, ProviderError>
    where
        F: Future<Output = Result<T, ProviderError>>,
    {
        let model = request.model.0.clone();
        let targets = self
            .routes
            .resolve(&model)
            .map_err(|e| ProviderError::new(ErrorKind::ModelNotFound, &self.name, e.0))?;
        let deadline = Instant::now() + self.retry.deadline;
        let mut trail = Trail::default();
        let mut skipped: Vec<(&Target, &Arc<Member>)> = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let Some(member) = self.members.get(&target.provider) else { continue };
            let has_fallback = index + 1 < targets.len();
            match self.try_target(target, member, has_fallback, &request, deadline, &call, &mut trail).await {
                Step::Answered(answer) => return Ok(answer),
                Step::Failed(err) => return Err(err),
                Step::Skipped => skipped.push((target, member)),
                Step::Next => {}
            }
            if Instant::now() >= deadline {
                trail.tried.push(format!("the {} s deadline passed", self.retry.deadline.as_secs()));
                return Err(self.exhausted(&model, trail));
            }
        }
        // Nothing answered, and the providers skipped for an open breaker are all that is left:
        // try each once rather than fail without trying (Envoy's panic mode). An open breaker
        // says "probably down", not "certainly down", and a request has no better option.
        for (target, member) in skipped {
            if Instant::now() >= deadline {
                trail.tried.push(format!("the {} s deadline passed", self.retry.deadline.as_secs()));
                break;
            }
            match self.last_resort(target, member, &request, deadline, &call, &mut trail).await {
                Step::Answered(answer) => return Ok(answer),
                Step::Failed(err) => return Err(err),
                Step::Skipped | Step::Next => {}
            }
        }
        Err(self.exhausted(&model, trail))
    }

    /// Attempts `target` with retries while its breaker admits it.
    #[allow(clippy::too_many_arguments)]
    async fn try_target<T, F>(
        &self,
        target: &Target,
        member: &Arc<Member>,
        has_fallback: bool,
        request: &ChatRequest,
        deadline: Instant,
        call: &impl Fn(&Target, &Arc<Member>, ChatRequest, Instant) -> F,
        trail: &mut Trail,
    ) -> Step<T>
    where
        F: Future<Output = Result<T, ProviderError>>,
    {
        let mut verdict = Verdict::new(&member.breaker);
        let mut retries = 0;
        loop {
            let admission = member.breaker.admit();
            if let Admission::Rejected { retry_in } = admission {
                trail.tried.push(format!(
                    "{target} skipped: its circuit breaker is open (next probe in {} s)",
                    retry_in.as_secs()
                ));
                // Opened by other requests while this one was retrying: it was tried all the same.
                return if retries == 0 && verdict.failure.is_none() { Step::Skipped } else { Step::Next };
            }
            verdict.probe = admission == Admission::Probe;
            let mut attempt = request.clone();
            attempt.model = ModelId(target.model.clone());
            let err = match call(target, member, attempt, deadline).await {
                Ok(answer) => {
                    verdict.answered(false);
                    return Step::Answered(answer);
                }
                Err(err) => err,
            };
            let counts = counts_against_breaker(err.kind);
            if counts {
                verdict.failure = Some(err.to_string());
            }
            tracing::debug!(target = %target, error = %err, "provider attempt failed");
            trail.tried.push(format!("{target}: {} ({})", err.message, err.kind.code()));
            let recovery = err.recovery();
            if recovery == Recovery::Fail {
                return Step::Failed(err);
            }
            let timed_out = err.kind == ErrorKind::Timeout;
            // A failed probe reopens the breaker (when the verdict is reported, below): retrying
            // would only meet it open.
            let probe_failed = verdict.probe && counts;
            trail.last = Some(err);
            let wait = match recovery {
                _ if probe_failed => None,
                // A stalled provider would stall again: with somewhere else to go, go there.
                Recovery::Retry { .. } if has_fallback && timed_out => None,
                Recovery::Retry { after } if retries < self.retry.retries => {
                    self.retry.backoff(retries, after, self.unit())
                }
                // Nowhere else to go: a refused or dropped connection (a pooled connection the
                // server had just closed, a restart) is worth another try.
                Recovery::OpenBreaker if !has_fallback && retries < self.retry.retries => {
                    self.retry.backoff(retries, None, self.unit())
                }
                Recovery::Retry { .. } | Recovery::FallBack | Recovery::OpenBreaker | Recovery::Fail => None,
            };
            match wait {
                Some(wait) if Instant::now() + wait < deadline => {
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                _ => return Step::Next,
            }
        }
    }

    /// One attempt on `target`, skipped earlier for its open breaker, now that nothing else is
    /// left. Its answer closes the breaker; its failure is reported like any other.
    async fn last_resort<T, F>(
        &self,
        target: &Target,
        member: &Arc<Member>,
        request: &ChatRequest,
        deadline: Instant,
        call: &impl Fn(&Target, &Arc<Member>, ChatRequest, Instant) -> F,
        trail: &mut Trail,
    ) -> Step<T>
    where
        F: Future<Output = Result<T, ProviderError>>,
    {
        let mut verdict = Verdict::new(&member.breaker);
        let mut attempt = request.clone();
        attempt.model = ModelId(target.model.clone());
        match call(target, member, attempt, deadline).await {
            Ok(answer) => {
                verdict.answered(true);
                Step::Answered(answer)
            }
            Err(err) => {
                if counts_against_breaker(err.kind) {
                    verdict.failure = Some(err.to_string());
                }
                tracing::debug!(target = %target, error = %err, "last-resort attempt failed");
                trail.tried.push(format!(
                    "{target}, tried though its breaker is open as nothing else was left: {} ({})",
                    err.message,
                    err.kind.code()
                ));
                if err.recovery() == Recovery::Fail {
                    return Step::Failed(err);
                }
                trail.last = Some(err);
                Step::Next
            }
        }
    }

    fn exhausted(&self, model: &str, trail: Trail) -> ProviderError {
        let Trail { tried, last } = trail;
        let kind = last.as_ref().map_or(ErrorKind::Overloaded, |e| e.kind);
        let mut err = ProviderError::new(
            kind,
            &self.name,
            format!("no provider could answer `{model}`: {}", tried.join("; ")),
        );
        err.status = last.and_then(|e| e.status);
        err
    }
}

#[async_trait]
impl Provider for Router {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.answer(request, |target, member, attempt, deadline| {
            let (target, member) = (target.clone(), Arc::clone(member));
            async move {
                let (first, rest) = self.open(&member, attempt, deadline).await?;
                Ok(self.committed(target, member, first, rest))
            }
        })
        .await
    }

    /// A whole answer from a provider's own non-streaming call (not a stream collected here), so
    /// a proxy in front of the router asks upstream for exactly what its client asked for. It
    /// takes as long as the model writes: the provider's own timeouts bound it, not the router's
    /// first-token one. The answer names the target that served it (`served`), as a stream's
    /// [`StreamEvent::Served`] does.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.answer(request, |target, member, attempt, _| {
            let served = ModelRef { provider: target.provider.clone(), model: ModelId(target.model.clone()) };
            let member = Arc::clone(member);
            async move {
                let mut answer = member.provider.complete(attempt).await?;
                answer.served = Some(served);
                Ok(answer)
            }
        })
        .await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut all = Vec::new();
        for (name, member) in &self.members {
            if let Ok(models) = member.provider.models().await {
                all.extend(models.into_iter().map(|mut m| {
                    m.id = ModelId(format!("{name}/{}", m.id.0));
                    m
                }));
            }
        }
        Ok(all)
    }

    async fn health(&self) -> Result<(), ProviderError> {
        let mut last = None;
        for member in self.members.values() {
            match member.provider.health().await {
                Ok(()) => return Ok(()),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            ProviderError::new(ErrorKind::Connect, &self.name, "the router has no providers")
        }))
    }
}
