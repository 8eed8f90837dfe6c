//! The PostgreSQL backend: the same traits on a shared server, for several exoclaw nodes.
//!
//! `commit_turn` locks the session's row first (`UPDATE sessions …`), so turns committed to the
//! same session from several nodes at once queue up and each continues the sequence where the
//! previous one ended. Session locks (whole turns, across processes and nodes) are advisory locks:
//! see `postgres/lock.rs`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_core::{NewSession, Run, RunStore, SessionStore, StoreError, UsageStore};
use exoclaw_types::{Message, MessageId, SessionId, SessionInfo, SessionKey, Usage, UsageRecord};
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row, SqlSafeStr};
use std::str::FromStr;
use uuid::Uuid;

mod audit;
mod health;
mod keys;
mod lock;
mod memory;

use crate::codec::{
    from_i64, key_from_columns, now, opt_from_i64, opt_to_i64, parts_from_json, parts_to_json, query_error,
    role_from_str, role_to_str, run_from_json, run_to_json, to_i64, write_error,
};
use crate::memory_vectors::VectorCache;
use crate::redact::{open_error, redact_url, scrub};
use crate::sql;

/// Connections per node; the server's default limit is 100 for all clients together.
const CONNECTIONS: u32 = 8;

/// How long opening waits for the server before saying it cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, one migration per file in `migrations/postgres`, embedded in the binary.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("api_keys"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0002_api_keys.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("runs"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0003_runs.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("provider_health"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0004_provider_health.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("session_revision"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0005_session_revision.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("memory"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0006_memory.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("audit"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0007_audit.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("channel_health"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0008_channel_health.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("memory_refused"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0009_memory_refused.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("usage_purpose"),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0010_usage_purpose.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Sessions, messages and usage in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The URL with its password masked, for messages.
    location: String,
    /// Lock connections of this process being released (see `postgres/lock.rs`).
    releasing: lock::Releasing,
    /// The owners' embeddings, for `search_embedding` (see `memory_vectors.rs`).
    vectors: Arc<VectorCache>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and brings
    /// its schema up to date. The database must exist; its tables are created on first use.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let options = Self::options(url)?;
        let failed = |e: sqlx::Error| open_error(&open_advice(&location, &e), url, e);
        // One plain connection first: the pool retries failed connections until its timeout and
        // then reports only that it timed out, hiding "connection refused" or a missing database.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| failed(sqlx::Error::PoolTimedOut))?
            .map_err(failed)?;
        probe.close().await.map_err(failed)?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(failed)?;
        migrator().run(&pool).await.map_err(|e| migrate_error(&location, url, e))?;
        tracing::debug!(url = %location, "opened the PostgreSQL store");
        Ok(Self { pool, location, releasing: lock::Releasing::default(), vectors: Arc::default() })
    }

    /// The connection options `url` names; a malformed URL is an error that says the form.
    pub(crate) fn options(url: &str) -> Result<PgConnectOptions, StoreError> {
        PgConnectOptions::from_str(url).map_err(|e| {
            open_error(
                &format!(
                    "storage URL {} is not a valid PostgreSQL URL; the form is \
                     postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    redact_url(url)
                ),
                url,
                e,
            )
        })
    }

    /// The database URL, with any password masked.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection. Calls after this fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn session_exists(&self, id: SessionId) -> Result<bool, StoreError> {
        let found: Option<i32> = sqlx::query_scalar(sql::SESSION_EXISTS)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| query_error("could not look up the session", e))?;
        Ok(found.is_some())
    }
}

/// A migration failure, for a person.
fn migrate_error(location: &str, url: &str, error: MigrateError) -> StoreError {
    let message = match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            return open_error(&open_advice(location, &e), url, e);
        }
        MigrateError::VersionMissing(version) | MigrateError::VersionTooNew(version, _) => format!(
            "the database at {location} was written by a newer exoclaw (it has schema version \
             {version}, which this exoclaw does not know); upgrade exoclaw, or point storage.url at \
             another database"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "schema version {version} of the database at {location} differs from this exoclaw's; it \
             was created by a different build of exoclaw. Use that build, or point storage.url at \
             another database"
        ),
        other => return open_error(&format!("could not prepare the database at {location}"), url, other),
    };
    StoreError::open(scrub(&message, url))
}

/// What went wrong connecting, and what to do about it; the error itself becomes the source.
fn open_advice(location: &str, error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(_) => format!(
            "could not reach PostgreSQL at {location}; check that the server is running and \
             that the host and port in storage.url are right"
        ),
        sqlx::Error::PoolTimedOut => format!(
            "PostgreSQL at {location} did not answer within {} s; check that the server is running \
             and reachable",
            CONNECT_TIMEOUT.as_secs()
        ),
        sqlx::Error::Tls(_) => format!(
            "PostgreSQL at {location} needs TLS, which this exoclaw is built without; use it on \
             a trusted network with sslmode=disable or sslmode=prefer"
        ),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!(
                "the database in {location} does not exist; create it (createdb NAME, or CREATE \
                 DATABASE) or fix storage.url"
            ),
            Some("28P01" | "28000") => format!(
                "PostgreSQL at {location} refused the login; check the user and password in \
                 storage.url"
            ),
            Some("42501") => format!(
                "the user in {location} may not create exoclaw's tables; grant it CREATE on the \
                 database, or let an administrator run exoclaw once"
            ),
            _ => format!("could not open the database at {location}"),
        },
        _ => format!("could not open the database at {location}"),
    }
}

fn session_from_row(row: &PgRow) -> Result<SessionInfo, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a session row could not be read", e);
    Ok(SessionInfo {
        id: SessionId(row.try_get("id").map_err(decode)?),
        key: key_from_columns(
            row.try_get("agent").map_err(decode)?,
            row.try_get("channel").map_err(decode)?,
            row.try_get("account").map_err(decode)?,
            row.try_get("peer").map_err(decode)?,
        )?,
        title: row.try_get("title").map_err(decode)?,
        model: row.try_get("model").map_err(decode)?,
        created_at: row.try_get("created_at").map_err(decode)?,
        updated_at: row.try_get("updated_at").map_err(decode)?,
        message_count: from_i64(row.try_get("message_count").map_err(decode)?, "message count")?,
        interrupted: row.try_get("interrupted").map_err(decode)?,
        revision: from_i64(row.try_get("revision").map_err(decode)?, "revision")?,
    })
}

fn message_from_row(row: &PgRow) -> Result<Message, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a message row could not be read", e);
    let role: String = row.try_get("role").map_err(decode)?;
    let parts: String = row.try_get("parts").map_err(decode)?;
    Ok(Message {
        id: MessageId(row.try_get::<Uuid, _>("id").map_err(decode)?),
        role: role_from_str(&role)?,
        parts: parts_from_json(&parts)?,
        created_at: row.try_get("created_at").map_err(decode)?,
    })
}

fn usage_from_row(row: &PgRow) -> Result<UsageRecord, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a usage row could not be read", e);
    let count = |column: &str| -> Result<Option<u64>, StoreError> {
        opt_from_i64(row.try_get(column).map_err(decode)?, column)
    };
    Ok(UsageRecord {
        at: row.try_get("at").map_err(decode)?,
        session_id: row.try_get::<Option<Uuid>, _>("session_id").map_err(decode)?.map(SessionId),
        agent: row.try_get("agent").map_err(decode)?,
        provider: row.try_get("provider").map_err(decode)?,
        model: row.try_get("model").map_err(decode)?,
        usage: Usage {
            input_tokens: count("input_tokens")?,
            output_tokens: count("output_tokens")?,
            cache_read_tokens: count("cache_read_tokens")?,
            cache_write_tokens: count("cache_write_tokens")?,
        },
        latency_ms: from_i64(row.try_get("latency_ms").map_err(decode)?, "latency_ms")?,
        ttft_ms: count("ttft_ms")?,
        cost_usd: row.try_get("cost_usd").map_err(decode)?,
        estimated: row.try_get("estimated").map_err(decode)?,
        purpose: crate::codec::purpose_from_column(row.try_get("purpose").map_err(decode)?)?,
    })
}

/// Appends one usage record on `conn`.
async fn insert_usage(conn: &mut PgConnection, record: &UsageRecord) -> Result<(), StoreError> {
    let usage = &record.usage;
    sqlx::query(
        "INSERT INTO usage (at, session_id, agent, provider, model, input_tokens, output_tokens, \
         cache_read_tokens, cache_write_tokens, latency_ms, ttft_ms, cost_usd, estimated, purpose) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(record.at)
    .bind(record.session_id.map(|id| id.0))
    .bind(&record.agent)
    .bind(&record.provider)
    .bind(&record.model)
    .bind(opt_to_i64(usage.input_tokens, "input_tokens")?)
    .bind(opt_to_i64(usage.output_tokens, "output_tokens")?)
    .bind(opt_to_i64(usage.cache_read_tokens, "cache_read_tokens")?)
    .bind(opt_to_i64(usage.cache_write_tokens, "cache_write_tokens")?)
    .bind(to_i64(record.latency_ms, "latency_ms")?)
    .bind(opt_to_i64(record.ttft_ms, "ttft_ms")?)
    .bind(record.cost_usd)
    .bind(record.estimated)
    .bind(crate::codec::purpose_column(record.purpose))
    .execute(conn)
    .await
    .map_err(|e| query_error("could not record usage", e))?;
    Ok(())
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, new: NewSession) -> Result<SessionInfo, StoreError> {
        let id = new.id.unwrap_or_default();
        let at = now();
        let key = new.key.as_ref();
        sqlx::query(sql::INSERT_SESSION)
            .bind(id.0)
            .bind(key.map(|k| k.agent.as_str()))
            .bind(key.map(|k| k.channel.as_str()))
            .bind(key.map(|k| k.account.as_str()))
            .bind(key.map(|k| k.peer.as_str()))
            .bind(new.title.as_deref())
            .bind(new.model.as_deref())
            .bind(at)
            .execute(&self.pool)
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
            .bind(id.0)
            .fetch_optional(&self.pool)
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
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| query_error("could not look up the session by key", e))?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        sqlx::query(sql::LIST_SESSIONS)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not list sessions", e))?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn messages(&self, id: SessionId) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(sql::MESSAGES)
            .bind(id.0)
            .fetch_all(&self.pool)
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
        let rows = messages
            .iter()
            .map(|m| Ok((m.id.0, role_to_str(m.role), parts_to_json(&m.parts)?, m.created_at)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let failed = |e| query_error(&format!("could not commit the turn to session {id}"), e);

        let mut tx = self.pool.begin().await.map_err(failed)?;
        // Locks the session's row until commit: concurrent turns on one session queue here.
        let updated = sqlx::query(
            "UPDATE sessions SET updated_at = GREATEST(updated_at, $1), model = COALESCE($2, model), \
             revision = revision + 1 WHERE id = $3",
        )
        .bind(now())
        .bind(model)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::SessionNotFound(id));
        }
        let last: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = $1")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
        for (seq, (message_id, role, parts, created_at)) in (last + 1..).zip(rows) {
            // The parts travel as text and are stored as `json`, byte for byte.
            sqlx::query(
                "INSERT INTO messages (id, session_id, seq, role, parts, created_at) \
                 VALUES ($1, $2, $3, $4, $5::json, $6)",
            )
            .bind(message_id)
            .bind(id.0)
            .bind(seq)
            .bind(role)
            .bind(parts)
            .bind(created_at)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        for record in usage {
            insert_usage(&mut tx, record).await?;
        }
        // The turn is stored: it is no longer in progress.
        sqlx::query(sql::DELETE_RUN).bind(id.0).execute(&mut *tx).await.map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    async fn clear_session(&self, id: SessionId) -> Result<(), StoreError> {
        let failed = |e| query_error(&format!("could not clear session {id}"), e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let updated = sqlx::query(sql::CLEARED_SESSION)
            .bind(now())
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::SessionNotFound(id));
        }
        for delete in [sql::DELETE_MESSAGES, sql::DELETE_RUN] {
            sqlx::query(delete).bind(id.0).execute(&mut *tx).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn delete_session(&self, id: SessionId) -> Result<bool, StoreError> {
        let failed = |e| query_error(&format!("could not delete session {id}"), e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        // Usage stays in the ledger, detached from the session.
        sqlx::query(sql::DETACH_USAGE).bind(id.0).execute(&mut *tx).await.map_err(failed)?;
        // Messages and the run go with the session (ON DELETE CASCADE).
        let deleted = sqlx::query(sql::DELETE_SESSION).bind(id.0).execute(&mut *tx).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(deleted.rows_affected() > 0)
    }
}

#[async_trait]
impl UsageStore for PgStore {
    async fn record_usage(&self, record: &UsageRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| query_error("could not record usage", e))?;
        insert_usage(&mut conn, record).await
    }

    async fn record_usage_batch(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| query_error("could not record usage", e))?;
        for record in records {
            insert_usage(&mut tx, record).await?;
        }
        tx.commit().await.map_err(|e| query_error("could not record usage", e))
    }

    async fn usage_since(&self, since: DateTime<Utc>) -> Result<Vec<UsageRecord>, StoreError> {
        sqlx::query(sql::USAGE_SINCE)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not read usage", e))?
            .iter()
            .map(usage_from_row)
            .collect()
    }
}

#[async_trait]
impl RunStore for PgStore {
    async fn save_run(&self, session: SessionId, run: &Run) -> Result<(), StoreError> {
        let json = run_to_json(session, run)?;
        // The run travels as text and is stored as `json`, byte for byte.
        sqlx::query(sql::upsert_run!("$2::json"))
            .bind(session.0)
            .bind(json)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                write_error(session, &format!("could not save the turn in progress in session {session}"), e)
            })?;
        Ok(())
    }

    async fn interrupted_run(&self, session: SessionId) -> Result<Option<Run>, StoreError> {
        let json: Option<String> =
            sqlx::query_scalar(sql::RUN).bind(session.0).fetch_optional(&self.pool).await.map_err(|e| {
                query_error(&format!("could not read the interrupted turn of session {session}"), e)
            })?;
        json.map(|json| run_from_json(session, &json)).transpose()
    }

    async fn interrupted_sessions(&self) -> Result<Vec<SessionId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(sql::INTERRUPTED_SESSIONS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not list the interrupted turns", e))?;
        Ok(ids.into_iter().map(SessionId).collect())
    }

    async fn discard_run(&self, session: SessionId) -> Result<(), StoreError> {
        sqlx::query(sql::DELETE_RUN).bind(session.0).execute(&self.pool).await.map_err(|e| {
            query_error(&format!("could not discard the turn in progress in session {session}"), e)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
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
