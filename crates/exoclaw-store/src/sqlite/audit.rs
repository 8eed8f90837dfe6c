//! The audit log in SQLite.

use super::SqliteStore;
use crate::codec::{query_error, to_micros};
use crate::sql;
use async_trait::async_trait;
use exoclaw_core::{AuditEntry, AuditLog, AuditQuery, StoreError};

#[async_trait]
impl AuditLog for SqliteStore {
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let failed = |e| query_error("could not write the audit log", e);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        for entry in entries {
            sqlx::query(sql::insert_audit!("$5"))
                .bind(to_micros(entry.at))
                .bind(entry.session_id.map(|s| s.to_string()))
                .bind(&entry.tool)
                .bind(entry.event.kind())
                .bind(crate::codec::audit_to_json(entry)?)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        self.committed();
        Ok(())
    }

    async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(sql::AUDIT_ENTRIES)
            .bind(query.session.map(|s| s.to_string()))
            .bind(query.tool.as_deref())
            .bind(i64::from(query.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not read the audit log", e))?;
        rows.iter().map(|json| crate::codec::audit_from_json(json)).collect()
    }
}
