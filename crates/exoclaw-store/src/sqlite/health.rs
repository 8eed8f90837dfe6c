//! The gateway's provider health checks and chat channel connections in SQLite.

use super::SqliteStore;
use crate::codec::{from_micros, query_error, to_micros};
use crate::sql;
use async_trait::async_trait;
use exoclaw_core::{ChannelHealth, ChannelHealthStore, ProviderHealth, ProviderHealthStore, StoreError};
use sqlx::Row;

#[async_trait]
impl ProviderHealthStore for SqliteStore {
    async fn record_provider_health(&self, checks: &[ProviderHealth]) -> Result<(), StoreError> {
        let failed = |e| query_error("could not record the providers' health checks", e);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        for check in checks {
            sqlx::query(sql::UPSERT_PROVIDER_HEALTH)
                .bind(&check.provider)
                .bind(to_micros(check.checked_at))
                .bind(check.error.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        self.committed();
        Ok(())
    }

    async fn provider_health(&self) -> Result<Vec<ProviderHealth>, StoreError> {
        let rows = sqlx::query(sql::PROVIDER_HEALTH)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not read the providers' health checks", e))?;
        rows.iter()
            .map(|row| {
                let decode =
                    |e: sqlx::Error| StoreError::corrupt_from("a health check row could not be read", e);
                Ok(ProviderHealth {
                    provider: row.try_get("provider").map_err(decode)?,
                    checked_at: from_micros(row.try_get("checked_at").map_err(decode)?)?,
                    error: row.try_get("error").map_err(decode)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl ChannelHealthStore for SqliteStore {
    async fn record_channel_health(&self, state: &ChannelHealth) -> Result<(), StoreError> {
        sqlx::query(sql::UPSERT_CHANNEL_HEALTH)
            .bind(&state.channel)
            .bind(state.connected)
            .bind(to_micros(state.since))
            .bind(state.error.as_deref())
            .execute(&self.writer)
            .await
            .map_err(|e| query_error("could not record a chat channel's connection", e))?;
        self.committed();
        Ok(())
    }

    async fn channel_health(&self) -> Result<Vec<ChannelHealth>, StoreError> {
        let rows = sqlx::query(sql::CHANNEL_HEALTH)
            .fetch_all(&self.reader)
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
                    since: from_micros(row.try_get("since").map_err(decode)?)?,
                    error: row.try_get("error").map_err(decode)?,
                })
            })
            .collect()
    }
}
