//! [`ContextAssembler`]: what the model is given before the user's new message. Today the
//! session's history ([`HistoryAssembler`], which keeps the histories of recently active sessions
//! in memory); layered memory (facts, relevant past, summaries, the recent window within a token
//! budget) plugs in here.

use crate::{SessionStore, StoreError};
use async_trait::async_trait;
use exoclaw_types::{Message, SessionId, SessionKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// The session's revision, read under its lock ([`exoclaw_types::SessionInfo::revision`]);
    /// 0 for a session never written (or not stored yet), which has no history.
    pub revision: u64,
    /// The `provider/model` that will answer.
    pub model: &'a str,
    /// The tokens the assembled messages and the new input may take together: the model's
    /// context window less the answer's room, the system prompt and the tools.
    pub budget: usize,
}

/// An assembled context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assembled {
    /// The messages before the user's new one, oldest first.
    pub messages: Vec<Message>,
    /// What the user should know about how it was assembled (a memory store that could not be
    /// read, an embedder that failed): each becomes an [`exoclaw_types::AgentEvent::Warning`];
    /// the turn goes on.
    pub warnings: Vec<String>,
}

impl From<Vec<Message>> for Assembled {
    fn from(messages: Vec<Message>) -> Self {
        Self { messages, warnings: Vec::new() }
    }
}

/// A turn this runtime committed: the session's history grew by `messages`.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// The session.
    pub session: SessionId,
    /// Its revision after the commit; the history before it had `revision - 1`.
    pub revision: u64,
    /// The turn's messages, as stored.
    pub messages: &'a [Message],
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
    /// The messages before the user's new one, oldest first, and any warnings.
    async fn assemble(&self, request: ContextRequest<'_>) -> Result<Assembled, AssembleError>;

    /// Told after each turn the runtime commits (while it still holds the session), so that an
    /// assembler that keeps what it read can keep it current. Does nothing by default.
    fn committed(&self, _commit: Committed<'_>) {}
}

/// Sessions whose histories a [`HistoryAssembler`] keeps by default.
pub const DEFAULT_CACHED_SESSIONS: usize = 128;

/// The session's stored messages, all of them.
///
/// The histories of the most recently used sessions (at most [`DEFAULT_CACHED_SESSIONS`], or what
/// [`HistoryAssembler::with_capacity`] says) are kept in memory with the revision they were read
/// or committed at, and extended with each turn this runtime commits: a continued session's turn
/// reads no messages while its revision says nobody else wrote it.
pub struct HistoryAssembler {
    store: Arc<dyn SessionStore>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for HistoryAssembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryAssembler").finish_non_exhaustive()
    }
}

impl HistoryAssembler {
    /// Reads history from `store`, keeping [`DEFAULT_CACHED_SESSIONS`] sessions' histories.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self::with_capacity(store, DEFAULT_CACHED_SESSIONS)
    }

    /// Reads history from `store`, keeping at most `sessions` sessions' histories (none with 0).
    pub fn with_capacity(store: Arc<dyn SessionStore>, sessions: usize) -> Self {
        Self { store, cache: Mutex::new(Cache::new(sessions)) }
    }

    /// The session's whole history at `revision` (empty at 0), from memory when kept.
    pub async fn history(&self, session: SessionId, revision: u64) -> Result<Vec<Message>, StoreError> {
        if revision == 0 {
            return Ok(Vec::new());
        }
        if let Some(history) = self.cache().get(session, revision) {
            return Ok(history);
        }
        let history = self.store.messages(session).await?;
        self.cache().put(session, revision, history.clone());
        Ok(history)
    }

    /// Keeps a history current with a commit (what [`ContextAssembler::committed`] does).
    pub fn extend(&self, commit: Committed<'_>) {
        self.cache().extend(commit);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ContextAssembler for HistoryAssembler {
    async fn assemble(&self, request: ContextRequest<'_>) -> Result<Assembled, AssembleError> {
        Ok(self.history(request.session, request.revision).await?.into())
    }

    fn committed(&self, commit: Committed<'_>) {
        self.cache().extend(commit);
    }
}

/// The kept histories, the least recently used dropped first.
#[derive(Debug)]
struct Cache {
    capacity: usize,
    entries: HashMap<SessionId, Entry>,
    /// Counts uses, to find the least recent.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    revision: u64,
    messages: Vec<Message>,
    used: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self { capacity, entries: HashMap::new(), clock: 0 }
    }

    /// The history of `session` at `revision`, if it is kept.
    fn get(&mut self, session: SessionId, revision: u64) -> Option<Vec<Message>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&session)?;
        if entry.revision != revision {
            // Another process wrote the session: what is kept is stale.
            self.entries.remove(&session);
            return None;
        }
        entry.used = self.clock;
        Some(entry.messages.clone())
    }

    fn put(&mut self, session: SessionId, revision: u64, messages: Vec<Message>) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&session)
            && let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.used).map(|(id, _)| *id)
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(session, Entry { revision, messages, used: self.clock });
    }

    /// Appends a commit to the history it follows; a new session's first commit starts one.
    fn extend(&mut self, commit: Committed<'_>) {
        let before = commit.revision.checked_sub(1);
        match self.entries.get_mut(&commit.session) {
            Some(entry) if Some(entry.revision) == before => {
                entry.messages.extend_from_slice(commit.messages);
                entry.revision = commit.revision;
            }
            Some(_) => {
                self.entries.remove(&commit.session);
            }
            // Revision 0 is a session never written (no messages): this commit is its history.
            None if commit.revision == 1 => self.put(commit.session, 1, commit.messages.to_vec()),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(session: SessionId, revision: u64, messages: &[Message]) -> Committed<'_> {
        Committed { session, revision, messages }
    }

    #[test]
    fn a_kept_history_is_given_only_at_its_revision() {
        let mut cache = Cache::new(4);
        let session = SessionId::new();
        cache.put(session, 3, vec![Message::user("a")]);
        assert_eq!(cache.get(session, 3).map(|h| h.len()), Some(1));
        assert_eq!(cache.get(session, 4), None, "another process wrote it");
        assert_eq!(cache.get(session, 3), None, "the stale history was dropped");
    }

    #[test]
    fn commits_extend_the_history_they_follow() {
        let mut cache = Cache::new(4);
        let session = SessionId::new();
        cache.extend(commit(session, 1, &[Message::user("q1"), Message::assistant("a1")]));
        cache.extend(commit(session, 2, &[Message::user("q2"), Message::assistant("a2")]));
        let texts: Vec<String> = cache.get(session, 2).unwrap().iter().map(Message::text).collect();
        assert_eq!(texts, ["q1", "a1", "q2", "a2"]);
        // A commit that skips a revision (another process committed between) drops it.
        cache.extend(commit(session, 4, &[Message::user("q4")]));
        assert_eq!(cache.get(session, 4), None);
    }

    #[test]
    fn a_session_first_seen_past_its_first_commit_is_not_guessed() {
        let mut cache = Cache::new(4);
        let session = SessionId::new();
        cache.extend(commit(session, 5, &[Message::user("q")]));
        assert_eq!(cache.get(session, 5), None);
    }

    #[test]
    fn the_least_recently_used_history_goes_first() {
        let mut cache = Cache::new(2);
        let [a, b, c] = [SessionId::new(), SessionId::new(), SessionId::new()];
        cache.put(a, 1, vec![]);
        cache.put(b, 1, vec![]);
        assert!(cache.get(a, 1).is_some());
        cache.put(c, 1, vec![]);
        assert!(cache.get(b, 1).is_none(), "b was the least recently used");
        assert!(cache.get(a, 1).is_some() && cache.get(c, 1).is_some());
        let mut none = Cache::new(0);
        none.put(a, 1, vec![]);
        assert!(none.get(a, 1).is_none());
    }
}
