//! How domain values become column values and back, the same for both backends: roles as text,
//! parts as JSON text, counters as `i64`, timestamps truncated to the microsecond.

use chrono::{DateTime, SubsecRound, Utc};
use exoclaw_core::{Run, StoreError};
use exoclaw_types::{CallPurpose, Part, Role, SessionId, SessionKey};

/// The role's stored name (the same as its serde name).
pub(crate) fn role_to_str(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// A usage record's purpose as stored: `NULL` for an answer (as every record before schema 10).
pub(crate) fn purpose_column(purpose: CallPurpose) -> Option<&'static str> {
    (!purpose.is_answer()).then(|| purpose.as_str())
}

/// The purpose stored as `column`.
pub(crate) fn purpose_from_column(column: Option<String>) -> Result<CallPurpose, StoreError> {
    match column {
        None => Ok(CallPurpose::Answer),
        Some(name) => CallPurpose::from_name(&name).ok_or_else(|| {
            StoreError::corrupt(format!("unknown usage purpose {name:?} (written by a newer exoclaw?)"))
        }),
    }
}

/// The role with this stored name.
pub(crate) fn role_from_str(name: &str) -> Result<Role, StoreError> {
    match name {
        "system" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" => Ok(Role::Tool),
        other => {
            Err(StoreError::corrupt(format!("unknown message role {other:?} (written by a newer exoclaw?)")))
        }
    }
}

/// A message's parts as the JSON text that is stored.
pub(crate) fn parts_to_json(parts: &[Part]) -> Result<String, StoreError> {
    serde_json::to_string(parts)
        .map_err(|e| StoreError::database_from("could not serialise message parts", e))
}

/// A message's parts from their stored JSON text.
pub(crate) fn parts_from_json(json: &str) -> Result<Vec<Part>, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt_from("message parts are not valid (written by a newer exoclaw?)", e))
}

/// A turn in progress as the JSON text that is stored.
pub(crate) fn run_to_json(session: SessionId, run: &Run) -> Result<String, StoreError> {
    serde_json::to_string(run).map_err(|e| {
        StoreError::database_from(format!("could not serialise the run of session {session}"), e)
    })
}

/// A turn in progress from its stored JSON text.
pub(crate) fn run_from_json(session: SessionId, json: &str) -> Result<Run, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::corrupt_from(
            format!(
                "the interrupted turn of session {session} is not valid (written by a newer exoclaw, \
                 or damaged); discard it to go on with the session"
            ),
            e,
        )
    })
}

/// An audit entry as the JSON text that is stored.
pub(crate) fn audit_to_json(entry: &exoclaw_core::AuditEntry) -> Result<String, StoreError> {
    serde_json::to_string(entry)
        .map_err(|e| StoreError::database_from("could not serialise an audit entry", e))
}

/// An audit entry from its stored JSON text.
pub(crate) fn audit_from_json(json: &str) -> Result<exoclaw_core::AuditEntry, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt_from("an audit entry is not valid (written by a newer exoclaw?)", e))
}

/// A failed write of a session's row in another table: [`StoreError::SessionNotFound`] when the
/// session is missing (the foreign key refused it), otherwise a query error saying what was done.
pub(crate) fn write_error(session: SessionId, doing: &str, error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
            StoreError::SessionNotFound(session)
        }
        _ => query_error(doing, error),
    }
}

/// A count as the signed 64-bit integer both databases store.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::database(format!("{what} {value} is too large to store")))
}

/// An optional count as a signed 64-bit integer.
pub(crate) fn opt_to_i64(value: Option<u64>, what: &str) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(v, what)).transpose()
}

/// A stored count back as `u64`.
pub(crate) fn from_i64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("negative {what}: {value}")))
}

/// An optional stored count back as `u64`.
pub(crate) fn opt_from_i64(value: Option<i64>, what: &str) -> Result<Option<u64>, StoreError> {
    value.map(|v| from_i64(v, what)).transpose()
}

/// Microseconds since the Unix epoch: SQLite's timestamp column.
pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A timestamp from SQLite's microseconds since the Unix epoch.
pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::corrupt(format!("timestamp out of range: {micros} µs")))
}

/// Now, truncated to the microsecond: what either database gives back after storing it.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The routing key from its four nullable columns: all present or all absent.
pub(crate) fn key_from_columns(
    agent: Option<String>,
    channel: Option<String>,
    account: Option<String>,
    peer: Option<String>,
) -> Result<Option<SessionKey>, StoreError> {
    match (agent, channel, account, peer) {
        (Some(agent), Some(channel), Some(account), Some(peer)) => {
            Ok(Some(SessionKey { agent, channel, account, peer }))
        }
        (None, None, None, None) => Ok(None),
        _ => Err(StoreError::corrupt("a session key is only partly stored")),
    }
}

/// A query failure, saying what was being done; the driver's error is its source.
pub(crate) fn query_error(doing: &str, error: sqlx::Error) -> StoreError {
    StoreError::database_from(doing, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_serde_names() {
        for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
            let serde_name = serde_json::to_value(role).unwrap();
            assert_eq!(serde_name, role_to_str(role));
            assert_eq!(role_from_str(role_to_str(role)).unwrap(), role);
        }
        assert!(matches!(role_from_str("narrator"), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn counts_beyond_i64_are_refused_not_wrapped() {
        assert!(to_i64(u64::MAX, "input_tokens").is_err());
        assert!(from_i64(-1, "input_tokens").is_err());
        assert_eq!(opt_from_i64(opt_to_i64(Some(7), "x").unwrap(), "x").unwrap(), Some(7));
    }

    #[test]
    fn timestamps_keep_microseconds() {
        let at = now();
        assert_eq!(from_micros(to_micros(at)).unwrap(), at);
    }

    #[test]
    fn a_partial_key_is_corrupt() {
        let some = || Some("x".to_owned());
        assert!(key_from_columns(some(), None, None, None).is_err());
        assert!(key_from_columns(None, None, None, None).unwrap().is_none());
        assert!(key_from_columns(some(), some(), some(), some()).unwrap().is_some());
    }
}
