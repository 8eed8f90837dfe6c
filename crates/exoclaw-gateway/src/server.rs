//! The HTTP surface: the [`Gateway`] (where models come from, which tokens are accepted), the
//! axum [`app`] routing `/healthz`, `/readyz`, `/v1/models` and `/v1/chat/completions`, and
//! [`serve`].

use crate::openai::{self, AnswerMeta, ChunkEncoder, CompletionRequest};
use crate::{GatewayError, TokenSet, check_bind};
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use exoclaw_core::Provider;
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the gateway finds the provider for a model name. The CLI implements it over exoclaw's
/// router; [`StaticModels`] is a fixed table.
pub trait ModelSource: Send + Sync {
    /// The provider serving `model` (the name a client sent) and the model name to send it.
    /// An unknown name is [`GatewayError::ModelNotFound`].
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError>;

    /// The model names clients may ask for, as `GET /v1/models` lists them.
    fn models(&self) -> Vec<String>;
}

/// A fixed table of model names, each served by one provider under its own name.
#[derive(Debug, Default, Clone)]
pub struct StaticModels {
    table: BTreeMap<String, (Arc<dyn Provider>, String)>,
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
}

impl ModelSource for StaticModels {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        self.table
            .get(model)
            .cloned()
            .ok_or_else(|| GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() })
    }

    fn models(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }
}

/// What a running gateway serves and whom it lets in.
pub struct Gateway {
    source: Arc<dyn ModelSource>,
    tokens: TokenSet,
    started: u64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("models", &self.source.models())
            .field("tokens", &self.tokens)
            .finish()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Gateway {
    /// A gateway serving `source`'s models to holders of `tokens` (none: to anyone who can connect;
    /// see [`check_bind`]).
    pub fn new(source: Arc<dyn ModelSource>, tokens: TokenSet) -> Self {
        Self { source, tokens, started: now_secs() }
    }

    /// The accepted tokens.
    pub fn tokens(&self) -> &TokenSet {
        &self.tokens
    }
}

/// The gateway's routes. The probes need no token; everything under `/v1` does when tokens are
/// configured.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let v1 = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(middleware::from_fn_with_state(gateway.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(v1)
        .fallback(|| async {
            let e = GatewayError::invalid(
                "no such endpoint; this gateway serves /v1/chat/completions and /v1/models",
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

/// Serves `app(gateway)` on `listener` until the process ends, after [`check_bind`] agrees to the
/// listener's address.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Arc<Gateway>) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    check_bind(addr, gateway.tokens.is_required()).map_err(std::io::Error::other)?;
    tracing::info!(%addr, models = gateway.source.models().len(), auth = gateway.tokens.is_required(), "gateway listening");
    axum::serve(listener, app(gateway)).await
}

async fn require_token(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match gateway.tokens.check(header) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            // The reason only; the header's value is never logged.
            tracing::info!(path = %request.uri().path(), error = %e, "request refused");
            e.into_response()
        }
    }
}

async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    if gateway.source.models().is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no models configured").into_response()
    } else {
        "ready".into_response()
    }
}

async fn list_models(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let data: Vec<_> = gateway
        .source
        .models()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": gateway.started, "owned_by": "exoclaw"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// axum's JSON rejections in OpenAI's error shape. A body that parses but lacks a field (axum's
/// 422) is a 400, as OpenAI answers it; a missing content type keeps its 415.
fn rejection(e: JsonRejection) -> Response {
    let status = match e.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    let error =
        GatewayError::invalid(format!("{}; send a JSON chat completion request", e.body_text()), None);
    (status, Json(error.body())).into_response()
}

async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return rejection(e),
    };
    match complete(&gateway, request).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(error = %e, "chat completion failed");
            e.into_response()
        }
    }
}

async fn complete(gateway: &Gateway, request: CompletionRequest) -> Result<Response, GatewayError> {
    let (provider, upstream) = gateway.source.provider_for(&request.model)?;
    let meta = AnswerMeta {
        id: format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
        created: now_secs(),
        model: request.model.clone(),
    };
    let (stream, include_usage) = (request.stream, request.include_usage());
    let chat = openai::to_chat_request(request, &upstream)?;
    tracing::debug!(model = %meta.model, upstream = %upstream, provider = provider.name(), stream, "chat completion");
    if !stream {
        let answer = provider.complete(chat).await?;
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
    let events: exoclaw_core::EventStream = Box::pin(futures::stream::iter(first).chain(events));
    let frames =
        openai::sse_frames(events, ChunkEncoder::new(meta, include_usage), provider.name().to_owned())
            .map(|frame| Ok::<_, Infallible>(Bytes::from(frame)));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(frames))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}
