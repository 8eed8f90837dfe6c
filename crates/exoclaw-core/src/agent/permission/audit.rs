//! The audit log: every permission decision, every answer, and every call that changed something
//! or reached outside, with its outcome.
//!
//! The runner hands each [`AuditEntry`] to an [`AuditSink`] without waiting; [`BufferedAudit`]
//! batches them to an [`AuditLog`] (exoclaw-store writes SQLite or PostgreSQL) on background tasks
//! of a [`TaskTracker`], so the turn never waits for the database and waiting for the tracker
//! (`Runtime::settle`) writes out every entry before a normal exit.
//!
//! Arguments are never logged, only the [`Resource`]s a call touches, and those pass through
//! [`redact_secrets`] (and the operator's `[hooks] redact` patterns) first.

use super::engine::Reason;
use super::resource::Resource;
use super::rule::Rule;
use super::{Decision, Permission};
use crate::StoreError;
use crate::agent::hooks::RedactHook;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_types::{SessionId, ToolEffect};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use tokio_util::task::TaskTracker;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// The session the call was made in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The agent that made it.
    pub agent: String,
    /// The tool call's id, as the model gave it.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// The tool's effect.
    pub effect: ToolEffect,
    /// What the call touches (secrets redacted); never its raw arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// What happened (its fields sit beside the entry's in JSON: `"event": "decided", …`).
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// What an [`AuditEntry`] records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// The permissions decided a call.
    Decided {
        /// Run, ask or refuse.
        permission: Permission,
        /// Which rule or default decided.
        reason: Reason,
    },
    /// A person answered (or nobody could: [`Decision::Unattended`]).
    Answered {
        /// The answer.
        decision: Decision,
        /// The rules a "session" or "always" answer added.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remembered: Vec<Rule>,
    },
    /// A call that changes something or reaches outside ran.
    Executed {
        /// Whether it succeeded.
        ok: bool,
        /// How long it took.
        duration_ms: u64,
    },
}

impl AuditEvent {
    /// `decided`, `answered` or `executed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Decided { .. } => "decided",
            Self::Answered { .. } => "answered",
            Self::Executed { .. } => "executed",
        }
    }
}

/// Which entries to read back, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this session's.
    pub session: Option<SessionId>,
    /// Only this tool's.
    pub tool: Option<String>,
    /// At most this many.
    pub limit: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self { session: None, tool: None, limit: 50 }
    }
}

/// Where audit entries are kept: implemented by exoclaw-store for SQLite and PostgreSQL.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `entries`, in order, in one transaction.
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;

    /// The entries `query` selects, newest first.
    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Takes audit entries from the runner. Must not block: the turn waits for it.
pub trait AuditSink: Send + Sync {
    /// Records `entry` (eventually).
    fn record(&self, entry: AuditEntry);
}

/// Keeps nothing: a runner's audit until one is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _entry: AuditEntry) {}
}

/// Entries batched to an [`AuditLog`] on background tasks; see the module docs.
pub struct BufferedAudit {
    log: Arc<dyn AuditLog>,
    tasks: TaskTracker,
    redact: Option<RedactHook>,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    entries: Vec<AuditEntry>,
    /// A task is writing; it takes what is pending before it ends.
    writing: bool,
}

impl std::fmt::Debug for BufferedAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedAudit").finish_non_exhaustive()
    }
}

impl BufferedAudit {
    /// Entries written to `log` by tasks on `tasks`: once `tasks` has no task left (wait for it
    /// closed), every entry recorded before is written.
    pub fn new(log: Arc<dyn AuditLog>, tasks: TaskTracker) -> Self {
        Self { log, tasks, redact: None, pending: Arc::default() }
    }

    /// Also removes what `redact`'s patterns match from resources.
    #[must_use]
    pub fn with_redaction(mut self, redact: RedactHook) -> Self {
        self.redact = Some(redact);
        self
    }

    /// Writes what is pending now, on this task (for callers without a tracker to wait for).
    pub async fn flush(&self) {
        let batch = std::mem::take(&mut lock(&self.pending).entries);
        if !batch.is_empty() {
            write(&*self.log, &batch).await;
        }
        // A writing task may hold a batch still: it is done once the tracker is.
    }

    fn redacted(&self, mut entry: AuditEntry) -> AuditEntry {
        for resource in &mut entry.resources {
            let value = match resource {
                Resource::Path(v) | Resource::Host(v) | Resource::Command(v) => v,
            };
            let mut text = redact_secrets(value).into_owned();
            if let Some(redact) = &self.redact {
                text = redact.redact(&text).into_owned();
            }
            *value = text;
        }
        entry
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn write(log: &dyn AuditLog, batch: &[AuditEntry]) {
    if let Err(err) = log.record_audit(batch).await {
        tracing::error!(%err, entries = batch.len(), "audit entries could not be written");
    }
}

/// Writes batches until nothing is pending.
async fn write_pending(log: Arc<dyn AuditLog>, pending: Arc<Mutex<Pending>>) {
    loop {
        let batch = {
            let mut pending = lock(&pending);
            if pending.entries.is_empty() {
                pending.writing = false;
                return;
            }
            std::mem::take(&mut pending.entries)
        };
        write(&*log, &batch).await;
    }
}

impl AuditSink for BufferedAudit {
    fn record(&self, entry: AuditEntry) {
        let entry = self.redacted(entry);
        let start = {
            let mut pending = lock(&self.pending);
            pending.entries.push(entry);
            !std::mem::replace(&mut pending.writing, true)
        };
        if !start {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // Outside a runtime nothing can write now: `flush` will.
            lock(&self.pending).writing = false;
            return;
        }
        self.tasks.spawn(write_pending(Arc::clone(&self.log), Arc::clone(&self.pending)));
    }
}

/// Secrets that commonly appear in command lines and URLs, replaced by `[redacted]`: passwords in
/// URLs, `Authorization`/`Bearer` values, `--password`/`token=`-style values, and keys with a
/// vendor's well-known prefix.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            // https://user:password@host
            (r"(://[^/\s:@]+:)[^/\s@]+@", "${1}[redacted]@"),
            // Authorization: Bearer xyz, Bearer xyz
            (r"(?i)\b(authorization:\s*(?:bearer|basic|token)?\s*|bearer\s+)[^\s'\x22]+", "${1}[redacted]"),
            // --password xyz, --token=xyz, api_key=xyz, PASSWORD=xyz, -p'xyz' is left alone
            (
                r"(?i)((?:--?|\b)[a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[a-z0-9_-]*(?:\s*[=:]\s*|\s+))[^\s'\x22&]+",
                "${1}[redacted]",
            ),
            // sk-…, ghp_…, xoxb-…, AKIA…, glpat-…
            (
                r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abpors]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|glpat-[A-Za-z0-9_-]{16,})",
                "[redacted]",
            ),
        ]
        .into_iter()
        .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|re| (re, with)))
        .collect()
    });
    let mut text = Cow::Borrowed(text);
    for (re, with) in PATTERNS.iter() {
        let replaced = match re.replace_all(&text, *with) {
            Cow::Owned(replaced) => Some(replaced),
            Cow::Borrowed(_) => None,
        };
        if let Some(replaced) = replaced {
            text = Cow::Owned(replaced);
        }
    }
    text
}
