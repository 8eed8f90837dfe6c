//! [`RpcError`]: a JSON-RPC error object with its numeric code and the stable name clients match on
//! (`error.data.code`), and how the gateway's own errors map onto it.

use crate::GatewayError;
use exoclaw_core::{ErrorKind, ProviderError};
use serde_json::{Map, Value, json};

/// Every error code the protocol uses: JSON-RPC's standard ones and exoclaw's, in the
/// `-32000..=-32099` range the specification leaves to servers. The numbers and names are stable:
/// a new code gets a new number, an old one is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// `-32700`: the message is not JSON.
    ParseError,
    /// `-32600`: JSON, but not a JSON-RPC 2.0 request (no `"jsonrpc":"2.0"`, no method, a batch).
    InvalidRequest,
    /// `-32601`: no such method.
    MethodNotFound,
    /// `-32602`: the params do not fit the method.
    InvalidParams,
    /// `-32603`: a fault in the gateway.
    InternalError,
    /// `-32000`: `connect` with a valid token first (or the token was refused).
    Unauthenticated,
    /// `-32001`: the caller may not do this (a virtual key asking for another model, or for
    /// operator methods).
    Forbidden,
    /// `-32002`: too many requests on this connection, or for this key; retry after
    /// `data.retry_after_ms`.
    RateLimited,
    /// `-32003`: the key's or the agent's budget is spent.
    BudgetExceeded,
    /// `-32004`: the session already has as many turns waiting as it may.
    SessionBusy,
    /// `-32005`: no such agent, session or request.
    NotFound,
    /// `-32006`: the model provider failed (down, overloaded, timed out, refused the gateway's key).
    ProviderUnavailable,
    /// `-32007`: the provider refused the request itself (too long for the model's context, …).
    ProviderRejected,
    /// `-32008`: the gateway is shutting down and accepts no new turns.
    ShuttingDown,
    /// `-32009`: the message is larger than the gateway accepts.
    MessageTooLarge,
    /// `-32010`: the client asked for a protocol version this gateway does not speak.
    UnsupportedProtocol,
    /// `-32011`: something the gateway depends on (its database) failed; retry shortly.
    Unavailable,
    /// `-32012`: the request was cancelled (`chat.cancel`) before its turn began.
    Cancelled,
    /// `-32013`: the turn was stopped by the agent's own limits, an operator's hook or a tool
    /// (too many model calls in one turn, a denied action, a tool whose store is gone).
    TurnStopped,
}

impl Code {
    /// Every code, in numeric order (for the documentation test).
    pub const ALL: [Code; 19] = [
        Code::ParseError,
        Code::InvalidRequest,
        Code::MethodNotFound,
        Code::InvalidParams,
        Code::InternalError,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::RateLimited,
        Code::BudgetExceeded,
        Code::SessionBusy,
        Code::NotFound,
        Code::ProviderUnavailable,
        Code::ProviderRejected,
        Code::ShuttingDown,
        Code::MessageTooLarge,
        Code::UnsupportedProtocol,
        Code::Unavailable,
        Code::Cancelled,
        Code::TurnStopped,
    ];

    /// The JSON-RPC `error.code`.
    pub fn number(self) -> i64 {
        match self {
            Code::ParseError => -32700,
            Code::InvalidRequest => -32600,
            Code::MethodNotFound => -32601,
            Code::InvalidParams => -32602,
            Code::InternalError => -32603,
            Code::Unauthenticated => -32000,
            Code::Forbidden => -32001,
            Code::RateLimited => -32002,
            Code::BudgetExceeded => -32003,
            Code::SessionBusy => -32004,
            Code::NotFound => -32005,
            Code::ProviderUnavailable => -32006,
            Code::ProviderRejected => -32007,
            Code::ShuttingDown => -32008,
            Code::MessageTooLarge => -32009,
            Code::UnsupportedProtocol => -32010,
            Code::Unavailable => -32011,
            Code::Cancelled => -32012,
            Code::TurnStopped => -32013,
        }
    }

    /// The stable name, `error.data.code`.
    pub fn name(self) -> &'static str {
        match self {
            Code::ParseError => "parse_error",
            Code::InvalidRequest => "invalid_request",
            Code::MethodNotFound => "method_not_found",
            Code::InvalidParams => "invalid_params",
            Code::InternalError => "internal_error",
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::RateLimited => "rate_limited",
            Code::BudgetExceeded => "budget_exceeded",
            Code::SessionBusy => "session_busy",
            Code::NotFound => "not_found",
            Code::ProviderUnavailable => "provider_unavailable",
            Code::ProviderRejected => "provider_rejected",
            Code::ShuttingDown => "shutting_down",
            Code::MessageTooLarge => "message_too_large",
            Code::UnsupportedProtocol => "unsupported_protocol",
            Code::Unavailable => "unavailable",
            Code::Cancelled => "cancelled",
            Code::TurnStopped => "turn_stopped",
        }
    }
}

/// A JSON-RPC error: `{"code": N, "message": "...", "data": {"code": "name", ...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Which error.
    pub code: Code,
    /// What happened and what to do about it, for a person.
    pub message: String,
    /// More fields for `data`, next to `code` (`retry_after_ms`, `supported`, `session_id`, …).
    pub data: Map<String, Value>,
}

impl RpcError {
    /// An error with no extra data.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: Map::new() }
    }

    /// Adds `key: value` to `data`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_owned(), value.into());
        self
    }

    /// The error object.
    pub fn to_json(&self) -> Value {
        let mut data = Map::new();
        data.insert("code".to_owned(), Value::from(self.code.name()));
        data.extend(self.data.iter().map(|(k, v)| (k.clone(), v.clone())));
        json!({"code": self.code.number(), "message": self.message, "data": data})
    }

    /// `-32602` about `params`.
    pub fn invalid_params(method: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            Code::InvalidParams,
            format!("invalid params for `{method}`: {detail}; see docs/protocol.md for its params"),
        )
    }

    /// `-32603`, logging the detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %crate::text::Escaped(&detail), "internal error answering a JSON-RPC request");
        Self::new(Code::InternalError, format!("internal error: {detail}; please report this bug"))
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The code a provider failure is answered with.
pub(crate) fn provider_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLength => Code::ProviderRejected,
        ErrorKind::Auth
        | ErrorKind::Permission
        | ErrorKind::ModelNotFound
        | ErrorKind::RateLimited { .. }
        | ErrorKind::Overloaded
        | ErrorKind::Server
        | ErrorKind::Timeout
        | ErrorKind::Connect
        | ErrorKind::Protocol
        | ErrorKind::Cancelled => Code::ProviderUnavailable,
    }
}

impl From<ProviderError> for RpcError {
    fn from(e: ProviderError) -> Self {
        let mut error =
            RpcError::new(provider_code(e.kind), e.to_string()).with("kind", e.kind.code().as_str());
        if let ErrorKind::RateLimited { retry_after: Some(after) } = e.kind {
            error = error.with("retry_after_ms", millis(after));
        }
        error
    }
}

impl From<GatewayError> for RpcError {
    fn from(e: GatewayError) -> Self {
        let message = e.to_string();
        match e {
            // The HTTP wording says how to send a bearer header; over the WebSocket the token goes
            // in `connect`.
            GatewayError::Unauthorized { reason } => RpcError::new(
                Code::Unauthenticated,
                format!(
                    "{reason}: send `connect` with `token` set to one of the gateway's tokens or a virtual key"
                ),
            ),
            GatewayError::KeyRevoked { .. } => {
                RpcError::new(Code::Unauthenticated, message).with("reason", "key_revoked")
            }
            GatewayError::ModelNotAllowed { .. } => RpcError::new(Code::Forbidden, message),
            GatewayError::BudgetExceeded { .. } => RpcError::new(Code::BudgetExceeded, message),
            GatewayError::RateLimited { retry_after, .. } => {
                RpcError::new(Code::RateLimited, message).with("retry_after_ms", millis(retry_after))
            }
            GatewayError::Unavailable { .. } => RpcError::new(Code::Unavailable, message),
            GatewayError::ModelNotFound { .. } => RpcError::new(Code::NotFound, message),
            GatewayError::InvalidRequest { .. } | GatewayError::NoEmbeddings { .. } => {
                RpcError::new(Code::InvalidParams, message)
            }
            GatewayError::Provider(e) => e.into(),
            // HTTP-level refusals; a WebSocket request meets them only as its upgrade.
            GatewayError::ForbiddenOrigin { .. } | GatewayError::ForbiddenHost { .. } => {
                RpcError::new(Code::Forbidden, message)
            }
            GatewayError::BodiesInFlight { .. }
            | GatewayError::TooManyConnections { .. }
            | GatewayError::TooManyUnauthenticated { .. } => RpcError::new(Code::Unavailable, message),
            GatewayError::BodyTooLarge { .. } => RpcError::new(Code::MessageTooLarge, message),
            GatewayError::BodyTimeout { .. } | GatewayError::HeaderTimeout { .. } => {
                RpcError::new(Code::InvalidRequest, message)
            }
            // Setup errors never come from a request; answer as a fault if one ever does.
            other @ (GatewayError::InsecureBind { .. } | GatewayError::BadTokenHash { .. }) => {
                RpcError::internal(other)
            }
        }
    }
}

impl From<exoclaw_core::StoreError> for RpcError {
    fn from(e: exoclaw_core::StoreError) -> Self {
        match e {
            exoclaw_core::StoreError::SessionNotFound(id) => {
                RpcError::new(Code::NotFound, format!("no session {id}; `sessions.list` lists them"))
            }
            other => {
                tracing::error!(error = %other, "the session store failed");
                RpcError::new(Code::Unavailable, format!("the session store failed: {other}; retry shortly"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_application_codes_stay_in_the_server_range() {
        let mut numbers: Vec<i64> = Code::ALL.iter().map(|c| c.number()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), Code::ALL.len());
        for code in Code::ALL {
            let n = code.number();
            assert!((-32700..=-32600).contains(&n) || (-32099..=-32000).contains(&n), "{code:?} {n}");
        }
    }

    #[test]
    fn errors_carry_their_name_and_data() {
        let e = RpcError::from(GatewayError::RateLimited {
            key: "k".into(),
            rpm: 1,
            retry_after: std::time::Duration::from_millis(1500),
        });
        let json = e.to_json();
        assert_eq!(json["code"], -32002);
        assert_eq!(json["data"]["code"], "rate_limited");
        assert_eq!(json["data"]["retry_after_ms"], 1500);
        let e = RpcError::from(GatewayError::Unauthorized {
            reason: "this gateway requires a token and none was sent",
        });
        assert!(
            e.message.starts_with("this gateway requires a token and none was sent: send `connect`"),
            "{}",
            e.message
        );
    }
}
