//! ArcadeDB's HTTP API, as much of it as the memory store uses: SQL commands with named
//! parameters (`POST /api/v1/command/{db}`), HTTP-session transactions (`/begin`, `/commit`,
//! `/rollback`, tied together by the `arcadedb-session-id` header), and the server commands that
//! check for and create a database. Every request carries HTTP Basic auth; the password is a
//! [`SecretString`] and never appears in a URL, a log line or an error.
//!
//! ArcadeDB's transactions are optimistic: a commit that lost a race to another writer fails with
//! `ConcurrentModificationException`, and one that raced it to a unique key with
//! `DuplicatedKeyException`. [`Client::transaction`] runs the work again on a fresh transaction
//! then, as ArcadeDB asks ("Please retry the operation").

use std::{future::Future, time::Duration};

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The header that ties a request to an open transaction.
const SESSION_HEADER: &str = "arcadedb-session-id";

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take (a full-text search or a large batch on a loaded server).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a transaction that lost a race is run; ArcadeDB's own `COMMIT RETRY` default is
/// of the same order.
const ATTEMPTS: u32 = 10;

/// Exception classes (ArcadeDB's `exception` field, without the package) that mean "the same
/// work, run again on a fresh transaction, may succeed".
const RETRYABLE: [&str; 3] =
    ["ConcurrentModificationException", "NeedRetryException", "DuplicatedKeyException"];

/// What went wrong talking to ArcadeDB.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArcadeError {
    /// No answer: the server is down, the address is wrong, or it timed out.
    #[error("{0}")]
    Unreachable(#[source] reqwest::Error),
    /// The server answered with an error.
    #[error("ArcadeDB answered {status}: {}{}", .exception.as_deref().map(short_class).map(|c| format!("{c}: ")).unwrap_or_default(), .detail)]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The Java exception's class, when the server named it.
        exception: Option<String>,
        /// The server's explanation.
        detail: String,
    },
    /// The server's answer was not what its API documents.
    #[error("unexpected answer from ArcadeDB: {0}")]
    Protocol(String),
}

impl ArcadeError {
    /// Whether the same work, run again on a fresh transaction, may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Refused { exception: Some(exception), .. } => RETRYABLE.contains(&short_class(exception)),
            Self::Refused { exception: None, .. } | Self::Unreachable(_) | Self::Protocol(_) => false,
        }
    }

    /// Whether the server refused the user or password.
    pub(crate) fn is_unauthorized(&self) -> bool {
        match self {
            Self::Refused { status, .. } => {
                *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN
            }
            Self::Unreachable(_) | Self::Protocol(_) => false,
        }
    }
}

/// `com.arcadedb.exception.Foo` → `Foo`.
fn short_class(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// An error body: `{"error": …, "exception": …, "detail": …}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    exception: Option<String>,
    detail: Option<String>,
}

/// An open transaction: the server-side session that holds it.
#[derive(Debug, Clone)]
pub(crate) struct Tx {
    session: String,
}

/// A client of one database on one server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// `http://host:port`.
    base: String,
    database: String,
    user: String,
    password: SecretString,
}

impl Client {
    pub(crate) fn new(
        base: String,
        database: String,
        user: String,
        password: SecretString,
    ) -> Result<Self, reqwest::Error> {
        let http =
            reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { http, base, database, user, password })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(self.password.expose_secret()))
    }

    /// Sends `request`; gives the response when the server accepted it.
    async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, ArcadeError> {
        let response = request.send().await.map_err(ArcadeError::Unreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.map_err(ArcadeError::Unreachable)?;
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ArcadeError::Refused {
                status,
                exception: body.exception,
                detail: body.detail.or(body.error).unwrap_or_default(),
            },
            Err(_) => {
                ArcadeError::Refused { status, exception: None, detail: text.chars().take(300).collect() }
            }
        })
    }

    /// Whether the database exists (`GET /api/v1/exists/{db}`).
    pub(crate) async fn database_exists(&self) -> Result<bool, ArcadeError> {
        let request = self
            .http
            .get(format!("{}/api/v1/exists/{}", self.base, self.database))
            .basic_auth(&self.user, Some(self.password.expose_secret()));
        let body: Value = Self::send(request).await?.json().await.map_err(ArcadeError::Unreachable)?;
        body.get("result")
            .and_then(Value::as_bool)
            .ok_or_else(|| ArcadeError::Protocol(format!("/api/v1/exists gave {body}")))
    }

    /// Creates the database (`create database NAME` on `/api/v1/server`). The name was checked
    /// when the URL was read, so it is safe in the command.
    pub(crate) async fn create_database(&self) -> Result<(), ArcadeError> {
        let request = self
            .post("/api/v1/server")
            .json(&json!({ "command": format!("create database {}", self.database) }));
        Self::send(request).await.map(drop)
    }

    /// Runs `command` in `language` (`sql` or `sqlscript`) with named `params`, inside `tx` or
    /// as a transaction of its own; gives the result rows, every one of them (no row limit).
    pub(crate) async fn command(
        &self,
        tx: Option<&Tx>,
        language: &str,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Vec<Value>, ArcadeError> {
        let body = json!({ "language": language, "command": command, "params": params, "limit": -1 });
        let mut request = self.post(&format!("/api/v1/command/{}", self.database)).json(&body);
        if let Some(tx) = tx {
            request = request.header(SESSION_HEADER, &tx.session);
        }
        let mut body: Value = Self::send(request).await?.json().await.map_err(ArcadeError::Unreachable)?;
        match body.get_mut("result").map(Value::take) {
            Some(Value::Array(rows)) => Ok(rows),
            _ => Err(ArcadeError::Protocol(format!("a command's answer has no result rows: {body}"))),
        }
    }

    /// An SQL command (see [`Self::command`]).
    pub(crate) async fn sql(
        &self,
        tx: Option<&Tx>,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Vec<Value>, ArcadeError> {
        self.command(tx, "sql", command, params).await
    }

    async fn begin(&self) -> Result<Tx, ArcadeError> {
        let response = Self::send(self.post(&format!("/api/v1/begin/{}", self.database))).await?;
        let session =
            response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                ArcadeError::Protocol(format!("/api/v1/begin gave no {SESSION_HEADER} header"))
            })?;
        Ok(Tx { session: session.to_owned() })
    }

    async fn end(&self, tx: Tx, how: &str) -> Result<(), ArcadeError> {
        let request =
            self.post(&format!("/api/v1/{how}/{}", self.database)).header(SESSION_HEADER, tx.session);
        Self::send(request).await.map(drop)
    }

    /// Runs `work` in a transaction and commits it; runs it again on a fresh transaction when it
    /// or the commit lost a race to another writer. Any other failure rolls back.
    pub(crate) async fn transaction<T, F, Fut>(&self, work: F) -> Result<T, ArcadeError>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, ArcadeError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = self.begin().await?;
            let outcome = work(tx.clone()).await;
            let error = match outcome {
                Ok(value) => match self.end(tx, "commit").await {
                    Ok(()) => return Ok(value),
                    Err(error) => error,
                },
                Err(error) => {
                    // The error that stopped the work is the one to report; a rollback that fails
                    // too (the server went away) adds nothing, and the server drops the
                    // transaction with its session anyway.
                    let _ = self.end(tx, "rollback").await;
                    error
                }
            };
            if !error.is_retryable() || attempt >= ATTEMPTS {
                return Err(error);
            }
            // Back off a little, more each time, so that racing writers spread out.
            tokio::time::sleep(Duration::from_millis(u64::from(attempt * attempt))).await;
        }
    }
}
