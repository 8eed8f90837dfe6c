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
     cache_read_tokens, cache_write_tokens, latency_ms, ttft_ms, cost_usd, estimated, purpose \
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

/// Records channel `$1`'s state — connected `$2` since `$3`, its error `$4` — replacing its previous
/// state unless that one is newer (two gateways sharing a database).
pub(crate) const UPSERT_CHANNEL_HEALTH: &str = "INSERT INTO channel_health (channel, connected, since, error) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (channel) DO UPDATE \
     SET connected = excluded.connected, since = excluded.since, error = excluded.error \
     WHERE channel_health.since <= excluded.since";

/// Every channel's latest state, by name.
pub(crate) const CHANNEL_HEALTH: &str =
    "SELECT channel, connected, since, error FROM channel_health ORDER BY channel";

// Long-term memory (`memory.rs`; see the `0006_memory.sql` migrations).

/// The columns of a memory entry, in the order `entry_from_row` reads them (by name).
macro_rules! entry_columns {
    () => {
        "id, owner, session_id, kind, seq, role, text, created_at"
    };
}

/// Session `$1`'s indexing mark (no row for none).
pub(crate) const INDEXED_MESSAGES: &str = "SELECT indexed FROM memory_marks WHERE session_id = $1";

/// Raises session `$1`'s indexing mark to `$2`, never lowering it.
pub(crate) const RAISE_MARK: &str = "INSERT INTO memory_marks (session_id, indexed) VALUES ($1, $2) \
     ON CONFLICT (session_id) DO UPDATE SET indexed = excluded.indexed \
     WHERE excluded.indexed > memory_marks.indexed";

/// Every entry of session `$1`, whoever's (a session's memory starting over).
pub(crate) const RESET_SESSION_ENTRIES: &str =
    concat!("DELETE FROM memory_entries WHERE session_id = $1", deleted_entries!());

/// Session `$1`'s summary.
pub(crate) const DELETE_SUMMARY: &str = "DELETE FROM memory_summaries WHERE session_id = $1";

/// Session `$1`'s indexing mark.
pub(crate) const DELETE_MARK: &str = "DELETE FROM memory_marks WHERE session_id = $1";

/// Owner `$1`'s entries, newest first, at most `$2`.
pub(crate) const MEMORY_ENTRIES: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM memory_entries WHERE owner = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
);

/// Entries of every owner without an embedding, whose embedding was not refused, oldest first,
/// at most `$1` (to embed them).
pub(crate) const UNEMBEDDED_ENTRIES: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM memory_entries WHERE embedding IS NULL AND NOT embedding_refused ORDER BY id LIMIT $1"
);

/// Marks entry `$1`, when it has no embedding, as refused by the embedder.
pub(crate) const REFUSE_EMBEDDING: &str = "UPDATE memory_entries SET embedding_refused = TRUE \
     WHERE id = $1 AND embedding IS NULL AND NOT embedding_refused";

/// Entry `$1`, when it has no embedding, taken out to be put back with one under a new id; its
/// columns in [`INSERT_ENTRIES`]' order, but the embedding.
pub(crate) const TAKE_UNEMBEDDED: &str = "DELETE FROM memory_entries WHERE id = $1 AND embedding IS NULL \
     RETURNING owner, session_id, kind, seq, role, text, created_at";

/// One memory entry, with its embedding; its new id comes back.
pub(crate) const INSERT_ENTRY: &str = "INSERT INTO memory_entries \
     (owner, session_id, kind, seq, role, text, created_at, embedding) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";

/// The start of an `INSERT` of memory entries; the values follow in this column order, and the
/// new rows' keys come back.
pub(crate) const INSERT_ENTRIES: &str =
    "INSERT INTO memory_entries (owner, session_id, kind, seq, role, text, created_at, embedding) ";

/// What an `INSERT` of entries gives back: each new row's id and key.
pub(crate) const INSERTED_ENTRIES: &str = " RETURNING id, session_id, kind, seq";

/// What deleting entries gives back: the ids, owners and whether they had an embedding (for the
/// cache of embeddings).
macro_rules! deleted_entries {
    () => {
        " RETURNING id, owner, embedding IS NOT NULL AS embedded"
    };
}

/// Owner `$1`'s entries of session `$2`.
pub(crate) const DELETE_SESSION_ENTRIES: &str =
    concat!("DELETE FROM memory_entries WHERE owner = $1 AND session_id = $2", deleted_entries!());

/// Owner `$1`'s entries' ids and texts (to forget those containing a text).
pub(crate) const OWNER_TEXTS: &str = "SELECT id, text FROM memory_entries WHERE owner = $1";

/// Owner `$1`'s [`VectorState`](crate::memory_vectors::VectorState).
pub(crate) const VECTOR_STATE: &str =
    "SELECT embedded, max_id, removed FROM memory_vector_state WHERE owner = $1";

/// Owner `$1`'s embeddings with ids above `$2`, by id.
pub(crate) const VECTOR_ROWS: &str = "SELECT id, embedding FROM memory_entries \
     WHERE owner = $1 AND embedding IS NOT NULL AND id > $2 ORDER BY id";

/// Stores summary `$1`–`$5` (session, through, text, model, time) unless the session's current
/// one covers as many messages or more: one statement, so two archivals finishing together
/// cannot both win.
pub(crate) const SAVE_SUMMARY: &str = "INSERT INTO memory_summaries (session_id, through, text, model, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE \
     SET through = excluded.through, text = excluded.text, model = excluded.model, \
     created_at = excluded.created_at WHERE excluded.through > memory_summaries.through";

/// Session `$1`'s summary.
pub(crate) const SUMMARY: &str =
    "SELECT session_id, through, text, model, created_at FROM memory_summaries WHERE session_id = $1";

/// The current facts of owner `$1`, subject `$2` and predicate `$3`, newest first.
pub(crate) const CURRENT_FACTS: &str = "SELECT id, object FROM memory_facts \
     WHERE owner = $1 AND subject = $2 AND predicate = $3 AND invalidated_at IS NULL ORDER BY id DESC";

/// Raises fact `$2`'s confidence to `$1` if that is higher.
pub(crate) const RAISE_CONFIDENCE: &str = "UPDATE memory_facts SET confidence = CASE WHEN confidence < $1 THEN $1 ELSE confidence END WHERE id = $2";

/// A new fact: owner, subject, predicate, object, confidence, source session and seq, learned and
/// valid-from times; its id comes back.
pub(crate) const INSERT_FACT: &str = "INSERT INTO memory_facts (owner, subject, predicate, object, confidence, \
     source_session, source_seq, learned_at, valid_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";

/// Marks the other current facts of owner `$3`, subject `$4` and predicate `$5` invalid from `$1`,
/// superseded by fact `$2`; their ids come back.
pub(crate) const SUPERSEDE_FACTS: &str = "UPDATE memory_facts SET invalidated_at = $1, superseded_by = $2 \
     WHERE owner = $3 AND subject = $4 AND predicate = $5 AND invalidated_at IS NULL AND id <> $2 RETURNING id";

/// Owner `$1`'s facts (superseded ones too when `$2`), newest first.
pub(crate) const FACTS: &str = "SELECT id, owner, subject, predicate, object, confidence, source_session, \
     source_seq, learned_at, valid_from, invalidated_at, superseded_by FROM memory_facts \
     WHERE owner = $1 AND ($2 OR invalidated_at IS NULL) ORDER BY learned_at DESC, id DESC";

/// Owner `$1`'s fact `$2` (the facts it superseded lose their pointer to it: `ON DELETE SET NULL`).
pub(crate) const DELETE_FACT: &str = "DELETE FROM memory_facts WHERE owner = $1 AND id = $2";

// The audit log (`audit.rs` in each backend; see the `0007_audit.sql` migrations).

/// Appends an audit entry: time `$1`, session `$2`, tool `$3`, kind `$4`, the entry as JSON text
/// `$json` (how the backend turns the text into its JSON column).
macro_rules! insert_audit {
    ($json:literal) => {
        concat!(
            "INSERT INTO audit_log (at, session_id, tool, kind, entry) VALUES ($1, $2, $3, $4, ",
            $json,
            ")"
        )
    };
}

/// The newest `$3` audit entries, of session `$1` and tool `$2` when they are not NULL, as JSON text.
pub(crate) const AUDIT_ENTRIES: &str = "SELECT CAST(entry AS TEXT) AS entry FROM audit_log \
     WHERE ($1 IS NULL OR session_id = $1) AND ($2 IS NULL OR tool = $2) ORDER BY id DESC LIMIT $3";

pub(crate) use deleted_entries;
pub(crate) use entry_columns;
pub(crate) use insert_audit;
pub(crate) use upsert_run;
