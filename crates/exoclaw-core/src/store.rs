//! Storage traits, one per concern, implemented by `exoclaw-store` for SQLite and Postgres.

use std::fmt;

use async_trait::async_trait;
use exoclaw_types::{ApiKey, Message, SessionId, SessionInfo, SessionKey, UsageRecord};

use crate::Run;

/// The error underneath a [`StoreError`]: the database driver's (`sqlx::Error`), an I/O error, a
/// JSON one. Kept as the error's [`source`](std::error::Error::source), so a report that walks
/// the chain (`anyhow`'s `{:#}`) shows it and code can downcast to it.
pub type StoreErrorSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the store could not do what was asked.
///
/// The message says what failed and, where a person can do something about it, what to do; the
/// underlying error (when there is one) is the [`source`](std::error::Error::source), not part of
/// the message. Neither ever holds a database password: a backend leaves out a source whose text
/// would show one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No session has this id.
    #[error("no session {0}")]
    SessionNotFound(SessionId),
    /// The database could not be opened or migrated; the message says where and what to do.
    #[error("{message}")]
    Open {
        /// Which database, what went wrong, what to do.
        message: String,
        /// The driver's error, when it is safe to show.
        #[source]
        source: Option<StoreErrorSource>,
    },
    /// A query failed.
    #[error("storage error: {message}")]
    Database {
        /// What was being done.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<StoreErrorSource>,
    },
    /// A virtual key with this name exists already (and is not revoked).
    #[error("a key named `{0}` exists already; revoke it first or choose another name")]
    KeyExists(String),
    /// Stored data could not be decoded (written by a newer exoclaw, or corrupted).
    #[error("stored data could not be read: {message}")]
    Corrupt {
        /// What could not be read, and what to do.
        message: String,
        /// The decoding error.
        #[source]
        source: Option<StoreErrorSource>,
    },
    /// Another turn holds the session's lock (see [`SessionLocks`]) and the caller asked not to
    /// wait.
    #[error(
        "session {session} is in use by {holder}; wait for it to finish, or run without --no-wait \
         to wait"
    )]
    SessionLocked {
        /// The session.
        session: SessionId,
        /// Who holds it, for a person: the process (`pid N (exoclaw chat) on HOST since TIME`)
        /// when the holder said.
        holder: String,
    },
}

impl StoreError {
    /// [`StoreError::Open`] with nothing underneath.
    pub fn open(message: impl Into<String>) -> Self {
        Self::Open { message: message.into(), source: None }
    }

    /// [`StoreError::Open`] caused by `source`.
    pub fn open_from(message: impl Into<String>, source: impl Into<StoreErrorSource>) -> Self {
        Self::Open { message: message.into(), source: Some(source.into()) }
    }

    /// [`StoreError::Database`] with nothing underneath (the store itself refused).
    pub fn database(message: impl Into<String>) -> Self {
        Self::Database { message: message.into(), source: None }
    }

    /// [`StoreError::Database`]: `source` failed while doing what `message` says.
    pub fn database_from(message: impl Into<String>, source: impl Into<StoreErrorSource>) -> Self {
        Self::Database { message: message.into(), source: Some(source.into()) }
    }

    /// [`StoreError::Corrupt`] with nothing underneath.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt { message: message.into(), source: None }
    }

    /// [`StoreError::Corrupt`] caused by `source`.
    pub fn corrupt_from(message: impl Into<String>, source: impl Into<StoreErrorSource>) -> Self {
        Self::Corrupt { message: message.into(), source: Some(source.into()) }
    }
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

/// Characters of a first message kept as a new session's title.
pub const TITLE_CHARS: usize = 60;

/// A new session's title from its first message: the first line with something printable on it,
/// terminal escape sequences removed and other control characters made spaces, cut to
/// [`TITLE_CHARS`] (with `…` when cut). Titles are shown on terminals (`exoclaw session list`)
/// and the message is anybody's: a channel's sender, a web client.
pub fn session_title(input: &str) -> String {
    let line = input.lines().map(printable).find(|l| !l.trim().is_empty()).unwrap_or_default();
    let line = line.trim();
    if line.chars().count() > TITLE_CHARS {
        format!("{}…", line.chars().take(TITLE_CHARS).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// `line` without escape sequences (`ESC [ … final`, `ESC ] … BEL` or `ESC \`, `ESC` and one
/// character; the C1 forms too) and with every other control character, and the invisible marks
/// that reorder text, made a space.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let introducer = match c {
            '\u{1b}' => chars.next(),
            '\u{9b}' => Some('['),
            '\u{9d}' => Some(']'),
            '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => Some('P'),
            _ => None,
        };
        match introducer {
            // CSI: parameters and intermediates up to a final byte in `@`..=`~`.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (`ESC \` or U+009C).
            Some(']' | 'P' | 'X' | '^' | '_') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || c == '\u{9c}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // Any other escape: ESC and the one character after it.
            Some(_) => {}
            None if crate::text::is_terminal_unsafe(c) => out.push(' '),
            None => out.push(c),
        }
    }
    out
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
    /// either the whole turn is there or none of it. Sets `model` and bumps `updated_at`, and
    /// removes the session's run checkpoint ([`RunStore`]) in the same transaction, so a committed
    /// turn is never also an interrupted one.
    async fn commit_turn(
        &self,
        id: SessionId,
        messages: &[Message],
        usage: &[UsageRecord],
        model: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Removes every message of the session, and its interrupted run, keeping the session.
    async fn clear_session(&self, id: SessionId) -> Result<(), StoreError>;

    /// Deletes the session, its messages and its interrupted run; `false` when there was none. Its usage records stay,
    /// detached from it (`session_id` becomes `None`): usage is a ledger that budgets and cost
    /// reports rely on, and deleting a conversation must not erase what it cost.
    async fn delete_session(&self, id: SessionId) -> Result<bool, StoreError>;
}

/// Turns in progress, checkpointed after every step so that a crash or a kill loses at most the
/// step under way: the run is stored whole (a few KB: the [`Run`] without the session's history,
/// which is in the session's messages) and replaced at each step, and
/// [`SessionStore::commit_turn`] removes it in the transaction that stores the turn's messages.
/// A run still stored is therefore a turn that never committed: an interrupted run, to resume or
/// discard. Deleting a session deletes its run; clearing one discards it.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores `run` as the latest state of the turn in progress in `session`, replacing the
    /// previous one. [`StoreError::SessionNotFound`] when there is no such session.
    async fn save_run(&self, session: SessionId, run: &Run) -> Result<(), StoreError>;

    /// The turn in progress in `session` that never committed (an interrupted run), if any.
    /// [`StoreError::Corrupt`] when the stored run cannot be read (written by a newer exoclaw, or
    /// damaged); [`RunStore::discard_run`] removes it.
    async fn interrupted_run(&self, session: SessionId) -> Result<Option<Run>, StoreError>;

    /// Sessions with an interrupted run, the most recently saved first.
    async fn interrupted_sessions(&self) -> Result<Vec<SessionId>, StoreError>;

    /// Forgets the session's run without committing it (nothing when it has none).
    async fn discard_run(&self, session: SessionId) -> Result<(), StoreError>;
}

/// One turn at a time per session, across processes: two `exoclaw chat -c`, or a CLI and a
/// gateway, sharing one database never interleave turns on a session.
#[async_trait]
pub trait SessionLocks: Send + Sync {
    /// Takes the session's lock until the lease is dropped. With `wait`, waits for the holder to
    /// let go; without, fails at once with [`StoreError::SessionLocked`] naming the holder. A
    /// lock is exclusive within a process too: a second lease on the same session waits for (or
    /// is refused by) the first. A process that dies loses its locks.
    async fn lock_session(&self, session: SessionId, wait: bool) -> Result<SessionLease, StoreError>;
}

/// A session's lock, held while a turn runs; dropping it releases the lock (without blocking).
pub struct SessionLease {
    session: SessionId,
    /// Whatever releases the lock when dropped: an open lock file, a database connection.
    _guard: Box<dyn Send + Sync>,
}

impl SessionLease {
    /// A lease on `session` that holds `guard` until dropped; for [`SessionLocks`]
    /// implementations.
    pub fn new(session: SessionId, guard: impl Send + Sync + 'static) -> Self {
        Self { session, _guard: Box::new(guard) }
    }

    /// The session it locks.
    pub fn session(&self) -> SessionId {
        self.session
    }
}

impl fmt::Debug for SessionLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLease").field("session", &self.session).finish_non_exhaustive()
    }
}

/// Metered usage.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Records one model call's usage on its own (outside a turn).
    async fn record_usage(&self, record: &UsageRecord) -> Result<(), StoreError>;

    /// Appends many usage records at once (in one transaction where the store can).
    async fn record_usage_batch(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        for record in records {
            self.record_usage(record).await?;
        }
        Ok(())
    }

    /// Usage records from `since` on, oldest first.
    async fn usage_since(&self, since: chrono::DateTime<chrono::Utc>)
    -> Result<Vec<UsageRecord>, StoreError>;
}

/// A new virtual key's details; the key itself is never stored, only its hash.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    /// Its name (unique among keys that are not revoked).
    pub name: String,
    /// The SHA-256 of the key, 64 lowercase hex digits.
    pub hash: String,
    /// Its first characters, for lists.
    pub prefix: String,
    /// Models it may use (exact names or `*` patterns); empty: all.
    pub models: Vec<String>,
    /// Most dollars it may spend.
    pub budget_usd: Option<f64>,
    /// Most requests per minute.
    pub rpm: Option<u32>,
}

/// The gateway's virtual keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key; [`StoreError::KeyExists`] when a live key has its name.
    async fn create_key(&self, new: NewApiKey) -> Result<ApiKey, StoreError>;

    /// Every key, revoked ones too, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// The key whose SHA-256 is `hash`, revoked or not.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Revokes the live key called `name_or_id` (its name, or its id); whether one was found.
    async fn revoke_key(&self, name_or_id: &str) -> Result<bool, StoreError>;

    /// Adds `usd` to what the key has spent.
    async fn add_key_spend(&self, id: &str, usd: f64) -> Result<(), StoreError>;
}

/// One provider's latest health check by a long-running exoclaw (the gateway), as recorded for
/// other processes (`exoclaw providers status`) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealth {
    /// The provider instance's name.
    pub provider: String,
    /// When the check ended.
    pub checked_at: chrono::DateTime<chrono::Utc>,
    /// Why it failed; `None` when the provider answered.
    pub error: Option<String>,
}

/// The gateway's health checks of keyless provider servers, kept where another process can read
/// them: the latest check of each provider, each one replacing the one before.
#[async_trait]
pub trait ProviderHealthStore: Send + Sync {
    /// Records one round of checks (in one transaction where the store can), replacing each
    /// provider's previous check.
    async fn record_provider_health(&self, checks: &[ProviderHealth]) -> Result<(), StoreError>;

    /// The latest check of every provider ever checked, by name.
    async fn provider_health(&self) -> Result<Vec<ProviderHealth>, StoreError>;
}

/// What a long-running exoclaw (the gateway) last saw of one chat channel's connection to its
/// platform (Discord's Gateway, the KĀDI broker, Slack's Socket Mode, Telegram's long polling),
/// as recorded for other processes (`exoclaw channels status`) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHealth {
    /// The channel's name (`discord`, `kadi`, …).
    pub channel: String,
    /// Whether it is connected.
    pub connected: bool,
    /// Since when it has been in this state.
    pub since: chrono::DateTime<chrono::Utc>,
    /// What went wrong last, while it is not connected (and why it stopped, if it gave up).
    pub error: Option<String>,
}

/// The gateway's chat channel connections, kept where another process can read them: the latest
/// state of each channel, each report replacing the one before.
#[async_trait]
pub trait ChannelHealthStore: Send + Sync {
    /// Records `state`, replacing the channel's previous one unless that one is newer.
    async fn record_channel_health(&self, state: &ChannelHealth) -> Result<(), StoreError>;

    /// The latest state of every channel ever reported, by name.
    async fn channel_health(&self) -> Result<Vec<ChannelHealth>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_the_first_line_cut() {
        assert_eq!(session_title("\n  hello there \nmore"), "hello there");
        let long = "x".repeat(100);
        assert_eq!(session_title(&long).chars().count(), TITLE_CHARS + 1);
    }

    #[test]
    fn titles_carry_no_control_characters() {
        assert_eq!(session_title("\x1b[2J\x1b[1;31mred\x1b[0m alert\x07"), "red alert");
        assert_eq!(session_title("\x1b]0;pwned\x07title\x1b]52;c;eA==\x1b\\ here"), "title here");
        assert_eq!(session_title("tab\there\rand\u{9b}2Jthere\u{202e}x"), "tab here andthere x");
        assert_eq!(session_title("\x1b[2J\n\x1b[H\nreal title"), "real title", "a line of escapes is blank");
        assert_eq!(session_title("a trailing \x1b"), "a trailing");
    }
}
