//! The gateway's virtual keys in PostgreSQL.

use super::PgStore;
use crate::codec::{now, query_error};
use crate::sql;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_core::{KeyStore, NewApiKey, StoreError};
use exoclaw_types::ApiKey;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

fn key_from_row(row: &PgRow) -> Result<ApiKey, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a key row could not be read", e);
    let id: Uuid = row.try_get("id").map_err(decode)?;
    let rpm: Option<i32> = row.try_get("rpm").map_err(decode)?;
    Ok(ApiKey {
        id: id.to_string(),
        name: row.try_get("name").map_err(decode)?,
        prefix: row.try_get("prefix").map_err(decode)?,
        models: row.try_get("models").map_err(decode)?,
        budget_usd: row.try_get("budget_usd").map_err(decode)?,
        spent_usd: row.try_get("spent_usd").map_err(decode)?,
        rpm: rpm
            .map(|rpm| {
                u32::try_from(rpm)
                    .map_err(|_| StoreError::corrupt(format!("a key's rpm {rpm} is out of range")))
            })
            .transpose()?,
        created_at: row.try_get::<DateTime<Utc>, _>("created_at").map_err(decode)?,
        revoked_at: row.try_get::<Option<DateTime<Utc>>, _>("revoked_at").map_err(decode)?,
    })
}

/// An id given as text, or none when it is not a UUID (so `revoke NAME` never fails to parse).
fn as_uuid(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_key(&self, new: NewApiKey) -> Result<ApiKey, StoreError> {
        let id = Uuid::now_v7();
        let created_at = now();
        let rpm = new
            .rpm
            .map(|rpm| {
                i32::try_from(rpm).map_err(|_| StoreError::database(format!("rpm {rpm} is too large")))
            })
            .transpose()?;
        let inserted = sqlx::query(sql::INSERT_KEY)
            .bind(id)
            .bind(&new.name)
            .bind(&new.hash)
            .bind(&new.prefix)
            .bind(&new.models)
            .bind(new.budget_usd)
            .bind(rpm)
            .bind(created_at)
            .execute(&self.pool)
            .await;
        match inserted {
            Ok(_) => Ok(ApiKey {
                id: id.to_string(),
                name: new.name,
                prefix: new.prefix,
                models: new.models,
                budget_usd: new.budget_usd,
                spent_usd: 0.0,
                rpm: new.rpm,
                created_at,
                revoked_at: None,
            }),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::KeyExists(new.name))
            }
            Err(e) => Err(query_error("could not store the key", e)),
        }
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        sqlx::query(sql::LIST_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not list the keys", e))?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(sql::KEY_BY_HASH)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| query_error("could not look the key up", e))?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn revoke_key(&self, name_or_id: &str) -> Result<bool, StoreError> {
        let revoked = sqlx::query(sql::REVOKE_KEY)
            .bind(now())
            .bind(name_or_id)
            .bind(as_uuid(name_or_id))
            .execute(&self.pool)
            .await
            .map_err(|e| query_error("could not revoke the key", e))?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn add_key_spend(&self, id: &str, usd: f64) -> Result<(), StoreError> {
        let Some(id) = as_uuid(id) else {
            return Err(StoreError::database(format!("`{id}` is not a key id")));
        };
        sqlx::query(sql::ADD_KEY_SPEND)
            .bind(usd)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| query_error("could not record the key's spend", e))?;
        Ok(())
    }
}
