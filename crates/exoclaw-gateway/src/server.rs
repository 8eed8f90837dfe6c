//! The HTTP surface: the axum [`app`] routing `/healthz`, `/readyz`, `/metrics`, `/v1/models`,
//! `/v1/chat/completions`, `/v1/embeddings` ([`crate::embeddings`]), the WebSocket and the
//! webhooks, and [`serve`], which runs it until a shutdown signal and then drains.

use crate::accounting::Bill;
use crate::keys::{self, Caller};
use crate::openai::{self, AnswerMeta, ChunkEncoder, CompletionRequest};
use crate::state::now_secs;
use crate::text::Escaped;
use crate::{Gateway, GatewayError, check_bind};
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use exoclaw_core::{Embedder, Provider};
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Where the gateway finds the provider for a model name. The CLI implements it over exoclaw's
/// router; [`StaticModels`] is a fixed table. Object-safe (the gateway holds an
/// `Arc<dyn ModelSource>`); an implementation that overrides [`ModelSource::ready`] puts
/// `#[async_trait::async_trait]` on its `impl` block.
#[async_trait::async_trait]
pub trait ModelSource: Send + Sync {
    /// The provider serving `model` (the name a client sent) and the model name to send it.
    /// An unknown name is [`GatewayError::ModelNotFound`].
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError>;

    /// The model names clients may ask for, as `GET /v1/models` lists them.
    fn models(&self) -> Vec<String>;

    /// The `provider`, `model` whose prices a request for `model` is reserved and charged at (the
    /// route's primary target; an answer that names another with [`StreamEvent::Served`] is
    /// charged as that one). `None`: recorded as `unknown/unknown`, unpriced, so refused to
    /// callers with a dollar budget.
    ///
    /// [`StreamEvent::Served`]: exoclaw_types::StreamEvent::Served
    fn billed_as(&self, model: &str) -> Option<(String, String)> {
        let _ = model;
        None
    }

    /// Each provider's circuit breaker state (`closed`, `open`, `half_open`), for `/metrics`.
    fn breaker_states(&self) -> Vec<(String, &'static str)> {
        Vec::new()
    }

    /// The embedding model serving `model` (the name a client sent to `/v1/embeddings`): the
    /// embedder, the provider and model its usage is recorded and priced as, and whether it
    /// takes `dimensions`. An unknown name is [`GatewayError::ModelNotFound`]; a model (or a
    /// provider) that makes no embeddings is [`GatewayError::NoEmbeddings`], saying why. Async
    /// so that an implementation may open (load) the model here. The default: this source
    /// serves no embeddings at all.
    async fn embedder_for(&self, model: &str) -> Result<EmbeddingModel, GatewayError> {
        Err(GatewayError::NoEmbeddings {
            model: model.to_owned(),
            reason: "this gateway serves no embedding models".to_owned(),
        })
    }

    /// Whether the gateway can serve now, as `GET /readyz` answers (503 with the reason while
    /// not): at least one of [`ModelSource::models`] can be opened. Asked on every probe, so an
    /// implementation should answer from what it knows rather than call a model. The default:
    /// ready whenever a model is listed.
    async fn ready(&self) -> Result<(), NotReady> {
        if self.models().is_empty() { Err(NotReady::NoModels) } else { Ok(()) }
    }
}

/// Why the gateway is not ready to serve (`GET /readyz` answers 503 with this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// No model is listed at all.
    #[error(
        "no models are configured; configure a provider (docs/configuration.md) or set a provider's API key"
    )]
    NoModels,
    /// Models are listed, but none of them can be opened.
    #[error(
        "none of the models this gateway lists can be opened: {}",
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NoModelOpens {
        /// Each model tried, and why it cannot be opened.
        failures: Vec<ModelFailure>,
    },
}

/// A listed model that cannot be opened, and why (part of [`NotReady::NoModelOpens`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{model}: {reason}")]
pub struct ModelFailure {
    /// The model name, as `/v1/models` lists it.
    pub model: String,
    /// Why it cannot be opened, and what to do about it.
    pub reason: String,
}

impl ModelFailure {
    /// `model` cannot be opened because of `reason`.
    pub fn new(model: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self { model: model.into(), reason: reason.to_string() }
    }
}

/// An embedding model as a [`ModelSource`] serves it to `/v1/embeddings`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmbeddingModel {
    /// What makes the vectors.
    pub embedder: Arc<dyn Embedder>,
    /// The provider instance's name: what usage is recorded, priced (`[prices]` patterns match
    /// `provider/model`) and counted in the token metrics under.
    pub provider: String,
    /// The model name the embedder is sent, and priced as.
    pub model: String,
    /// Whether the model can shorten its vectors (OpenAI's `dimensions`, Gemini's
    /// `outputDimensionality`). Where it cannot, or it is not known to, a request that sets
    /// `dimensions` is refused (400) rather than answered with vectors of another length.
    pub dimensions: bool,
}

impl EmbeddingModel {
    /// `embedder` serving `model`, recorded as provider `provider`; it does not take
    /// `dimensions` ([`EmbeddingModel::with_dimensions`] says it does).
    pub fn new(embedder: Arc<dyn Embedder>, provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self { embedder, provider: provider.into(), model: model.into(), dimensions: false }
    }

    /// Whether the model takes `dimensions`.
    pub fn with_dimensions(mut self, dimensions: bool) -> Self {
        self.dimensions = dimensions;
        self
    }
}

/// A fixed table of model names, each served by one provider under its own name, and of
/// embedding model names, each served by one embedder.
#[derive(Debug, Default, Clone)]
pub struct StaticModels {
    table: BTreeMap<String, (Arc<dyn Provider>, String)>,
    embedders: BTreeMap<String, EmbeddingModel>,
}

impl StaticModels {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `name` with `provider`, asking it for `upstream_model`.
    pub fn with(
        mut self,
        name: impl Into<String>,
        provider: Arc<dyn Provider>,
        upstream_model: impl Into<String>,
    ) -> Self {
        self.table.insert(name.into(), (provider, upstream_model.into()));
        self
    }

    /// Serves `name` on `/v1/embeddings` with `model`; `GET /v1/models` lists it too.
    pub fn with_embedder(mut self, name: impl Into<String>, model: EmbeddingModel) -> Self {
        self.embedders.insert(name.into(), model);
        self
    }
}

#[async_trait::async_trait]
impl ModelSource for StaticModels {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        if let Some(found) = self.table.get(model) {
            return Ok(found.clone());
        }
        if self.embedders.contains_key(model) {
            return Err(GatewayError::invalid(
                format!("the model `{model}` makes embeddings only; send it to /v1/embeddings"),
                Some("model"),
            ));
        }
        Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() })
    }

    fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = self.table.keys().chain(self.embedders.keys()).cloned().collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The provider's own name and the model name it is sent: what its usage is recorded under.
    fn billed_as(&self, model: &str) -> Option<(String, String)> {
        self.table.get(model).map(|(provider, upstream)| (provider.name().to_owned(), upstream.clone()))
    }

    async fn embedder_for(&self, model: &str) -> Result<EmbeddingModel, GatewayError> {
        if let Some(found) = self.embedders.get(model) {
            return Ok(found.clone());
        }
        if self.table.contains_key(model) {
            return Err(GatewayError::NoEmbeddings {
                model: model.to_owned(),
                reason: "it is a chat model; use it with /v1/chat/completions".to_owned(),
            });
        }
        Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() })
    }
}

/// The gateway's routes. The probes need no token; everything under `/v1` does when tokens are
/// configured: each `/v1` handler takes the [`Caller`], and `/metrics` an [`Operator`]. In front
/// of every route ([`crate::front`]): the `Origin`/`Host` check ([`crate::guard`]: web pages
/// that are not allowed, and on a gateway that needs no token other names than this machine's,
/// are refused) and the request-body budget and timeout ([`crate::body`]). For `axum::serve`;
/// [`serve`] puts the same layer once around the whole router instead of around each route
/// (which costs every request a boxed service and future).
pub fn app(gateway: Arc<Gateway>) -> Router {
    routes(Arc::clone(&gateway)).layer(crate::front::FrontLayer::new(gateway))
}

/// [`app`]'s routes, without the front layer.
pub(crate) fn routes(gateway: Arc<Gateway>) -> Router {
    let v1 = Router::new()
        .route("/v1/models", get(list_models))
        .route(COMPLETIONS, post(chat_completions))
        .route(crate::embeddings::EMBEDDINGS, post(crate::embeddings::handler));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/webhook/{channel}", post(webhook))
        .merge(crate::rpc::routes())
        .merge(v1)
        .merge(crate::mcp::routes(&gateway))
        .fallback(|| async {
            let e = GatewayError::invalid(
                "no such endpoint; this gateway serves /v1/chat/completions, /v1/embeddings, /v1/models, \
                 /ws, and /mcp when [gateway] mcp is on",
                None,
            );
            (StatusCode::NOT_FOUND, Json(e.body()))
        })
        // Inline base64 images are large; axum's 2 MiB default would refuse a single photo.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway)
}

/// The largest request body accepted: OpenAI takes images up to 20 MB, base64 makes them a third
/// larger, and the conversation comes on top.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Serves [`app`]`(gateway)` on `listener` until `shutdown` completes, after [`check_bind`] agrees to
/// the listener's address, holding connections to the gateway's [`Limits`](crate::Limits)
/// (connection cap, header timeout, keep-alive; see `listen.rs`). Then it stops accepting
/// connections, tells WebSocket clients, gives running streams and turns up to the grace period
/// to finish, and writes the usage still queued.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    check_bind(addr, gateway.requires_auth()).map_err(std::io::Error::other)?;
    tracing::info!(%addr, models = gateway.source.models().len(), auth = gateway.requires_auth(), "gateway listening");
    let token = gateway.shutdown.clone();
    let signalled = {
        let token = token.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; letting running requests finish");
            token.cancel();
        }
    };
    let front = tower::Layer::layer(&crate::front::FrontLayer::new(gateway.clone()), routes(gateway.clone()));
    let server = crate::listen::run(listener, front, gateway.clone(), signalled);
    let grace = gateway.limits.shutdown_grace;
    let mut server = tokio::spawn(server);
    tokio::select! {
        // The server only ends by itself if its task does.
        ended = &mut server => {
            gateway.flush_usage().await;
            return ended.map_err(std::io::Error::other);
        }
        () = token.cancelled() => {}
    }
    // HTTP requests (the accept loop's graceful shutdown) and WebSocket turns (`drain`: upgraded
    // connections are not the accept loop's to wait for) finish side by side within the grace
    // period.
    let http = async {
        match tokio::time::timeout(grace, server).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "HTTP requests still running after the grace period were cut off"
                );
                Ok(())
            }
        }
    };
    let (http, drained) = tokio::join!(http, crate::chat::drain(&gateway));
    if !drained.in_time {
        tracing::warn!(
            cancelled = drained.cancelled,
            abandoned = drained.abandoned,
            "shutdown cut off running turns"
        );
    }
    gateway.flush_usage().await;
    http
}

/// The caller of a `/v1` request: an operator, a live virtual key, or anyone when the gateway
/// needs no token. As an extractor it runs before the body is read, so a refused request's body
/// never is.
impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gateway: &Arc<Gateway>) -> Result<Self, Response> {
        authenticate(gateway, parts).await
    }
}

/// An operator token's holder (or anyone, when the gateway needs no token): what `/metrics` and
/// `/mcp` ask.
pub(crate) struct Operator;

impl FromRequestParts<Arc<Gateway>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gateway: &Arc<Gateway>) -> Result<Self, Response> {
        match authenticate(gateway, parts).await? {
            Caller::Operator | Caller::Anyone => Ok(Operator),
            Caller::Key(_) => {
                let e = GatewayError::Unauthorized {
                    reason: "this endpoint is for the gateway's operator tokens, not virtual keys",
                };
                Err(refuse(gateway, parts.uri.path(), e))
            }
        }
    }
}

/// Who sent the request's `Authorization` header, or the refusal to answer with.
async fn authenticate(gateway: &Gateway, parts: &Parts) -> Result<Caller, Response> {
    let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match keys::bearer(header) {
        Ok(token) => keys::authenticate(gateway, token).await,
        Err(e) => Err(e),
    };
    caller.map_err(|e| refuse(gateway, parts.uri.path(), e))
}

fn refuse(gateway: &Gateway, path: &str, e: GatewayError) -> Response {
    // The reason only; the header's value is never logged.
    tracing::info!(path = %Escaped(path), error = %Escaped(&e), "request refused");
    gateway.metrics.error(e.kind_name());
    e.into_response()
}

/// A chat platform's delivery: 404 for a channel with no webhook, 401 when verification fails
/// (the reason is logged, never sent), else what the channel answers.
async fn webhook(
    State(gateway): State<Arc<Gateway>>,
    axum::extract::Path(channel): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let endpoint = format!("webhook:{channel}");
    let response = match gateway.webhooks.get(&channel) {
        None => {
            let known = gateway.webhooks.channels();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            let message = format!("no webhook for the channel `{channel}`; channels with one: {known}");
            (StatusCode::NOT_FOUND, Json(json!({"error": {"message": message, "code": "unknown_channel"}})))
                .into_response()
        }
        Some(hook) => match hook.verify(&headers, &body) {
            Err(reason) => {
                tracing::warn!(
                    channel = %Escaped(&channel),
                    reason = %Escaped(&reason),
                    "webhook delivery failed verification"
                );
                gateway.metrics.error("webhook_unverified");
                let message = "the delivery could not be verified as coming from the platform";
                (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": message, "code": "unverified"}})))
                    .into_response()
            }
            Ok(()) => match hook.receive(&headers, body).await {
                Ok(answer) => Json(answer).into_response(),
                Err(reason) => {
                    tracing::warn!(channel = %Escaped(&channel), reason = %Escaped(&reason), "webhook delivery not taken");
                    gateway.metrics.error("webhook_rejected");
                    (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": reason, "code": "rejected"}})))
                        .into_response()
                }
            },
        },
    };
    let endpoint = if gateway.webhooks.get(&channel).is_some() { endpoint } else { "webhook:unknown".into() };
    gateway.metrics.request(&endpoint, response.status().as_str(), started.elapsed());
    response
}

async fn metrics(State(gateway): State<Arc<Gateway>>, _: Operator) -> Response {
    let body = gateway.metrics.render(&gateway.source.breaker_states());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.source.ready().await {
        Ok(()) => "ready".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why.to_string()).into_response(),
    }
}

async fn list_models(State(gateway): State<Arc<Gateway>>, caller: Caller) -> Json<serde_json::Value> {
    // A key sees the models it may use.
    let data: Vec<_> = gateway
        .source
        .models()
        .into_iter()
        .filter(|model| caller.check_model(model).is_ok())
        .map(|id| json!({"id": id, "object": "model", "created": gateway.started, "owned_by": "exoclaw"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// A `/v1` API that takes a JSON body, for what its refusals say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonApi {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
}

impl JsonApi {
    /// The API's name in a sentence: "chat completions", "embeddings".
    pub(crate) fn name(self) -> &'static str {
        match self {
            JsonApi::Chat => "chat completions",
            JsonApi::Embeddings => "embeddings",
        }
    }

    /// What a body should be: "a JSON chat completion request".
    fn expected(self) -> &'static str {
        match self {
            JsonApi::Chat => "a JSON chat completion request",
            JsonApi::Embeddings => "a JSON embeddings request",
        }
    }
}

/// axum's JSON rejections in OpenAI's error shape. A body that parses but lacks a field (axum's
/// 422) is a 400, as OpenAI answers it; a missing content type keeps its 415.
fn rejection(e: JsonRejection, api: JsonApi) -> Response {
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    let error = GatewayError::invalid(format!("{}; send {}", e.body_text(), api.expected()), None);
    (status, Json(error.body())).into_response()
}

/// The chat completions endpoint, as routed and as its metrics are labelled.
pub(crate) const COMPLETIONS: &str = "/v1/chat/completions";

/// The body as a `T` (the request type of `api`). A JSON body is parsed straight from its
/// bytes; any other body, and one that does not parse, goes through axum's `Json` extractor,
/// whose rejection says what is wrong (the content type, or the path of the field at fault).
/// A field exoclaw does not support is named in a 400 of its own (see [`CompletionRequest`]).
pub(crate) async fn json_request<T: serde::de::DeserializeOwned>(
    request: Request,
    api: JsonApi,
) -> Result<T, Response> {
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let body = Bytes::from_request(request, &()).await.map_err(IntoResponse::into_response)?;
    let is_json = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        match serde_json::from_slice(&body) {
            Ok(request) => return Ok(request),
            Err(e) => {
                if let Some(field) = openai::unknown_field(&e.to_string()) {
                    return Err(openai::unsupported_in(api, field).into_response());
                }
            }
        }
    }
    // The content type is all the `Json` extractor looks at besides the body.
    let mut request = Request::new(Body::from(body));
    if let Some(content_type) = content_type {
        request.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    let Json(request) = Json::<T>::from_request(request, &()).await.map_err(|e| rejection(e, api))?;
    Ok(request)
}

async fn chat_completions(State(gateway): State<Arc<Gateway>>, caller: Caller, request: Request) -> Response {
    let started = Instant::now();
    let response = match json_request::<CompletionRequest>(request, JsonApi::Chat).await {
        Ok(request) => match complete(&gateway, caller, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::info!(error = %Escaped(&e), "chat completion failed");
                gateway.metrics.error(e.kind_name());
                e.into_response()
            }
        },
        Err(response) => response,
    };
    // A stream's latency here is its time to the first byte; its bill records the whole.
    gateway.metrics.request(COMPLETIONS, response.status().as_str(), started.elapsed());
    response
}

/// A fresh `chatcmpl-…` id: 24 random letters and digits, as OpenAI's look. Unique, not secret,
/// so a fast thread-local generator does (a UUID asked the kernel for randomness per request).
fn completion_id() -> String {
    let mut id = String::with_capacity(33);
    id.push_str("chatcmpl-");
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
    id
}

async fn complete(
    gateway: &Arc<Gateway>,
    caller: Caller,
    request: CompletionRequest,
) -> Result<Response, GatewayError> {
    caller.check_model(&request.model)?;
    let (provider, upstream) = gateway.source.provider_for(&request.model)?;
    let meta = AnswerMeta { id: completion_id(), created: now_secs(), model: request.model.clone() };
    let (stream, include_usage) = (request.stream, request.include_usage());
    let chat = openai::to_chat_request(request, &upstream)?;
    // Budgets are reserved here, before anything goes upstream; a refusal costs nothing.
    let mut bill = Bill::open(gateway, caller, &meta.model, &chat)?;
    tracing::debug!(
        model = %Escaped(&meta.model),
        upstream = %Escaped(&upstream),
        provider = provider.name(),
        stream,
        "chat completion"
    );
    bill.sent();
    if !stream {
        let answer = provider.complete(chat).await?;
        bill.answered(&answer);
        bill.settle();
        return Ok(Json(openai::encode_response(&meta, &answer)).into_response());
    }
    let mut events = provider.stream(chat).await?;
    // Wait for the first event before answering 200, so a failure that comes first (most do:
    // bad key, rate limit) is an HTTP error a client can act on rather than a frame mid-stream.
    let first = events.next().await;
    let first = match first {
        Some(Err(e)) => return Err(e.into()),
        other => other,
    };
    bill.first_token();
    // The bill travels with the stream: it is settled when the stream ends or the client leaves
    // (then with what was generated so far).
    let events = futures::stream::iter(first).chain(events).inspect(move |event| {
        if let Ok(event) = event {
            bill.observe(event);
        }
    });
    let events: exoclaw_core::EventStream = Box::pin(events);
    let frames =
        openai::sse_frames(events, ChunkEncoder::new(meta, include_usage), provider.name().to_owned())
            .map(|frame| Ok::<_, Infallible>(Bytes::from(frame)));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(frames))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}
