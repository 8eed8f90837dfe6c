//! [`GatewayError`]: everything the gateway refuses or fails at, and how each becomes an HTTP
//! answer in OpenAI's error shape (`{"error":{"message","type","param","code"}}`), so OpenAI SDKs
//! raise their usual typed exceptions.

use crate::accounting::BudgetRefusal;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exoclaw_core::{ErrorKind, ProviderError};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// What went wrong serving a request, or setting the gateway up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The request asked for a model this gateway does not serve.
    #[error("the model `{model}` does not exist on this gateway; {hint}", hint = available_hint(available))]
    ModelNotFound {
        /// The name asked for.
        model: String,
        /// The names that are served.
        available: Vec<String>,
    },
    /// The model makes no embeddings (a chat model, or a provider whose API has none), or this
    /// gateway cannot serve it on `/v1/embeddings` yet.
    #[error("the model `{model}` cannot make embeddings: {reason}")]
    NoEmbeddings {
        /// The name asked for.
        model: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// The request body is malformed or asks for something impossible.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong and how to fix it.
        message: String,
        /// The offending field, when one is known (`messages[2].content`).
        param: Option<String>,
    },
    /// A token is required and the request carried none, or a wrong one.
    #[error(
        "{reason}: send `Authorization: Bearer <token>` with one of the gateway's tokens (the OpenAI SDKs send their `api_key` this way)"
    )]
    Unauthorized {
        /// Whether the header was missing or the token wrong (never the token itself).
        reason: &'static str,
    },
    /// The virtual key may not use this model.
    #[error("the key `{key}` may not use the model `{model}`; it may use: {}", allowed.join(", "))]
    ModelNotAllowed {
        /// The model asked for.
        model: String,
        /// The key's name.
        key: String,
        /// Its allow-list.
        allowed: Vec<String>,
    },
    /// The virtual key was revoked.
    #[error("the key `{key}` was revoked; ask the gateway's operator for a new one (`exoclaw keys create`)")]
    KeyRevoked {
        /// The key's name.
        key: String,
    },
    /// A budget refuses the request, before anything is sent upstream: the virtual key's, or one
    /// of the gateway's `[budgets]`; or the model has no price and a budget counts dollars.
    #[error("{0}")]
    BudgetExceeded(BudgetRefusal),
    /// The virtual key is over its requests-per-minute limit.
    #[error("the key `{key}` is limited to {rpm} requests a minute; retry in {} s", retry_after.as_secs() + 1)]
    RateLimited {
        /// The key's name.
        key: String,
        /// Its limit.
        rpm: u32,
        /// When the next request will be accepted.
        retry_after: std::time::Duration,
    },
    /// Something the gateway depends on (its database) failed; the request can be retried.
    #[error("the gateway cannot serve this now: {what}; retry shortly")]
    Unavailable {
        /// What failed.
        what: String,
    },
    /// A web page sent the request (browsers say which in `Origin`) and its origin is not allowed.
    #[error(
        "requests from the web page `{shown}` are refused: this gateway answers browsers only for pages it is told to trust; to allow this one, add it to `[gateway] allowed_origins` (exactly as the browser sends it, scheme://host[:port])",
        shown = crate::text::Escaped(origin)
    )]
    ForbiddenOrigin {
        /// The `Origin` header, as sent.
        origin: String,
    },
    /// A gateway that needs no token was addressed by a name that is not this machine's: what a
    /// web page that rebinds its own name to 127.0.0.1 (DNS rebinding) would send.
    #[error(
        "requests addressed to `{shown}` are refused: this gateway needs no token, so it answers only requests addressed to this machine (localhost, 127.0.0.1, [::1]); call it at http://127.0.0.1:PORT, add an origin with this host to `[gateway] allowed_origins`, or configure a token (`[gateway] token_hashes` or `exoclaw keys create`)",
        shown = crate::text::Escaped(host)
    )]
    ForbiddenHost {
        /// The `Host` header, as sent.
        host: String,
    },
    /// The request bodies being read or held already fill `[gateway] max_body_bytes_in_flight`.
    #[error(
        "the gateway is busy reading other requests' bodies: this one ({what}) does not fit in `[gateway] max_body_bytes_in_flight` ({limit} bytes) now; retry in a moment (Retry-After says when), or ask the operator to raise the limit",
        what = match size { Some(n) => format!("{n} bytes"), None => "of unknown length".to_owned() }
    )]
    BodiesInFlight {
        /// The body's length, when it was announced.
        size: Option<u64>,
        /// `max_body_bytes_in_flight`.
        limit: usize,
    },
    /// The request body is larger than the gateway accepts.
    #[error(
        "the request body is {size} bytes, more than the {limit} bytes this gateway accepts in one request; send less (an image by URL rather than inline base64){hint}",
        hint = if *over_budget { ", or ask the operator to raise `[gateway] max_body_bytes_in_flight`" } else { "" }
    )]
    BodyTooLarge {
        /// Its length.
        size: u64,
        /// The most accepted.
        limit: u64,
        /// Whether the limit is `max_body_bytes_in_flight` (smaller than the largest body).
        over_budget: bool,
    },
    /// The request body did not arrive in time.
    #[error(
        "the request body did not arrive within {secs} s of its headers (`[gateway] body_timeout_secs`); send it faster, or ask the operator to raise the limit"
    )]
    BodyTimeout {
        /// `body_timeout_secs`.
        secs: u64,
    },
    /// A request's head (request line and headers) did not arrive in time.
    #[error(
        "the request's headers did not arrive within {secs} s of its first byte (`[gateway] header_timeout_secs`); the connection is closed"
    )]
    HeaderTimeout {
        /// `header_timeout_secs`.
        secs: u64,
    },
    /// As many connections are open as `[gateway] max_connections` allows.
    #[error(
        "the gateway has as many connections open as `[gateway] max_connections` ({limit}) allows; retry in a moment (Retry-After says when), or ask the operator to raise the limit"
    )]
    TooManyConnections {
        /// `max_connections`.
        limit: usize,
    },
    /// As many WebSocket connections wait to authenticate as `[gateway] max_unauthenticated`
    /// allows.
    #[error(
        "the gateway has as many WebSocket connections waiting to authenticate as `[gateway] max_unauthenticated` ({limit}) allows; retry in a moment, or send `Authorization: Bearer <token>` with the upgrade (such connections do not count)"
    )]
    TooManyUnauthenticated {
        /// `max_unauthenticated`.
        limit: usize,
    },
    /// The provider behind the model failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The gateway would listen beyond loopback with no token configured.
    #[error(
        "refusing to listen on {addr} without a token: anyone who can reach this address could use your providers' keys; configure a token (the gateway keeps only its SHA-256 hash: `printf %s TOKEN | sha256sum`) or listen on 127.0.0.1"
    )]
    InsecureBind {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A configured token hash is not 64 hex digits.
    #[error(
        "token hash #{index} is not a SHA-256 hash (64 hex digits); make one with `printf %s TOKEN | sha256sum`"
    )]
    BadTokenHash {
        /// Its position in the configured list, from 0.
        index: usize,
    },
}

/// What a client told the gateway is busy (`Retry-After`, seconds) waits before trying again.
pub(crate) const BUSY_RETRY_AFTER: &str = "1";

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        "no models are configured".to_owned()
    } else {
        format!("use one of: {} (GET /v1/models lists them)", available.join(", "))
    }
}

impl GatewayError {
    /// An invalid-request error about `param`.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::InvalidRequest { message: message.into(), param: param.map(str::to_owned) }
    }

    /// The HTTP status this error is answered with.
    ///
    /// Provider failures: the upstream's key being rejected ([`ErrorKind::Auth`]) is the gateway
    /// operator's configuration problem, not the caller's, so it is a 502 — a 401 would make an
    /// OpenAI SDK tell its user that *their* key is wrong.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::InvalidRequest { .. } | GatewayError::NoEmbeddings { .. } => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::Unauthorized { .. } | GatewayError::KeyRevoked { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            // Not a limit that lifts by waiting: the model cannot be used under a budget at all.
            GatewayError::BudgetExceeded(BudgetRefusal::Unpriced { .. }) => StatusCode::FORBIDDEN,
            GatewayError::BudgetExceeded(
                BudgetRefusal::KeySpent { .. }
                | BudgetRefusal::KeyShort { .. }
                | BudgetRefusal::InputShort { .. }
                | BudgetRefusal::TurnShort { .. }
                | BudgetRefusal::Limit(_),
            )
            | GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Unavailable { .. }
            | GatewayError::BodiesInFlight { .. }
            | GatewayError::TooManyConnections { .. }
            | GatewayError::TooManyUnauthenticated { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::ForbiddenOrigin { .. } | GatewayError::ForbiddenHost { .. } => {
                StatusCode::FORBIDDEN
            }
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout { .. } | GatewayError::HeaderTimeout { .. } => {
                StatusCode::REQUEST_TIMEOUT
            }
            GatewayError::Provider(e) => provider_status(e.kind),
            // Setup errors never reach a client; answer as an internal fault if one ever does.
            GatewayError::InsecureBind { .. } | GatewayError::BadTokenHash { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A short stable name for the kind of failure, for metrics and protocol error codes:
    /// `unauthenticated`, `key_revoked`, `model_not_allowed`, `budget_exceeded`, `budget_unpriced`,
    /// `rate_limited`, `model_not_found`, `no_embeddings`, `invalid_request`, `unavailable`,
    /// `forbidden_origin`, `forbidden_host`, `bodies_in_flight`, `request_too_large`,
    /// `request_timeout`, `header_timeout`, `too_many_connections`, `too_many_unauthenticated`,
    /// `provider_unavailable`, `provider_error`, `misconfigured`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::NoEmbeddings { .. } => "no_embeddings",
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::Unauthorized { .. } => "unauthenticated",
            GatewayError::KeyRevoked { .. } => "key_revoked",
            GatewayError::ModelNotAllowed { .. } => "model_not_allowed",
            GatewayError::BudgetExceeded(refusal) => refusal.code().as_str(),
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Unavailable { .. } => "unavailable",
            GatewayError::ForbiddenOrigin { .. } => "forbidden_origin",
            GatewayError::ForbiddenHost { .. } => "forbidden_host",
            GatewayError::BodiesInFlight { .. } => "bodies_in_flight",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::BodyTimeout { .. } => "request_timeout",
            GatewayError::HeaderTimeout { .. } => "header_timeout",
            GatewayError::TooManyConnections { .. } => "too_many_connections",
            GatewayError::TooManyUnauthenticated { .. } => "too_many_unauthenticated",
            GatewayError::Provider(e) => match e.kind {
                ErrorKind::RateLimited { .. } => "rate_limited",
                ErrorKind::InvalidRequest | ErrorKind::ContextLength => "invalid_request",
                ErrorKind::ModelNotFound => "model_not_found",
                ErrorKind::Overloaded | ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Server => {
                    "provider_unavailable"
                }
                ErrorKind::Auth | ErrorKind::Permission | ErrorKind::Protocol | ErrorKind::Cancelled => {
                    "provider_error"
                }
            },
            GatewayError::InsecureBind { .. } | GatewayError::BadTokenHash { .. } => "misconfigured",
        }
    }

    /// OpenAI's `error.type` and `error.code` for this error.
    fn type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::ModelNotFound { .. } => ("invalid_request_error", "model_not_found"),
            GatewayError::NoEmbeddings { .. } => ("invalid_request_error", "model_not_supported"),
            GatewayError::InvalidRequest { .. } => ("invalid_request_error", "invalid_request"),
            GatewayError::Unauthorized { .. } => ("invalid_request_error", "invalid_api_key"),
            GatewayError::KeyRevoked { .. } => ("invalid_request_error", "key_revoked"),
            GatewayError::ModelNotAllowed { .. } => ("permission_error", "model_not_allowed"),
            GatewayError::BudgetExceeded(BudgetRefusal::Unpriced { .. }) => {
                ("permission_error", "budget_unpriced")
            }
            GatewayError::BudgetExceeded(
                BudgetRefusal::KeySpent { .. }
                | BudgetRefusal::KeyShort { .. }
                | BudgetRefusal::InputShort { .. }
                | BudgetRefusal::TurnShort { .. }
                | BudgetRefusal::Limit(_),
            ) => ("insufficient_quota", "budget_exceeded"),
            GatewayError::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            GatewayError::Unavailable { .. } => ("server_error", "unavailable"),
            GatewayError::ForbiddenOrigin { .. } => ("permission_error", "forbidden_origin"),
            GatewayError::ForbiddenHost { .. } => ("permission_error", "forbidden_host"),
            GatewayError::BodiesInFlight { .. }
            | GatewayError::TooManyConnections { .. }
            | GatewayError::TooManyUnauthenticated { .. } => ("server_error", "server_busy"),
            GatewayError::BodyTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            GatewayError::BodyTimeout { .. } | GatewayError::HeaderTimeout { .. } => {
                ("invalid_request_error", "request_timeout")
            }
            GatewayError::Provider(e) => provider_type_and_code(e.kind),
            GatewayError::InsecureBind { .. } | GatewayError::BadTokenHash { .. } => {
                ("server_error", "misconfigured")
            }
        }
    }

    /// The `{"error":{…}}` body, for an HTTP answer or a mid-stream SSE frame.
    pub fn body(&self) -> Value {
        let (kind, code) = self.type_and_code();
        let param = match self {
            GatewayError::InvalidRequest { param, .. } => json!(param),
            GatewayError::ModelNotFound { .. } | GatewayError::NoEmbeddings { .. } => json!("model"),
            _ => Value::Null,
        };
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
    }
}

fn provider_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLength => StatusCode::BAD_REQUEST,
        ErrorKind::Permission => StatusCode::FORBIDDEN,
        ErrorKind::ModelNotFound => StatusCode::NOT_FOUND,
        ErrorKind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Auth | ErrorKind::Server | ErrorKind::Connect | ErrorKind::Protocol => {
            StatusCode::BAD_GATEWAY
        }
        // The request was given up on (a shutdown, or the caller left): nothing was served.
        ErrorKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn provider_type_and_code(kind: ErrorKind) -> (&'static str, &'static str) {
    match kind {
        ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
        ErrorKind::ContextLength => ("invalid_request_error", "context_length_exceeded"),
        ErrorKind::Permission => ("permission_error", "permission_denied"),
        ErrorKind::ModelNotFound => ("invalid_request_error", "model_not_found"),
        ErrorKind::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
        ErrorKind::Overloaded => ("server_error", "overloaded"),
        ErrorKind::Timeout => ("server_error", "timeout"),
        ErrorKind::Auth => ("server_error", "upstream_auth"),
        ErrorKind::Server => ("server_error", "upstream_server_error"),
        ErrorKind::Connect => ("server_error", "upstream_unreachable"),
        ErrorKind::Protocol => ("server_error", "upstream_protocol_error"),
        ErrorKind::Cancelled => ("server_error", "cancelled"),
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let GatewayError::Provider(ProviderError {
            kind: ErrorKind::RateLimited { retry_after: Some(after) },
            ..
        }) = &self
        {
            // Whole seconds, rounded up: a client that waits exactly this long is not early.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let GatewayError::RateLimited { retry_after, .. } = &self {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(
            self,
            GatewayError::BodiesInFlight { .. }
                | GatewayError::TooManyConnections { .. }
                | GatewayError::TooManyUnauthenticated { .. }
        ) {
            // Room comes back as soon as another request's body is read or a connection ends.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(BUSY_RETRY_AFTER));
        }
        // A spent budget does not come back by retrying at once (nor does a price); OpenAI's SDKs
        // honour this header.
        if matches!(self, GatewayError::BudgetExceeded { .. }) {
            response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if matches!(self, GatewayError::Unauthorized { .. } | GatewayError::KeyRevoked { .. }) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limits_round_retry_after_up() {
        let e = GatewayError::from(ProviderError::new(
            ErrorKind::RateLimited { retry_after: Some(Duration::from_millis(2500)) },
            "p",
            "slow down",
        ));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn upstream_auth_is_a_bad_gateway_not_the_callers_fault() {
        let e = GatewayError::from(ProviderError::new(ErrorKind::Auth, "p", "bad key"));
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.body()["error"]["code"], "upstream_auth");
    }
}
