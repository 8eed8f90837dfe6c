//! The SQL both backends run, written once.
//!
//! Every statement that changes a session's messages also adds one to `sessions.revision`, in the
//! same transaction: runtimes trust a cached history only while the revision stays where they
//! left it.
//!
//! Placeholders are `$1`, `$2`, …: PostgreSQL's form, which sqlx also binds by number on SQLite.
//! The statements keep to what both dialects share: `CAST(… AS TEXT)` rather than PostgreSQL's
//! `::text`, `CASE` rather than `GREATEST` (PostgreSQL) or two-argument `MAX` (SQLite). What the
//! backends bind differs (SQLite stores ids as text and times as integer microseconds, PostgreSQL
//! as `uuid` and `timestamptz`), so each backend keeps its own `.bind(…)` calls.
//!
//! What stays in a backend is what really differs: SQLite commits a turn as one batch of statements
//! (`sqlite.rs`, `commit_batch`), PostgreSQL locks the session's row and numbers messages in a
//! transaction; PostgreSQL casts text to `json` on the way in; the usage inserts (SQLite inserts
//! many rows per statement) and the key columns (`text[]` against JSON text).

/// The session columns, the message count and whether a turn was interrupted, ready for a
/// `WHERE` clause.
macro_rules! select_session {
    () => {
        "SELECT s.id, s.agent, s.channel, s.account, s.peer, s.title, s.model, s.created_at, \
         s.updated_at, s.revision, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS message_count, \
         EXISTS (SELECT 1 FROM runs r WHERE r.session_id = s.id) AS interrupted \
         FROM sessions s "
    };
}

/// The key columns, ready for a `WHERE` or `ORDER BY`.
macro_rules! select_key {
    () => {
        "SELECT id, name, prefix, models, budget_usd, spent_usd, rpm, created_at, revoked_at FROM api_keys "
    };
}

/// A new session: id, the four key columns, title, model, and its creation time (also its update
/// time).
pub(crate) const INSERT_SESSION: &str = "INSERT INTO sessions (id, agent, channel, account, peer, title, model, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

/// The session with id `$1`.
pub(crate) const SESSION_BY_ID: &str = concat!(select_session!(), "WHERE s.id = $1");

/// The most recent session with the key `$1`–`$4`.
pub(crate) const SESSION_BY_KEY: &str = concat!(
    select_session!(),
    "WHERE s.agent = $1 AND s.channel = $2 AND s.account = $3 AND s.peer = $4 \
     ORDER BY s.updated_at DESC, s.id DESC LIMIT 1"
);

/// The `$1` most recently updated sessions.
pub(crate) const LIST_SESSIONS: &str =
    concat!(select_session!(), "ORDER BY s.updated_at DESC, s.id DESC LIMIT $1");

/// Whether session `$1` exists (a row, or none).
pub(crate) const SESSION_EXISTS: &str = "SELECT 1 FROM sessions WHERE id = $1";

/// The messages of session `$1`, in order, their parts as JSON text.
pub(crate) const MESSAGES: &str = "SELECT id, role, CAST(parts AS TEXT) AS parts, created_at FROM messages \
     WHERE session_id = $1 ORDER BY seq";

/// Session `$2` is being cleared at `$1`: its `updated_at` moves on (never back), its revision
/// up by one.
pub(crate) const CLEARED_SESSION: &str = "UPDATE sessions SET updated_at = CASE WHEN updated_at > $1 THEN updated_at ELSE $1 END, \
     revision = revision + 1 WHERE id = $2";

/// The messages of session `$1`.
pub(crate) const DELETE_MESSAGES: &str = "DELETE FROM messages WHERE session_id = $1";

/// Session `$1`'s usage, kept in the ledger without it.
pub(crate) const DETACH_USAGE: &str = "UPDATE usage SET session_id = NULL WHERE session_id = $1";

/// Session `$1` (its messages and run go with it: `ON DELETE CASCADE`).
pub(crate) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id = $1";

/// Usage records from `$1` on, oldest first.
pub(crate) const USAGE_SINCE: &str = "SELECT at, session_id, agent, provider, model, input_tokens, output_tokens, \
     cache_read_tokens, cache_write_tokens, latency_ms, ttft_ms, cost_usd, estimated \
     FROM usage WHERE at >= $1 ORDER BY at, id";

/// The run of session `$1`, as JSON text.
pub(crate) const RUN: &str = "SELECT CAST(run AS TEXT) FROM runs WHERE session_id = $1";

/// Sessions with a run, the most recently saved first.
pub(crate) const INTERRUPTED_SESSIONS: &str =
    "SELECT session_id FROM runs ORDER BY saved_at DESC, session_id DESC";

/// The run of session `$1`.
pub(crate) const DELETE_RUN: &str = "DELETE FROM runs WHERE session_id = $1";

/// Stores run `$2` (JSON text) of session `$1`, saved at `$3`, replacing the one before;
/// `$json` is how the backend turns the text into its JSON column.
macro_rules! upsert_run {
    ($json:literal) => {
        concat!(
            "INSERT INTO runs (session_id, run, saved_at) VALUES ($1, ",
            $json,
            ", $3) ON CONFLICT (session_id) DO UPDATE SET run = excluded.run, saved_at = excluded.saved_at"
        )
    };
}

/// A new key: id, name, hash, prefix, models, budget, rate limit, creation time.
pub(crate) const INSERT_KEY: &str = "INSERT INTO api_keys (id, name, hash, prefix, models, budget_usd, rpm, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Every key, oldest first.
pub(crate) const LIST_KEYS: &str = concat!(select_key!(), "ORDER BY created_at, id");

/// The key whose hash is `$1`.
pub(crate) const KEY_BY_HASH: &str = concat!(select_key!(), "WHERE hash = $1");

/// Revokes at `$1` the live key named `$2` or with id `$3`.
pub(crate) const REVOKE_KEY: &str =
    "UPDATE api_keys SET revoked_at = $1 WHERE (name = $2 OR id = $3) AND revoked_at IS NULL";

/// Adds `$1` dollars to what key `$2` has spent.
pub(crate) const ADD_KEY_SPEND: &str = "UPDATE api_keys SET spent_usd = spent_usd + $1 WHERE id = $2";

/// Records provider `$1`'s check, ended at `$2`, failed with `$3` (NULL when it answered),
/// replacing its previous check unless that one is newer (two gateways sharing a database).
pub(crate) const UPSERT_PROVIDER_HEALTH: &str = "INSERT INTO provider_health (provider, checked_at, error) \
     VALUES ($1, $2, $3) ON CONFLICT (provider) DO UPDATE \
     SET checked_at = excluded.checked_at, error = excluded.error \
     WHERE provider_health.checked_at <= excluded.checked_at";

/// Every provider's latest check, by name.
pub(crate) const PROVIDER_HEALTH: &str =
    "SELECT provider, checked_at, error FROM provider_health ORDER BY provider";

pub(crate) use upsert_run;
