//! [`ContextAssembler`]: what the model is given before the user's new message. Today the
//! session's history ([`HistoryAssembler`]); layered memory (facts, relevant past, summaries,
//! the recent window within a token budget) plugs in here.

use crate::{SessionStore, StoreError};
use async_trait::async_trait;
use exoclaw_types::{Message, SessionId, SessionKey};
use std::sync::Arc;

/// What a context is assembled for.
#[derive(Debug, Clone, Copy)]
pub struct ContextRequest<'a> {
    /// The session.
    pub session: SessionId,
    /// Its key, when it has one.
    pub key: Option<&'a SessionKey>,
    /// The agent answering.
    pub agent: &'a str,
    /// The user's new message.
    pub input: &'a str,
}

/// Why a context could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the messages a turn starts from.
#[async_trait]
pub trait ContextAssembler: Send + Sync {
    /// The messages before the user's new one, oldest first.
    async fn assemble(&self, request: ContextRequest<'_>) -> Result<Vec<Message>, AssembleError>;
}

/// The session's stored messages, all of them.
#[derive(Clone)]
pub struct HistoryAssembler {
    store: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for HistoryAssembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryAssembler").finish_non_exhaustive()
    }
}

impl HistoryAssembler {
    /// Reads history from `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ContextAssembler for HistoryAssembler {
    async fn assemble(&self, request: ContextRequest<'_>) -> Result<Vec<Message>, AssembleError> {
        Ok(self.store.messages(request.session).await?)
    }
}
