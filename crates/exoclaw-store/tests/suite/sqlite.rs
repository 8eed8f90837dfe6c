//! The scenarios on SQLite files in temporary directories, and what only SQLite has: the file,
//! WAL mode, reopening, URL forms and the errors of a bad file.

use std::future::Future;
use std::path::PathBuf;

use exoclaw_store::{NewSession, SessionLocks, SessionStore, SqliteStore, Store, StoreError};
use pretty_assertions::assert_eq;
use sqlx::Connection;

use super::fixtures::turn;
use super::scenarios;

/// Runs `scenario` on a fresh database file in a temporary directory.
async fn with_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    with_sqlite_file(|store, _path| scenario(store)).await;
}

/// Runs `scenario` on a fresh database file, telling it where the file is.
async fn with_sqlite_file<F, Fut>(scenario: F)
where
    F: FnOnce(Store, PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exoclaw.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert!(matches!(store, Store::Sqlite(_)));
    scenario(store.clone(), path).await;
    store.close().await;
}

scenario_tests!(with_sqlite);

/// The long-term memory scenarios on SQLite files.
mod memory {
    use super::*;

    /// Runs `scenario` with two handles on one fresh database file, as two processes would.
    async fn with_two_handles<F, Fut>(scenario: F)
    where
        F: FnOnce(Store, Store) -> Fut,
        Fut: Future<Output = ()>,
    {
        with_sqlite_file(|store, path| async move {
            let other = Store::open(path.to_str().unwrap()).await.unwrap();
            scenario(store, other.clone()).await;
            other.close().await;
        })
        .await;
    }

    memory_scenario_tests!(with_sqlite, with_two_handles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_run_is_an_error_that_discarding_clears() {
    with_sqlite_file(|store, path| {
        scenarios::a_corrupt_run_is_an_error_that_discarding_clears(store, async move |session| {
            let mut conn =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query("UPDATE runs SET run = '{\"phase\": \"from the future\", [' WHERE session_id = ?1")
                .bind(session.to_string())
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_holder_releases_its_lock() {
    with_sqlite_file(|store, path| {
        scenarios::a_killed_holder_releases_its_lock(store, path.display().to_string())
    })
    .await;
}

#[tokio::test]
async fn lock_files_sit_beside_the_database_and_go_when_released() {
    with_sqlite_file(|store, path| async move {
        let session = exoclaw_types::SessionId::new();
        let lease = store.lock_session(session, false).await.unwrap();
        let file = PathBuf::from(format!("{}.locks/{session}.lock", path.display()));
        let holder = std::fs::read_to_string(&file).unwrap();
        assert!(holder.starts_with(&format!("pid {} (", std::process::id())), "{holder}");
        drop(lease);
        assert!(!file.exists(), "the lock file outlived its lease");
    })
    .await;
}

/// Runs the same scenarios on an in-memory database, which shares one connection for reads and
/// writes.
mod in_memory {
    use super::*;

    async fn with_memory<F, Fut>(scenario: F)
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = ()>,
    {
        let store = Store::open("sqlite::memory:").await.unwrap();
        scenario(store).await;
    }

    scenario_tests!(with_memory);
}

async fn journal_mode(path: &std::path::Path) -> String {
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    mode
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exoclaw.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    let session = store.create_session(NewSession::default()).await.unwrap();
    store.commit_turn(session.id, &turn(1), &[], None).await.unwrap();
    assert_eq!(journal_mode(&path).await, "wal");
    assert!(dir.path().join("exoclaw.db-wal").exists());
    store.close().await;
    // Closing closes every connection (readers, checkpointer, writer), the last of which folds the
    // log into the main file and removes it.
    assert!(!dir.path().join("exoclaw.db-wal").exists());
    // WAL mode belongs to the file: it stays after every connection is gone.
    assert_eq!(journal_mode(&path).await, "wal");
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exoclaw.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let session = store
        .create_session(NewSession { title: Some("keep me".into()), ..NewSession::default() })
        .await
        .unwrap();
    let first = turn(1);
    store.commit_turn(session.id, &first, &[], Some("local/smollm2")).await.unwrap();
    let listed = store.list_sessions(10).await.unwrap();
    store.close().await;
    drop(store);

    let reopened = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert_eq!(reopened.list_sessions(10).await.unwrap(), listed);
    assert_eq!(reopened.messages(session.id).await.unwrap(), first);
    // And it goes on where it stopped.
    let second = turn(2);
    reopened.commit_turn(session.id, &second, &[], None).await.unwrap();
    let all: Vec<_> = first.into_iter().chain(second).collect();
    assert_eq!(reopened.messages(session.id).await.unwrap(), all);
    reopened.close().await;
}

#[tokio::test]
async fn a_missing_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("exoclaw.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.location(), path.display().to_string());
    store.create_session(NewSession::default()).await.unwrap();
    store.close().await;
    assert!(path.is_file());
}

#[tokio::test]
async fn every_url_form_opens() {
    let dir = tempfile::tempdir().unwrap();
    let urls = [
        dir.path().join("bare.db").display().to_string(),
        format!("sqlite://{}", dir.path().join("url.db").display()),
        format!("sqlite:{}?mode=rwc", dir.path().join("params.db").display()),
        "sqlite::memory:".to_owned(),
        ":memory:".to_owned(),
    ];
    for url in urls {
        let store = Store::open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let session = store.create_session(NewSession::default()).await.unwrap();
        store.commit_turn(session.id, &turn(1), &[], None).await.unwrap();
        assert_eq!(store.messages(session.id).await.unwrap().len(), 2, "{url}");
        store.close().await;
    }
    for name in ["bare.db", "url.db", "params.db"] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
}

#[tokio::test]
async fn in_memory_databases_are_private() {
    let one = Store::open("sqlite::memory:").await.unwrap();
    let two = Store::open("sqlite::memory:").await.unwrap();
    one.create_session(NewSession::default()).await.unwrap();
    assert_eq!(one.list_sessions(10).await.unwrap().len(), 1);
    assert!(two.list_sessions(10).await.unwrap().is_empty());
}

fn open_error(result: Result<Store, StoreError>) -> String {
    match result {
        Err(StoreError::Open { message, .. }) => message,
        Err(other) => panic!("expected an Open error, got {other:?}"),
        Ok(_) => panic!("expected an error, the store opened"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let message = open_error(Store::open(path.to_str().unwrap()).await);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not an SQLite database"), "{message}");
}

#[tokio::test]
async fn a_database_from_a_newer_exoclaw_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exoclaw.db");
    Store::open(path.to_str().unwrap()).await.unwrap().close().await;
    // A later exoclaw would have recorded a migration this one does not know.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let message = open_error(Store::open(path.to_str().unwrap()).await);
    assert!(message.contains("newer exoclaw"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let message = open_error(Store::open("mysql://root@localhost/exoclaw").await);
    assert!(message.contains("mysql://") && message.contains("not supported"), "{message}");
    let message = open_error(Store::open("   ").await);
    assert!(message.contains("empty"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opening_only_an_existing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/exoclaw.db");
    for url in [path.display().to_string(), format!("sqlite://{}", path.display())] {
        assert!(Store::open_existing(&url).await.unwrap().is_none(), "{url}");
        assert!(!dir.path().join("data").exists(), "{url} created its directory");
    }
    let created = Store::open(&path.display().to_string()).await.unwrap();
    let session = created.create_session(NewSession::default()).await.unwrap();
    created.close().await;
    let opened = Store::open_existing(&format!("sqlite://{}", path.display())).await.unwrap().unwrap();
    assert_eq!(opened.session(session.id).await.unwrap().map(|s| s.id), Some(session.id));
    opened.close().await;
    assert!(Store::open_existing("sqlite::memory:").await.unwrap().is_some());
}
