//! The audit log in PostgreSQL.

use super::PgStore;
use crate::codec::query_error;
use crate::sql;
use async_trait::async_trait;
use exoclaw_core::{AuditEntry, AuditLog, AuditQuery, StoreError};

#[async_trait]
impl AuditLog for PgStore {
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let failed = |e| query_error("could not write the audit log", e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        for entry in entries {
            // The entry travels as text and is stored as `json`, byte for byte.
            sqlx::query(sql::insert_audit!("$5::json"))
                .bind(entry.at)
                .bind(entry.session_id.map(|s| s.0))
                .bind(&entry.tool)
                .bind(entry.event.kind())
                .bind(crate::codec::audit_to_json(entry)?)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(sql::AUDIT_ENTRIES)
            .bind(query.session.map(|s| s.0))
            .bind(query.tool.as_deref())
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not read the audit log", e))?;
        rows.iter().map(|json| crate::codec::audit_from_json(json)).collect()
    }
}
