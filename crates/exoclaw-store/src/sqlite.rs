//! The SQLite backend: one file in WAL mode, one writer connection and a few readers.
//!
//! Writes go through a pool of exactly one connection, so the process never competes with itself
//! for SQLite's single write lock (and never sleeps in the busy handler against itself); every
//! write transaction starts with `BEGIN IMMEDIATE`, so another process holding the file makes it
//! wait (up to the busy timeout) at the start instead of failing half-way. Reads use their own
//! small pool of `query_only` connections and, thanks to WAL, never wait for the writer.
//!
//! WAL checkpoints (copying the log back into the main file, with fsyncs) run on a connection of
//! their own, once a second and after every [`CHECKPOINT_AFTER_COMMITS`] commits, instead of inside
//! whichever commit happened to fill the log: done by the writer they made one commit in a hundred
//! take ten milliseconds instead of a fifth of one (p99 9.4 ms against 0.3–0.7 ms now, in
//! `benches/store.rs`). The writer still checkpoints by itself if the log ever grows past
//! [`WRITER_AUTOCHECKPOINT`] pages, so a stalled background task cannot let it grow without bound.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_core::{
    NewSession, Run, RunStore, SessionLease, SessionLocks, SessionStore, StoreError, UsageStore,
};
use exoclaw_types::{Message, MessageId, SessionId, SessionInfo, SessionKey, Usage, UsageRecord};
use futures::StreamExt;
use sqlx::Either;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};
use tokio::sync::Notify;
use uuid::Uuid;

mod audit;
mod health;
mod keys;
mod memory;

use crate::codec::{
    from_i64, from_micros, key_from_columns, now, opt_from_i64, opt_to_i64, parts_from_json, parts_to_json,
    query_error, role_from_str, role_to_str, run_from_json, run_to_json, to_i64, to_micros, write_error,
};
use crate::lock::{Locks, MemoryLocks};
use crate::memory_vectors::VectorCache;
use crate::sql;

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections: enough for a gateway's concurrent reads on two to eight cores.
const READERS: u32 = 4;

/// Bytes of the database file readers map into memory (address space, not memory: the pages are
/// the operating system's cache). Memory searches read a few hundred entries scattered over a
/// file of hundreds of megabytes (mostly embeddings); through the map each page is a memory access
/// rather than a `read` call into a small private page cache, which took looking up 200 entries
/// found by a text search from 1–5 ms to about 0.5 ms on a 100,000-entry memory. Writes still go
/// through the writer's ordinary I/O.
const READER_MMAP: &str = "1073741824";

/// How often the background task checkpoints the WAL when writes are few.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Commits after which the background task checkpoints without waiting for its next tick, so that
/// a burst of writes never fills the log up to [`WRITER_AUTOCHECKPOINT`] (a turn writes about ten
/// pages). Each checkpoint slows the commits that overlap it, so fewer of them make a better tail:
/// in `benches/store.rs` every 1,000 commits gave p99 0.64–1.25 ms, every 3,000 gave 0.52–0.87 ms.
const CHECKPOINT_AFTER_COMMITS: u32 = 3000;

/// WAL pages (4 KiB each, so 160 MB) after which the writer checkpoints by itself: a safety net
/// behind the background checkpoints, well above what [`CHECKPOINT_AFTER_COMMITS`] lets a burst
/// write (SQLite's default is 1,000).
const WRITER_AUTOCHECKPOINT: &str = "40000";

/// The schema, one migration per file in `migrations/sqlite`, embedded in the binary.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("api_keys"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0002_api_keys.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("runs"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0003_runs.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("provider_health"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0004_provider_health.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("session_revision"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0005_session_revision.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("memory"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0006_memory.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("audit"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0007_audit.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("channel_health"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0008_channel_health.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("memory_refused"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0009_memory_refused.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("usage_purpose"),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0010_usage_purpose.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Sessions, messages and usage in an SQLite database file (or in memory).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write goes through it.
    writer: SqlitePool,
    /// `query_only` connections for reads (the writer itself when in memory).
    reader: SqlitePool,
    /// The file, for messages.
    location: String,
    /// The background checkpoints, stopped when the last clone of the store is dropped.
    checkpointer: Option<Arc<Checkpointer>>,
    /// The sessions' locks: files beside the database, or in memory for an in-memory one.
    locks: Arc<Locks>,
    /// The owners' embeddings, for `search_embedding` (see `memory_vectors.rs`).
    vectors: Arc<VectorCache>,
}

/// The task that checkpoints the WAL in the background; aborted when dropped.
#[derive(Debug)]
struct Checkpointer {
    /// Its own connection; closing it ends the task.
    pool: SqlitePool,
    task: tokio::task::JoinHandle<()>,
    /// Commits since the last nudge.
    commits: AtomicU32,
    /// Wakes the task before its tick.
    nudge: Arc<Notify>,
    /// Whether anything was committed since the last checkpoint: an idle database is left alone
    /// (the checkpointer's connection is opened on the first checkpoint that has work).
    written: Arc<AtomicBool>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Checkpointer {
    /// Starts checkpointing the WAL of the database that `pool` (one connection) opens.
    fn start(pool: SqlitePool, location: String) -> Self {
        let nudge = Arc::new(Notify::new());
        let written = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(Self::run(pool.clone(), Arc::clone(&nudge), Arc::clone(&written), location));
        Self { pool, task, commits: AtomicU32::new(0), nudge, written }
    }

    /// Counts a commit, waking the task every [`CHECKPOINT_AFTER_COMMITS`].
    fn committed(&self) {
        self.written.store(true, Ordering::Relaxed);
        if self.commits.fetch_add(1, Ordering::Relaxed) + 1 >= CHECKPOINT_AFTER_COMMITS {
            self.commits.store(0, Ordering::Relaxed);
            self.nudge.notify_one();
        }
    }

    async fn run(pool: SqlitePool, nudge: Arc<Notify>, written: Arc<AtomicBool>, location: String) {
        let first = tokio::time::Instant::now() + CHECKPOINT_EVERY;
        let mut tick = tokio::time::interval_at(first, CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = pool.close_event() => return,
                _ = tick.tick() => {}
                () = nudge.notified() => {}
            }
            if !written.swap(false, Ordering::Relaxed) {
                continue;
            }
            // PASSIVE: copies what no reader still needs and never blocks the writer or readers.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                if pool.is_closed() {
                    return;
                }
                written.store(true, Ordering::Relaxed);
                tracing::warn!(path = %location, error = %e, "WAL checkpoint failed; will retry");
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        Self::open_file(SqliteConnectOptions::new().filename(path), path.to_path_buf()).await
    }

    /// A private database that lives in memory and is gone when the store is dropped; for tests
    /// and one-off runs.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::open_from("could not set up an in-memory database", e))?;
        // One connection that never closes: the database lives exactly as long as it does.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(Self::tune(options))
            .await
            .map_err(|e| open_error(":memory:", e))?;
        migrate(&pool, ":memory:").await?;
        // An in-memory database has no WAL to checkpoint.
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            location: ":memory:".into(),
            checkpointer: None,
            locks: Arc::new(Locks::Memory(MemoryLocks::default())),
            vectors: Arc::default(),
        })
    }

    /// Opens the database named by an `sqlite:` URL (`sqlite://PATH`, `sqlite:PATH?mode=…`,
    /// `sqlite::memory:`).
    pub(crate) async fn open_url(url: &str) -> Result<Self, StoreError> {
        if is_memory_url(url) {
            return Self::open_in_memory().await;
        }
        let options = SqliteConnectOptions::from_str(url).map_err(|e| {
            StoreError::open_from(
                format!(
                    "storage URL {url} is not a valid SQLite URL; use sqlite://PATH or a plain file path"
                ),
                e,
            )
        })?;
        let path = options.get_filename().to_path_buf();
        Self::open_file(options, path).await
    }

    async fn open_file(options: SqliteConnectOptions, path: PathBuf) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::open_from(
                    format!(
                        "could not create the directory {} for the database {location}; create it \
                         yourself or choose another storage path",
                        dir.display()
                    ),
                    e,
                )
            })?;
        }
        let options = Self::tune(options);
        // Background checkpoints need a Tokio runtime to run on; without one the writer keeps
        // SQLite's own checkpoints.
        let background = tokio::runtime::Handle::try_current().is_ok();
        let writer_options = if background {
            options.clone().pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT)
        } else {
            options.clone()
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(writer_options)
            .await
            .map_err(|e| open_error(&location, e))?;
        migrate(&writer, &location).await?;
        // The writer has opened and migrated the database, so it is readable: readers and the
        // checkpointer connect when first needed (each connection is a thread and its caches, which
        // an idle gateway or REPL would carry for nothing).
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_lazy_with(options.clone().pragma("query_only", "ON").pragma("mmap_size", READER_MMAP));
        let checkpointer = if background {
            let pool = SqlitePoolOptions::new().max_connections(1).connect_lazy_with(options);
            Some(Arc::new(Checkpointer::start(pool, location.clone())))
        } else {
            None
        };
        tracing::debug!(path = %location, "opened the SQLite store");
        let locks = Arc::new(Locks::beside(&path));
        Ok(Self { writer, reader, location, checkpointer, locks, vectors: Arc::default() })
    }

    /// The settings every connection gets.
    fn tune(options: SqliteConnectOptions) -> SqliteConnectOptions {
        options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL syncs at checkpoints, not at every commit: a crashed process loses
            // nothing committed, a power cut may lose the last transactions but never corrupts.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
    }

    /// The database file (`:memory:` for an in-memory one).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection, checkpointing the WAL into the main file. Calls after this fail.
    pub async fn close(&self) {
        // The checkpointer first, so that the writer, closing last, checkpoints and removes the WAL.
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.pool.close().await;
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Counts a commit towards the next background checkpoint.
    fn committed(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
    }

    async fn session_exists(&self, id: SessionId) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(sql::SESSION_EXISTS)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| query_error("could not look up the session", e))?;
        Ok(found.is_some())
    }
}

/// The file an `sqlite:` URL names; `None` for an in-memory database or an invalid URL.
pub(crate) fn file_of_url(url: &str) -> Option<PathBuf> {
    if is_memory_url(url) {
        return None;
    }
    SqliteConnectOptions::from_str(url).ok().map(|options| options.get_filename().to_path_buf())
}

/// Whether an `sqlite:` URL names an in-memory database.
fn is_memory_url(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || query.split('&').any(|param| param == "mode=memory")
}

/// Brings the schema up to date, explaining a database from another exoclaw.
async fn migrate(pool: &SqlitePool, location: &str) -> Result<(), StoreError> {
    migrator().run(pool).await.map_err(|e| migrate_error(location, e))
}

/// A migration failure, for a person.
fn migrate_error(location: &str, error: MigrateError) -> StoreError {
    match error {
        MigrateError::VersionMissing(version) | MigrateError::VersionTooNew(version, _) => {
            StoreError::open(format!(
                "the database at {location} was written by a newer exoclaw (it has schema version \
                 {version}, which this exoclaw does not know); upgrade exoclaw, or point storage.url \
                 at another database"
            ))
        }
        MigrateError::VersionMismatch(version) => StoreError::open(format!(
            "schema version {version} of the database at {location} differs from this exoclaw's; it \
             was created by a different build of exoclaw. Use that build, or point storage.url at \
             another database"
        )),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => open_error(location, e),
        other => StoreError::open_from(format!("could not prepare the database at {location}"), other),
    }
}

/// A failure to open the file, for a person.
fn open_error(location: &str, error: sqlx::Error) -> StoreError {
    // SQLite's primary result code is the low byte of the extended one the driver reports.
    let code = match &error {
        sqlx::Error::Database(db) => {
            db.code().and_then(|code| code.parse::<i32>().ok()).map(|code| code & 0xff)
        }
        _ => None,
    };
    let advice = match code {
        // SQLITE_BUSY, SQLITE_LOCKED
        Some(5 | 6) => format!(
            "the database at {location} is locked by another program (waited {} s); close the \
             other exoclaw using it, or point storage.url at another file",
            BUSY_TIMEOUT.as_secs()
        ),
        // SQLITE_NOTADB
        Some(26) => format!(
            "{location} is not an SQLite database (or it is encrypted); move it away or point \
             storage.url at another file"
        ),
        // SQLITE_CORRUPT
        Some(11) => {
            format!("the database at {location} is damaged; restore it from a backup or move it away")
        }
        // SQLITE_READONLY, SQLITE_PERM, SQLITE_AUTH
        Some(8 | 3 | 23) => format!(
            "the database at {location} cannot be written; check the permissions of the file and \
             its directory"
        ),
        // SQLITE_CANTOPEN
        Some(14) => format!(
            "cannot open the database file {location}; check that the path is right and its \
             directory is writable"
        ),
        // SQLITE_FULL
        Some(13) => format!("the disk holding {location} is full; free some space"),
        _ => format!("could not open the database at {location}"),
    };
    StoreError::open_from(advice, error)
}

/// A session from a row of [`sql::SESSION_BY_ID`] and the like.
fn session_from_row(row: &SqliteRow) -> Result<SessionInfo, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a session row could not be read", e);
    let id: String = row.try_get("id").map_err(decode)?;
    Ok(SessionInfo {
        id: SessionId(parse_uuid(&id)?),
        key: key_from_columns(
            row.try_get("agent").map_err(decode)?,
            row.try_get("channel").map_err(decode)?,
            row.try_get("account").map_err(decode)?,
            row.try_get("peer").map_err(decode)?,
        )?,
        title: row.try_get("title").map_err(decode)?,
        model: row.try_get("model").map_err(decode)?,
        created_at: from_micros(row.try_get("created_at").map_err(decode)?)?,
        updated_at: from_micros(row.try_get("updated_at").map_err(decode)?)?,
        message_count: from_i64(row.try_get("message_count").map_err(decode)?, "message count")?,
        interrupted: row.try_get("interrupted").map_err(decode)?,
        revision: from_i64(row.try_get("revision").map_err(decode)?, "revision")?,
    })
}

fn message_from_row(row: &SqliteRow) -> Result<Message, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a message row could not be read", e);
    let id: String = row.try_get("id").map_err(decode)?;
    let role: String = row.try_get("role").map_err(decode)?;
    let parts: String = row.try_get("parts").map_err(decode)?;
    Ok(Message {
        id: MessageId(parse_uuid(&id)?),
        role: role_from_str(&role)?,
        parts: parts_from_json(&parts)?,
        created_at: from_micros(row.try_get("created_at").map_err(decode)?)?,
    })
}

fn usage_from_row(row: &SqliteRow) -> Result<UsageRecord, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a usage row could not be read", e);
    let session_id: Option<String> = row.try_get("session_id").map_err(decode)?;
    let tokens = |column: &str| -> Result<Option<u64>, StoreError> {
        opt_from_i64(row.try_get(column).map_err(decode)?, column)
    };
    Ok(UsageRecord {
        at: from_micros(row.try_get("at").map_err(decode)?)?,
        session_id: session_id.as_deref().map(parse_uuid).transpose()?.map(SessionId),
        agent: row.try_get("agent").map_err(decode)?,
        provider: row.try_get("provider").map_err(decode)?,
        model: row.try_get("model").map_err(decode)?,
        usage: Usage {
            input_tokens: tokens("input_tokens")?,
            output_tokens: tokens("output_tokens")?,
            cache_read_tokens: tokens("cache_read_tokens")?,
            cache_write_tokens: tokens("cache_write_tokens")?,
        },
        latency_ms: from_i64(row.try_get("latency_ms").map_err(decode)?, "latency_ms")?,
        ttft_ms: tokens("ttft_ms")?,
        cost_usd: row.try_get("cost_usd").map_err(decode)?,
        estimated: row.try_get("estimated").map_err(decode)?,
        purpose: crate::codec::purpose_from_column(row.try_get("purpose").map_err(decode)?)?,
    })
}

fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|e| StoreError::corrupt_from(format!("stored id {text:?} is not a UUID"), e))
}

/// Appends one usage record on `conn`.
/// Inserts `records` (a chunk [`usage_chunks`] made, or one record) with one statement.
async fn insert_usage(conn: &mut SqliteConnection, records: &[UsageRecord]) -> Result<(), StoreError> {
    let mut args = sqlx::sqlite::SqliteArguments::default();
    for record in records {
        bind_usage(&mut args, record)?;
    }
    sqlx::query_with(sqlx::AssertSqlSafe(usage_insert_sql(records.len())), args)
        .execute(conn)
        .await
        .map_err(|e| query_error("could not record usage", e))?;
    Ok(())
}

/// The start of every `INSERT` into the usage table; the values follow in this column order.
const USAGE_INSERT: &str = "INSERT INTO usage (at, session_id, agent, provider, model, input_tokens, \
     output_tokens, cache_read_tokens, cache_write_tokens, latency_ms, ttft_ms, cost_usd, estimated, purpose) ";

/// Appends one `INSERT` of all of `usage` to `query`.
fn push_usage_insert(
    query: &mut sqlx::QueryBuilder<sqlx::Sqlite>,
    usage: &[UsageRecord],
) -> Result<(), StoreError> {
    let rows = usage
        .iter()
        .map(|record| {
            let tokens = &record.usage;
            Ok((
                record,
                [
                    opt_to_i64(tokens.input_tokens, "input_tokens")?,
                    opt_to_i64(tokens.output_tokens, "output_tokens")?,
                    opt_to_i64(tokens.cache_read_tokens, "cache_read_tokens")?,
                    opt_to_i64(tokens.cache_write_tokens, "cache_write_tokens")?,
                ],
                to_i64(record.latency_ms, "latency_ms")?,
                opt_to_i64(record.ttft_ms, "ttft_ms")?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    query.push(USAGE_INSERT);
    query.push_values(rows, |mut row, (record, tokens, latency_ms, ttft_ms)| {
        row.push_bind(to_micros(record.at)).push_bind(record.session_id.map(|id| id.to_string()));
        row.push_bind(&record.agent).push_bind(&record.provider).push_bind(&record.model);
        for count in tokens {
            row.push_bind(count);
        }
        row.push_bind(latency_ms).push_bind(ttft_ms).push_bind(record.cost_usd).push_bind(record.estimated);
        row.push_bind(crate::codec::purpose_column(record.purpose));
    });
    Ok(())
}

/// Usage records per statement in [`UsageStore::record_usage_batch`] (14 values each, well under
/// SQLite's 32,766 bound parameters). A batch goes out in statements of this many rows and the
/// rest in powers of two, so only seven statement texts ever occur, each built once and prepared
/// once by sqlx (which caches statements by text).
const USAGE_ROWS_PER_INSERT: usize = 64;

/// `records` in the chunks [`USAGE_ROWS_PER_INSERT`] describes.
fn usage_chunks(records: &[UsageRecord]) -> impl Iterator<Item = &[UsageRecord]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let rows =
            if rest.len() >= USAGE_ROWS_PER_INSERT { USAGE_ROWS_PER_INSERT } else { 1 << rest.len().ilog2() };
        let (chunk, tail) = rest.split_at(rows);
        rest = tail;
        Some(chunk)
    })
}

/// The `INSERT` of `rows` usage records, for the chunk sizes [`usage_chunks`] makes.
fn usage_insert_sql(rows: usize) -> Arc<str> {
    fn build(rows: usize) -> Arc<str> {
        let row = format!("({})", ["?"; 14].join(", "));
        let values = vec![row; rows].join(", ");
        format!("{USAGE_INSERT}VALUES {values}").into()
    }
    static TEXTS: std::sync::OnceLock<Vec<Arc<str>>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| (0..=USAGE_ROWS_PER_INSERT.ilog2()).map(|k| build(1 << k)).collect());
    match texts.get(rows.trailing_zeros() as usize) {
        Some(text) if rows.is_power_of_two() => Arc::clone(text),
        _ => build(rows),
    }
}

/// Binds one usage record's 14 values, in [`usage_insert_sql`]'s column order.
fn bind_usage(args: &mut sqlx::sqlite::SqliteArguments, record: &UsageRecord) -> Result<(), StoreError> {
    use sqlx::Arguments;
    let tokens = &record.usage;
    let failed = |e: sqlx::error::BoxDynError| StoreError::database_from("could not record usage", e);
    args.add(to_micros(record.at)).map_err(failed)?;
    args.add(record.session_id.map(|id| id.to_string())).map_err(failed)?;
    for text in [&record.agent, &record.provider, &record.model] {
        args.add(text.as_str()).map_err(failed)?;
    }
    for (count, what) in [
        (tokens.input_tokens, "input_tokens"),
        (tokens.output_tokens, "output_tokens"),
        (tokens.cache_read_tokens, "cache_read_tokens"),
        (tokens.cache_write_tokens, "cache_write_tokens"),
    ] {
        args.add(opt_to_i64(count, what)?).map_err(failed)?;
    }
    args.add(to_i64(record.latency_ms, "latency_ms")?).map_err(failed)?;
    args.add(opt_to_i64(record.ttft_ms, "ttft_ms")?).map_err(failed)?;
    args.add(record.cost_usd).map_err(failed)?;
    args.add(record.estimated).map_err(failed)?;
    args.add(crate::codec::purpose_column(record.purpose)).map_err(failed)?;
    Ok(())
}

/// A message ready to insert: id, role, parts as JSON, creation time.
type MessageRow = (String, &'static str, String, DateTime<Utc>);

/// The statements of one turn's commit, as one query: the session's `UPDATE` (its time, model and
/// revision; first, so its row count says whether the session exists), one `INSERT` numbering all
/// of the turn's messages after the session's last one, one `INSERT` of its usage records, and the
/// `DELETE` of the turn's run checkpoint.
///
/// Several statements in one query is an SQLite-only feature of sqlx that sqlx 0.9 deprecates in
/// favour of `raw_sql` (which cannot bind values); it is kept because it saves two round trips
/// per commit, and the store's tests cover it (the workspace pins sqlx 0.9).
fn commit_batch(
    session: &str,
    at: i64,
    model: Option<&str>,
    messages: Vec<MessageRow>,
    usage: &[UsageRecord],
) -> Result<sqlx::QueryBuilder<sqlx::Sqlite>, StoreError> {
    let mut batch =
        sqlx::QueryBuilder::<sqlx::Sqlite>::new("UPDATE sessions SET updated_at = MAX(updated_at, ");
    batch
        .push_bind(at)
        .push("), model = COALESCE(")
        .push_bind(model)
        .push(", model), revision = revision + 1 WHERE id = ");
    batch.push_bind(session).push(";\n");
    if !messages.is_empty() {
        batch.push("INSERT INTO messages (id, session_id, seq, role, parts, created_at) SELECT v.column1, ");
        batch.push_bind(session);
        batch.push(
            ", base.last + v.column2, v.column3, v.column4, v.column5 \
             FROM (SELECT COALESCE(MAX(seq), 0) AS last FROM messages WHERE session_id = ",
        );
        batch.push_bind(session);
        batch.push(") AS base, (");
        batch.push_values(
            (1_i64..).zip(messages),
            |mut row, (offset, (message_id, role, parts, created_at))| {
                row.push_bind(message_id)
                    .push_bind(offset)
                    .push_bind(role)
                    .push_bind(parts)
                    .push_bind(to_micros(created_at));
            },
        );
        batch.push(") AS v;\n");
    }
    if !usage.is_empty() {
        push_usage_insert(&mut batch, usage)?;
        batch.push(";\n");
    }
    batch.push("DELETE FROM runs WHERE session_id = ").push_bind(session).push(";\n");
    Ok(batch)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, new: NewSession) -> Result<SessionInfo, StoreError> {
        let id = new.id.unwrap_or_default();
        let at = now();
        let key = new.key.as_ref();
        sqlx::query(sql::INSERT_SESSION)
            .bind(id.to_string())
            .bind(key.map(|k| k.agent.as_str()))
            .bind(key.map(|k| k.channel.as_str()))
            .bind(key.map(|k| k.account.as_str()))
            .bind(key.map(|k| k.peer.as_str()))
            .bind(new.title.as_deref())
            .bind(new.model.as_deref())
            .bind(to_micros(at))
            .execute(&self.writer)
            .await
            .map_err(|e| query_error("could not create the session", e))?;
        Ok(SessionInfo {
            id,
            key: new.key,
            title: new.title,
            model: new.model,
            created_at: at,
            updated_at: at,
            message_count: 0,
            interrupted: false,
            revision: 0,
        })
    }

    async fn session(&self, id: SessionId) -> Result<Option<SessionInfo>, StoreError> {
        sqlx::query(sql::SESSION_BY_ID)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| query_error("could not read the session", e))?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn session_by_key(&self, key: &SessionKey) -> Result<Option<SessionInfo>, StoreError> {
        sqlx::query(sql::SESSION_BY_KEY)
            .bind(&key.agent)
            .bind(&key.channel)
            .bind(&key.account)
            .bind(&key.peer)
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| query_error("could not look up the session by key", e))?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        sqlx::query(sql::LIST_SESSIONS)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not list sessions", e))?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn messages(&self, id: SessionId) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(sql::MESSAGES)
            .bind(id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not read the session's messages", e))?;
        if rows.is_empty() && !self.session_exists(id).await? {
            return Err(StoreError::SessionNotFound(id));
        }
        rows.iter().map(message_from_row).collect()
    }

    async fn commit_turn(
        &self,
        id: SessionId,
        messages: &[Message],
        usage: &[UsageRecord],
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        // Everything that can fail without the database fails before the write lock is taken.
        let rows = messages
            .iter()
            .map(|m| Ok((m.id.to_string(), role_to_str(m.role), parts_to_json(&m.parts)?, m.created_at)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let session = id.to_string();
        let failed = |e| query_error(&format!("could not commit the turn to session {id}"), e);

        // The session update and every insert go as one batch of statements: each call is a round
        // trip to sqlx's connection thread (≈ 80 µs here), the larger part of a commit's cost, so
        // a commit is three of them (BEGIN, the batch, COMMIT) however long the turn.
        let mut batch = commit_batch(&session, to_micros(now()), model, rows, usage)?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        {
            // Statement results arrive in order; the first is the session's UPDATE.
            #[allow(deprecated)] // see `commit_batch`
            let mut results = batch.build().fetch_many(&mut *tx);
            let mut first = true;
            while let Some(result) = results.next().await {
                let Either::Left(done) = result.map_err(failed)? else { continue };
                if std::mem::take(&mut first) && done.rows_affected() == 0 {
                    // Dropping the transaction rolls it back.
                    return Err(StoreError::SessionNotFound(id));
                }
            }
        }
        tx.commit().await.map_err(failed)?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(())
    }

    async fn clear_session(&self, id: SessionId) -> Result<(), StoreError> {
        let failed = |e| query_error(&format!("could not clear session {id}"), e);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let updated = sqlx::query(sql::CLEARED_SESSION)
            .bind(to_micros(now()))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::SessionNotFound(id));
        }
        for delete in [sql::DELETE_MESSAGES, sql::DELETE_RUN] {
            sqlx::query(delete).bind(id.to_string()).execute(&mut *tx).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn delete_session(&self, id: SessionId) -> Result<bool, StoreError> {
        let failed = |e| query_error(&format!("could not delete session {id}"), e);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        // Usage stays in the ledger, detached from the session.
        sqlx::query(sql::DETACH_USAGE).bind(id.to_string()).execute(&mut *tx).await.map_err(failed)?;
        // Messages and the run go with the session (ON DELETE CASCADE).
        let deleted =
            sqlx::query(sql::DELETE_SESSION).bind(id.to_string()).execute(&mut *tx).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(deleted.rows_affected() > 0)
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn record_usage(&self, record: &UsageRecord) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await.map_err(|e| query_error("could not record usage", e))?;
        insert_usage(&mut conn, std::slice::from_ref(record)).await
    }

    async fn record_usage_batch(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let failed = |e| query_error("could not record usage", e);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        for chunk in usage_chunks(records) {
            insert_usage(&mut tx, chunk).await?;
        }
        tx.commit().await.map_err(failed)?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(())
    }

    async fn usage_since(&self, since: DateTime<Utc>) -> Result<Vec<UsageRecord>, StoreError> {
        sqlx::query(sql::USAGE_SINCE)
            .bind(to_micros(since))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not read usage", e))?
            .iter()
            .map(usage_from_row)
            .collect()
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn save_run(&self, session: SessionId, run: &Run) -> Result<(), StoreError> {
        let json = run_to_json(session, run)?;
        // One statement in autocommit: one round trip to the connection's thread, and the write
        // lock is taken by the statement itself (no read first, so no lock upgrade to wait for).
        sqlx::query(sql::upsert_run!("$2"))
            .bind(session.to_string())
            .bind(json)
            .bind(to_micros(now()))
            .execute(&self.writer)
            .await
            .map_err(|e| {
                write_error(session, &format!("could not save the turn in progress in session {session}"), e)
            })?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(())
    }

    async fn interrupted_run(&self, session: SessionId) -> Result<Option<Run>, StoreError> {
        let json: Option<String> = sqlx::query_scalar(sql::RUN)
            .bind(session.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| {
                query_error(&format!("could not read the interrupted turn of session {session}"), e)
            })?;
        json.map(|json| run_from_json(session, &json)).transpose()
    }

    async fn interrupted_sessions(&self) -> Result<Vec<SessionId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(sql::INTERRUPTED_SESSIONS)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not list the interrupted turns", e))?;
        ids.iter().map(|id| parse_uuid(id).map(SessionId)).collect()
    }

    async fn discard_run(&self, session: SessionId) -> Result<(), StoreError> {
        sqlx::query(sql::DELETE_RUN).bind(session.to_string()).execute(&self.writer).await.map_err(|e| {
            query_error(&format!("could not discard the turn in progress in session {session}"), e)
        })?;
        Ok(())
    }
}

#[async_trait]
impl SessionLocks for SqliteStore {
    async fn lock_session(&self, session: SessionId, wait: bool) -> Result<SessionLease, StoreError> {
        self.locks.lock(session, wait).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory_url("sqlite::memory:"));
        assert!(is_memory_url("sqlite://:memory:"));
        assert!(is_memory_url("sqlite://whatever?mode=memory"));
        assert!(!is_memory_url("sqlite://data/exoclaw.db"));
        assert!(!is_memory_url("sqlite:exoclaw.db?mode=rwc"));
    }

    #[test]
    fn usage_batches_split_into_a_few_reusable_statement_sizes() {
        let record = UsageRecord {
            at: Utc::now(),
            session_id: None,
            agent: "a".into(),
            provider: "p".into(),
            model: "m".into(),
            usage: exoclaw_types::Usage::default(),
            latency_ms: 1,
            ttft_ms: None,
            cost_usd: None,
            estimated: false,
            purpose: exoclaw_types::CallPurpose::Answer,
        };
        let sizes = |n: usize| usage_chunks(&vec![record.clone(); n]).map(<[_]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(200), vec![64, 64, 64, 8]);
        assert_eq!(sizes(127), vec![64, 32, 16, 8, 4, 2, 1]);
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let versions: Vec<i64> = files.iter().map(|name| name[..4].parse().unwrap()).collect();
        let embedded: Vec<i64> = migrator().iter().map(|m| m.version).collect();
        assert_eq!(embedded, versions);
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    }
}
