//! The gateway's virtual keys in SQLite.

use super::{SqliteStore, parse_uuid};
use crate::codec::{from_micros, now, query_error, to_micros};
use crate::sql;
use async_trait::async_trait;
use exoclaw_core::{KeyStore, NewApiKey, StoreError};
use exoclaw_types::ApiKey;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

fn key_from_row(row: &SqliteRow) -> Result<ApiKey, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a key row could not be read", e);
    let id: String = row.try_get("id").map_err(decode)?;
    let models: String = row.try_get("models").map_err(decode)?;
    let rpm: Option<i64> = row.try_get("rpm").map_err(decode)?;
    let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(decode)?;
    Ok(ApiKey {
        id: parse_uuid(&id)?.to_string(),
        name: row.try_get("name").map_err(decode)?,
        prefix: row.try_get("prefix").map_err(decode)?,
        models: serde_json::from_str(&models)
            .map_err(|e| StoreError::corrupt_from("a key's model list is not a JSON list", e))?,
        budget_usd: row.try_get("budget_usd").map_err(decode)?,
        spent_usd: row.try_get("spent_usd").map_err(decode)?,
        rpm: rpm
            .map(|rpm| {
                u32::try_from(rpm)
                    .map_err(|_| StoreError::corrupt(format!("a key's rpm {rpm} is out of range")))
            })
            .transpose()?,
        created_at: from_micros(row.try_get("created_at").map_err(decode)?)?,
        revoked_at: revoked_at.map(from_micros).transpose()?,
    })
}

/// Whether a failed insert hit the unique index on live key names (SQLITE_CONSTRAINT_UNIQUE).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, new: NewApiKey) -> Result<ApiKey, StoreError> {
        let key = ApiKey {
            id: uuid::Uuid::now_v7().to_string(),
            name: new.name,
            prefix: new.prefix,
            models: new.models,
            budget_usd: new.budget_usd,
            spent_usd: 0.0,
            rpm: new.rpm,
            created_at: now(),
            revoked_at: None,
        };
        let models = serde_json::to_string(&key.models)
            .map_err(|e| StoreError::database_from("the model list could not be encoded", e))?;
        let inserted = sqlx::query(sql::INSERT_KEY)
            .bind(&key.id)
            .bind(&key.name)
            .bind(&new.hash)
            .bind(&key.prefix)
            .bind(models)
            .bind(key.budget_usd)
            .bind(key.rpm.map(i64::from))
            .bind(to_micros(key.created_at))
            .execute(&self.writer)
            .await;
        match inserted {
            Ok(_) => Ok(key),
            Err(e) if is_unique_violation(&e) => Err(StoreError::KeyExists(key.name)),
            Err(e) => Err(query_error("could not store the key", e)),
        }
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        sqlx::query(sql::LIST_KEYS)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not list the keys", e))?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(sql::KEY_BY_HASH)
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| query_error("could not look the key up", e))?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn revoke_key(&self, name_or_id: &str) -> Result<bool, StoreError> {
        let revoked = sqlx::query(sql::REVOKE_KEY)
            .bind(to_micros(now()))
            .bind(name_or_id)
            .bind(name_or_id)
            .execute(&self.writer)
            .await
            .map_err(|e| query_error("could not revoke the key", e))?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn add_key_spend(&self, id: &str, usd: f64) -> Result<(), StoreError> {
        sqlx::query(sql::ADD_KEY_SPEND)
            .bind(usd)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(|e| query_error("could not record the key's spend", e))?;
        Ok(())
    }
}
