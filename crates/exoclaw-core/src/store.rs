//! Storage traits, one per concern, implemented by `exoclaw-store` for SQLite and Postgres.

use async_trait::async_trait;
use exoclaw_types::{Message, SessionId, SessionInfo, SessionKey, UsageRecord};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session has this id.
    #[error("no session {0}")]
    SessionNotFound(SessionId),
    /// The database could not be opened or migrated; the message says where and what to do.
    #[error("{0}")]
    Open(String),
    /// A query failed.
    #[error("storage error: {0}")]
    Database(String),
    /// Stored data could not be decoded (written by a newer exoclaw, or corrupted).
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
}

/// A new session's details.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The id to give it; a fresh one when `None`. A front end that must name the session before
    /// it is stored (a turn's events carry the id) picks one with [`SessionId::new`].
    pub id: Option<SessionId>,
    /// The routing key, for channel conversations.
    pub key: Option<SessionKey>,
    /// A short title.
    pub title: Option<String>,
    /// The `provider/model` in use.
    pub model: Option<String>,
}

/// Sessions and their messages.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates a session.
    async fn create_session(&self, new: NewSession) -> Result<SessionInfo, StoreError>;

    /// The session with this id.
    async fn session(&self, id: SessionId) -> Result<Option<SessionInfo>, StoreError>;

    /// The most recent session with this key.
    async fn session_by_key(&self, key: &SessionKey) -> Result<Option<SessionInfo>, StoreError>;

    /// Sessions, most recently updated first.
    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError>;

    /// A session's messages in the order they were committed.
    async fn messages(&self, id: SessionId) -> Result<Vec<Message>, StoreError>;

    /// Appends one turn's messages and its usage records in a single transaction: after a crash
    /// either the whole turn is there or none of it. Sets `model` and bumps `updated_at`.
    async fn commit_turn(
        &self,
        id: SessionId,
        messages: &[Message],
        usage: &[UsageRecord],
        model: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Removes every message of the session, keeping the session.
    async fn clear_session(&self, id: SessionId) -> Result<(), StoreError>;

    /// Deletes the session and its messages; `false` when there was none. Its usage records stay,
    /// detached from it (`session_id` becomes `None`): usage is a ledger that budgets and cost
    /// reports rely on, and deleting a conversation must not erase what it cost.
    async fn delete_session(&self, id: SessionId) -> Result<bool, StoreError>;
}

/// Metered usage.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Records one model call's usage on its own (outside a turn).
    async fn record_usage(&self, record: &UsageRecord) -> Result<(), StoreError>;

    /// Usage records from `since` on, oldest first.
    async fn usage_since(&self, since: chrono::DateTime<chrono::Utc>)
    -> Result<Vec<UsageRecord>, StoreError>;
}
