//! Session locks in PostgreSQL: a session-level advisory lock, keyed by the session id, on a
//! connection of the lease's own.
//!
//! The connection is opened for the lease, not taken from the store's pool: a gateway running more
//! turns at once than the pool has connections would otherwise starve its own commits. The server
//! releases a session-level advisory lock when its connection ends, so a process that dies (its
//! kernel closes the socket) leaves nothing locked; TCP keepalives on the server side end the
//! connection of a host that vanished. A waiter that gives up (its future dropped) closes its
//! connection, and `client_connection_check_interval` (PostgreSQL 14 and later) makes the server
//! notice that while it still waits.
//!
//! Dropping a lease unlocks and closes the connection on a spawned task, so that it never blocks
//! the runtime. Until that task has unlocked, the lock looks held; a process that asks for it
//! without waiting in that moment waits for its own lease's release instead of being refused (the
//! `releasing` set of backend pids says which holders are such leases).
//!
//! Who holds a lock is in the `session_locks` table, written by the holder once it has the lock
//! and counted only while the backend it names holds the advisory lock (`pg_locks`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use exoclaw_core::{SessionLease, SessionLocks, StoreError};
use exoclaw_types::SessionId;
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection};

use super::PgStore;
use crate::codec::{now, query_error};
use crate::lock::holder_description;

/// Backend pids of lock connections of this process whose leases were dropped and are being
/// released.
pub(super) type Releasing = Arc<Mutex<HashSet<i32>>>;

/// How often a refused no-wait lock looks again when the lock was let go between its try and its
/// look at the holder.
const TRIES: usize = 3;

/// The advisory lock key of a session: the two halves of its UUID folded into 64 bits. Two
/// sessions with the same key (about one chance in 2^64) would only wait for each other.
fn advisory_key(session: SessionId) -> i64 {
    let (high, low) = session.0.as_u64_pair();
    i64::from_ne_bytes((high ^ low).to_ne_bytes())
}

/// How `pg_locks` shows a `bigint` advisory key: its high and low halves as `classid` and `objid`.
fn key_halves(key: i64) -> (i64, i64) {
    let bits = u64::from_ne_bytes(key.to_ne_bytes());
    (i64::from((bits >> 32) as u32), i64::from(bits as u32))
}

/// A held advisory lock and its connection.
struct PgLease {
    conn: Option<PgConnection>,
    session: SessionId,
    key: i64,
    backend_pid: i32,
    releasing: Releasing,
}

impl Drop for PgLease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to unlock on: closing the socket ends the server's backend, which
            // releases the lock.
            drop(conn);
            return;
        };
        let (session, key, backend_pid) = (self.session, self.key, self.backend_pid);
        let releasing = Arc::clone(&self.releasing);
        releasing.lock().unwrap_or_else(PoisonError::into_inner).insert(backend_pid);
        runtime.spawn(async move {
            let unlocked = sqlx::query(
                "WITH gone AS (DELETE FROM session_locks WHERE session_id = $1 AND backend_pid = \
                 pg_backend_pid()) SELECT pg_advisory_unlock($2)",
            )
            .bind(session.0)
            .bind(key)
            .execute(&mut conn)
            .await;
            if let Err(e) = unlocked {
                // The connection is broken, so the server has ended (or is ending) the backend.
                tracing::debug!(%session, error = %e, "could not unlock the session; closing its connection");
            }
            releasing.lock().unwrap_or_else(PoisonError::into_inner).remove(&backend_pid);
            let _ = conn.close().await;
        });
    }
}

impl PgStore {
    /// A new connection for a lock, outside the pool.
    async fn lock_connection(&self, session: SessionId) -> Result<PgConnection, StoreError> {
        let options = (*self.pool.connect_options())
            .clone()
            .application_name("exoclaw session lock")
            // The server's keepalives end the connection (and the lock) of a host that vanished
            // within about a minute.
            .options([
                ("tcp_keepalives_idle", "30"),
                ("tcp_keepalives_interval", "10"),
                ("tcp_keepalives_count", "3"),
            ]);
        options
            .connect()
            .await
            .map_err(|e| query_error(&format!("could not connect to lock session {session}"), e))
    }

    /// Who holds `key` (through `conn`): the holder's description, and whether it is a lease of
    /// this process being released; `None` when nobody holds it.
    async fn holder(
        &self,
        conn: &mut PgConnection,
        session: SessionId,
        key: i64,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let (class, object) = key_halves(key);
        let row: Option<(i32, Option<String>)> = sqlx::query_as(
            "SELECT l.pid, h.holder FROM pg_locks l \
             LEFT JOIN session_locks h ON h.session_id = $3 AND h.backend_pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.classid::bigint = $1 AND l.objid::bigint = $2",
        )
        .bind(class)
        .bind(object)
        .bind(session.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| query_error(&format!("could not find who holds session {session}"), e))?;
        Ok(row.map(|(pid, holder)| {
            let releasing = self.releasing.lock().unwrap_or_else(PoisonError::into_inner).contains(&pid);
            let holder = holder.unwrap_or_else(|| {
                format!("another process (PostgreSQL backend pid {pid}, which left no details)")
            });
            (holder, releasing)
        }))
    }
}

#[async_trait]
impl SessionLocks for PgStore {
    async fn lock_session(&self, session: SessionId, wait: bool) -> Result<SessionLease, StoreError> {
        let key = advisory_key(session);
        let failed = |e| query_error(&format!("could not lock session {session}"), e);
        let mut conn = self.lock_connection(session).await?;
        let mut wait = wait;
        if !wait {
            let mut tries = 0;
            loop {
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(failed)?;
                if locked {
                    break;
                }
                tries += 1;
                match self.holder(&mut conn, session, key).await? {
                    // One of this process's leases, dropped and being released: not a turn.
                    Some((_, true)) => {
                        wait = true;
                        break;
                    }
                    Some((holder, false)) => {
                        let _ = conn.close().await;
                        return Err(StoreError::SessionLocked { session, holder });
                    }
                    // Let go between the try and the look.
                    None if tries < TRIES => {}
                    None => {
                        let _ = conn.close().await;
                        let holder = "other processes, taking it in turn".to_owned();
                        return Err(StoreError::SessionLocked { session, holder });
                    }
                }
            }
        }
        if wait {
            // PostgreSQL 14 and later notice a waiter whose connection closed (its future was
            // dropped) while it waits; older servers reject the setting, which changes nothing.
            let _ = sqlx::query("SET client_connection_check_interval = 1000").execute(&mut conn).await;
            sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut conn).await.map_err(failed)?;
        }
        let backend_pid: i32 = sqlx::query_scalar(
            "INSERT INTO session_locks (session_id, backend_pid, holder, since) \
             VALUES ($1, pg_backend_pid(), $2, $3) \
             ON CONFLICT (session_id) DO UPDATE SET backend_pid = excluded.backend_pid, \
             holder = excluded.holder, since = excluded.since \
             RETURNING backend_pid",
        )
        .bind(session.0)
        .bind(holder_description())
        .bind(now())
        .fetch_one(&mut conn)
        .await
        .map_err(failed)?;
        let releasing = Arc::clone(&self.releasing);
        Ok(SessionLease::new(session, PgLease { conn: Some(conn), session, key, backend_pid, releasing }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_the_halves_pg_locks_shows() {
        assert_eq!(key_halves(1), (0, 1));
        assert_eq!(key_halves(-1), (0xffff_ffff, 0xffff_ffff));
        assert_eq!(key_halves(0x0123_4567_89ab_cdef), (0x0123_4567, 0x89ab_cdef));
        let session = SessionId::new();
        assert_eq!(advisory_key(session), advisory_key(session));
        assert_ne!(advisory_key(session), advisory_key(SessionId::new()));
    }
}
