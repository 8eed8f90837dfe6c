//! The gateway's provider health checks in PostgreSQL.

use super::PgStore;
use crate::codec::query_error;
use crate::sql;
use async_trait::async_trait;
use exoclaw_core::{ProviderHealth, ProviderHealthStore, StoreError};
use sqlx::Row;

#[async_trait]
impl ProviderHealthStore for PgStore {
    async fn record_provider_health(&self, checks: &[ProviderHealth]) -> Result<(), StoreError> {
        let failed = |e| query_error("could not record the providers' health checks", e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        for check in checks {
            sqlx::query(sql::UPSERT_PROVIDER_HEALTH)
                .bind(&check.provider)
                .bind(check.checked_at)
                .bind(check.error.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    async fn provider_health(&self) -> Result<Vec<ProviderHealth>, StoreError> {
        let rows = sqlx::query(sql::PROVIDER_HEALTH)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not read the providers' health checks", e))?;
        rows.iter()
            .map(|row| {
                let decode =
                    |e: sqlx::Error| StoreError::corrupt_from("a health check row could not be read", e);
                Ok(ProviderHealth {
                    provider: row.try_get("provider").map_err(decode)?,
                    checked_at: row.try_get("checked_at").map_err(decode)?,
                    error: row.try_get("error").map_err(decode)?,
                })
            })
            .collect()
    }
}
