//! [`ErrorCode`]: why a turn failed, as front ends and clients match on it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a turn (or one model call in it) failed: the `code` of an
/// [`AgentEvent::Error`](crate::AgentEvent::Error). A closed set, so that a front end maps every
/// code on purpose (the gateway to a JSON-RPC error, the CLI to an exit status). On the wire each
/// code is its snake_case name (`"budget_exceeded"`), the strings this field always carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The provider refused the credentials.
    Auth,
    /// The credentials are valid but not allowed this model or action.
    Permission,
    /// The provider does not serve the requested model.
    ModelNotFound,
    /// The provider rejected the request as malformed.
    InvalidRequest,
    /// The conversation does not fit the model's context window.
    ContextLength,
    /// The provider is rate-limiting this key.
    RateLimited,
    /// The provider is overloaded.
    Overloaded,
    /// The provider failed on its side.
    Server,
    /// The provider did not answer in time.
    Timeout,
    /// The provider could not be reached.
    Connect,
    /// The provider's answer could not be understood.
    Protocol,
    /// The call was cancelled.
    Cancelled,
    /// A budget would be exceeded by the call, so it was not made.
    BudgetExceeded,
    /// A budget counts dollars and the model has no price, so the call was not made.
    BudgetUnpriced,
    /// The model kept calling tools past the turn's limit.
    MaxIterations,
    /// An operator's hook stopped the turn.
    HookStopped,
    /// A tool found that the turn cannot go on (its store is gone, say).
    ToolAborted,
    /// A bug, or a store that failed mid-turn.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 18] = [
        Self::Auth,
        Self::Permission,
        Self::ModelNotFound,
        Self::InvalidRequest,
        Self::ContextLength,
        Self::RateLimited,
        Self::Overloaded,
        Self::Server,
        Self::Timeout,
        Self::Connect,
        Self::Protocol,
        Self::Cancelled,
        Self::BudgetExceeded,
        Self::BudgetUnpriced,
        Self::MaxIterations,
        Self::HookStopped,
        Self::ToolAborted,
        Self::Internal,
    ];

    /// The code as it is written on the wire: `"budget_exceeded"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Permission => "permission",
            Self::ModelNotFound => "model_not_found",
            Self::InvalidRequest => "invalid_request",
            Self::ContextLength => "context_length",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Server => "server",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Protocol => "protocol",
            Self::Cancelled => "cancelled",
            Self::BudgetExceeded => "budget_exceeded",
            Self::BudgetUnpriced => "budget_unpriced",
            Self::MaxIterations => "max_iterations",
            Self::HookStopped => "hook_stopped",
            Self::ToolAborted => "tool_aborted",
            Self::Internal => "internal",
        }
    }

    /// Whether the failure came from the model's provider (the request may succeed on another
    /// provider or later), rather than from exoclaw's own limits, hooks or tools.
    pub fn is_provider(self) -> bool {
        matches!(
            self,
            Self::Auth
                | Self::Permission
                | Self::ModelNotFound
                | Self::InvalidRequest
                | Self::ContextLength
                | Self::RateLimited
                | Self::Overloaded
                | Self::Server
                | Self::Timeout
                | Self::Connect
                | Self::Protocol
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code that is not one of [`ErrorCode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an exoclaw error code")]
pub struct UnknownErrorCode(pub String);

impl std::str::FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|code| code.as_str() == s).ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_the_snake_case_string_both_ways() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), code);
        }
        assert!(serde_json::from_str::<ErrorCode>("\"nope\"").is_err());
        assert_eq!("nope".parse::<ErrorCode>(), Err(UnknownErrorCode("nope".into())));
    }
}
