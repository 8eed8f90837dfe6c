//! The gateway's provider health checks and chat channel connections in PostgreSQL.

use super::PgStore;
use crate::codec::query_error;
use crate::sql;
use async_trait::async_trait;
use exoclaw_core::{ChannelHealth, ChannelHealthStore, ProviderHealth, ProviderHealthStore, StoreError};
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

#[async_trait]
impl ChannelHealthStore for PgStore {
    async fn record_channel_health(&self, state: &ChannelHealth) -> Result<(), StoreError> {
        sqlx::query(sql::UPSERT_CHANNEL_HEALTH)
            .bind(&state.channel)
            .bind(state.connected)
            .bind(state.since)
            .bind(state.error.as_deref())
            .execute(&self.pool)
            .await
            .map_err(|e| query_error("could not record a chat channel's connection", e))?;
        Ok(())
    }

    async fn channel_health(&self) -> Result<Vec<ChannelHealth>, StoreError> {
        let rows = sqlx::query(sql::CHANNEL_HEALTH)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not read the chat channels' connections", e))?;
        rows.iter()
            .map(|row| {
                let decode = |e: sqlx::Error| {
                    StoreError::corrupt_from("a chat channel connection row could not be read", e)
                };
                Ok(ChannelHealth {
                    channel: row.try_get("channel").map_err(decode)?,
                    connected: row.try_get("connected").map_err(decode)?,
                    since: row.try_get("since").map_err(decode)?,
                    error: row.try_get("error").map_err(decode)?,
                })
            })
            .collect()
    }
}
