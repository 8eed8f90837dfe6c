//! [`ProviderError`]: what went wrong talking to a model, typed so that callers decide on retry,
//! fallback or failure by kind — never by searching message text.

use exoclaw_types::ErrorCode;
use std::{fmt, time::Duration};

/// The kinds of provider failure. Matches over it are exhaustive on purpose: a new kind must be
/// placed in [`ErrorKind::is_retryable`] and [`ErrorKind::recovery`] by whoever adds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API key is missing, malformed or rejected.
    Auth,
    /// The key is valid but may not do this (no access to the model, quota or billing exhausted).
    Permission,
    /// The model does not exist on this provider.
    ModelNotFound,
    /// The vendor rejected the request as malformed.
    InvalidRequest,
    /// The conversation does not fit the model's context window.
    ContextLength,
    /// Too many requests; the vendor may say when to come back.
    RateLimited {
        /// How long the vendor asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The vendor is temporarily over capacity.
    Overloaded,
    /// The vendor failed internally (5xx).
    Server,
    /// A connect, first-byte or between-chunks deadline passed.
    Timeout,
    /// The server could not be reached, or the connection broke.
    Connect,
    /// The answer did not follow the vendor's wire format (malformed or truncated stream).
    Protocol,
    /// The caller cancelled the request.
    Cancelled,
}

/// What a caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Try the same provider again, after `after` if the vendor said so.
    Retry {
        /// The vendor's requested delay.
        after: Option<Duration>,
    },
    /// This provider cannot serve the request; another one might.
    FallBack,
    /// The provider looks down: stop sending it traffic for a while and use another.
    OpenBreaker,
    /// No provider can help; report the error.
    Fail,
}

impl ErrorKind {
    /// Whether sending the same request to the same provider again can succeed.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::RateLimited { .. }
            | ErrorKind::Overloaded
            | ErrorKind::Server
            | ErrorKind::Timeout
            | ErrorKind::Connect
            // A truncated or garbled stream is usually a transient network or server fault.
            | ErrorKind::Protocol => true,
            ErrorKind::Auth
            | ErrorKind::Permission
            | ErrorKind::ModelNotFound
            | ErrorKind::InvalidRequest
            | ErrorKind::ContextLength
            | ErrorKind::Cancelled => false,
        }
    }

    /// What to do about a failure of this kind.
    pub fn recovery(self) -> Recovery {
        match self {
            ErrorKind::RateLimited { retry_after } => Recovery::Retry { after: retry_after },
            ErrorKind::Overloaded | ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Protocol => {
                Recovery::Retry { after: None }
            }
            // Nothing listens: hammering it wastes the caller's deadline.
            ErrorKind::Connect => Recovery::OpenBreaker,
            // Configuration problems of this provider, or a model with too small a window: another
            // provider (or a larger model) may serve the same request.
            ErrorKind::Auth | ErrorKind::Permission | ErrorKind::ModelNotFound | ErrorKind::ContextLength => {
                Recovery::FallBack
            }
            // The request itself is at fault, or the caller gave up: nobody else can help.
            ErrorKind::InvalidRequest | ErrorKind::Cancelled => Recovery::Fail,
        }
    }

    /// Stable code for logs, metrics and wire protocols (`rate_limited`, …): the [`ErrorCode`]
    /// a turn failing on this error reports.
    pub fn code(self) -> ErrorCode {
        match self {
            ErrorKind::Auth => ErrorCode::Auth,
            ErrorKind::Permission => ErrorCode::Permission,
            ErrorKind::ModelNotFound => ErrorCode::ModelNotFound,
            ErrorKind::InvalidRequest => ErrorCode::InvalidRequest,
            ErrorKind::ContextLength => ErrorCode::ContextLength,
            ErrorKind::RateLimited { .. } => ErrorCode::RateLimited,
            ErrorKind::Overloaded => ErrorCode::Overloaded,
            ErrorKind::Server => ErrorCode::Server,
            ErrorKind::Timeout => ErrorCode::Timeout,
            ErrorKind::Connect => ErrorCode::Connect,
            ErrorKind::Protocol => ErrorCode::Protocol,
            ErrorKind::Cancelled => ErrorCode::Cancelled,
        }
    }

    /// One sentence telling the user what to do.
    pub fn advice(self) -> &'static str {
        match self {
            ErrorKind::Auth => {
                "check the provider's API key (config `api_key`/`api_key_env` or the vendor's environment variable)"
            }
            ErrorKind::Permission => {
                "the key lacks access to this model, or its quota or billing is exhausted; check the vendor's console"
            }
            ErrorKind::ModelNotFound => {
                "check the model name; `exoclaw models` lists what each provider offers"
            }
            ErrorKind::InvalidRequest => {
                "the vendor rejected the request; the message above says which field"
            }
            ErrorKind::ContextLength => {
                "shorten the conversation (start a new session) or use a model with a larger context window"
            }
            ErrorKind::RateLimited { .. } => "wait and retry, or lower the request rate",
            ErrorKind::Overloaded => "the vendor is over capacity; retry shortly or use another provider",
            ErrorKind::Server => "the vendor failed internally; retry shortly",
            ErrorKind::Timeout => "the provider was too slow; retry, or raise the provider's timeouts",
            ErrorKind::Connect => "check that the server is running and the provider's `base_url` is right",
            ErrorKind::Protocol => {
                "the server's answer was malformed or cut off; retry, and check `base_url` points at the right kind of API"
            }
            ErrorKind::Cancelled => "the request was cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::RateLimited { retry_after: Some(after) } => {
                write!(f, "rate_limited (retry after {:.1}s)", after.as_secs_f64())
            }
            other => f.write_str(other.code().as_str()),
        }
    }
}

/// A failed model call: its kind, the provider, the vendor's own explanation and the HTTP status.
///
/// The message never holds an API key: providers scrub their key out of any text before building
/// an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {kind}: {message}{status} — {advice}", status = self.status_suffix(), advice = self.kind.advice())]
pub struct ProviderError {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// The provider instance that failed.
    pub provider: String,
    /// What happened, in the vendor's words where it gave any.
    pub message: String,
    /// The HTTP status, when the failure was an HTTP response.
    pub status: Option<u16>,
}

impl ProviderError {
    /// An error of `kind` from `provider`.
    pub fn new(kind: ErrorKind, provider: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, provider: provider.into(), message: message.into(), status: None }
    }

    /// Adds the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Shorthand for [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Shorthand for [`ErrorKind::recovery`].
    pub fn recovery(&self) -> Recovery {
        self.kind.recovery()
    }

    fn status_suffix(&self) -> String {
        self.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_provider_kind_status_and_what_to_do() {
        let e = ProviderError::new(ErrorKind::Auth, "anthropic", "invalid x-api-key").with_status(401);
        let text = e.to_string();
        assert!(text.starts_with("anthropic: auth: invalid x-api-key (HTTP 401) — check"), "{text}");
    }

    #[test]
    fn rate_limit_shows_the_requested_delay_and_retries_after_it() {
        let kind = ErrorKind::RateLimited { retry_after: Some(Duration::from_secs(7)) };
        assert_eq!(kind.to_string(), "rate_limited (retry after 7.0s)");
        assert_eq!(kind.recovery(), Recovery::Retry { after: Some(Duration::from_secs(7)) });
        assert!(kind.is_retryable());
    }

    #[test]
    fn request_faults_are_never_retried() {
        for kind in [
            ErrorKind::Auth,
            ErrorKind::Permission,
            ErrorKind::ModelNotFound,
            ErrorKind::InvalidRequest,
            ErrorKind::ContextLength,
            ErrorKind::Cancelled,
        ] {
            assert!(!kind.is_retryable(), "{kind}");
            assert!(!matches!(kind.recovery(), Recovery::Retry { .. }), "{kind}");
        }
        assert_eq!(ErrorKind::InvalidRequest.recovery(), Recovery::Fail);
        assert_eq!(ErrorKind::Connect.recovery(), Recovery::OpenBreaker);
    }
}
