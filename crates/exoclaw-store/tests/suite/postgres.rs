//! The scenarios on the PostgreSQL server this machine runs (PostgreSQL 15 on 127.0.0.1:5432, trust
//! authentication; CI has the same). Each test creates its own database `exoclaw_test_<uuid>`
//! and drops it when done, even when the scenario fails. Set `EXOCLAW_TEST_POSTGRES_URL` to use
//! another server: the URL of a database where the user may run `CREATE DATABASE`.
//!
//! These tests never skip: a server that cannot be reached fails them, saying how to start it.

use std::future::Future;

use exoclaw_store::{NewSession, SessionLocks, SessionStore, Store, StoreError};
use sqlx::{Connection, PgConnection};

/// The server's maintenance database, where test databases are created and dropped.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("EXOCLAW_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

async fn admin() -> PgConnection {
    let url = admin_url();
    match PgConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "cannot reach PostgreSQL at {}: {e}\n\
             These tests need a real server. Start the local one with\n    \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point EXOCLAW_TEST_POSTGRES_URL at a server where this user may CREATE DATABASE.",
            without_password(&url)
        ),
    }
}

/// `url` with the password of its user info masked, for messages.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => match url[scheme_end + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let host = host_and_path.split_once('/').map_or(host_and_path, |(host, _)| host);
    format!("{}{host}/{database}{query}", &base[..scheme_end])
}

/// Creates an empty database, returning its name and URL.
async fn create_database() -> (String, String) {
    let name = format!("exoclaw_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = admin().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let url = with_database(&admin_url(), &name);
    (name, url)
}

async fn drop_database(name: &str) {
    let mut admin = admin().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

/// Runs `scenario` on a fresh database, dropping it afterwards whatever happened.
async fn with_postgres<F, Fut>(scenario: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_postgres_url(|store, _url| scenario(store)).await;
}

/// Runs `scenario` on a fresh database, telling it the database's URL.
async fn with_postgres_url<F, Fut>(scenario: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (name, url) = create_database().await;
    let outcome = match Store::open(&url).await {
        Ok(store) => {
            assert!(matches!(store, Store::Postgres(_)));
            // On a task of its own, so a failing assertion comes back here as an error and the
            // database is still dropped.
            let outcome = tokio::spawn(scenario(store.clone(), url.clone())).await;
            store.close().await;
            outcome.map_err(|e| e.into_panic())
        }
        Err(e) => Err(Box::new(format!("opening {url}: {e}")) as Box<dyn std::any::Any + Send>),
    };
    drop_database(&name).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

scenario_tests!(with_postgres);

/// The long-term memory scenarios on PostgreSQL.
mod memory {
    use super::*;

    /// Runs `scenario` with two handles (two pools) on one fresh database, as two nodes would.
    async fn with_two_handles<F, Fut>(scenario: F)
    where
        F: FnOnce(Store, Store) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        with_postgres_url(|store, url| async move {
            let other = Store::open(&url).await.unwrap();
            scenario(store, other.clone()).await;
            other.close().await;
        })
        .await;
    }

    memory_scenario_tests!(with_postgres, with_two_handles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_run_is_an_error_that_discarding_clears() {
    with_postgres_url(|store, url| {
        super::scenarios::a_corrupt_run_is_an_error_that_discarding_clears(store, async move |session| {
            // The column is `json`, so what is stored is JSON; this JSON is no run.
            let mut conn = PgConnection::connect(&url).await.unwrap();
            sqlx::query("UPDATE runs SET run = '{\"phase\": \"from the future\"}' WHERE session_id = $1")
                .bind(session.0)
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
    with_postgres_url(super::scenarios::a_killed_holder_releases_its_lock).await;
}

/// The advisory lock lives on a connection of its own: while a lease is held, the server shows it
/// (`pg_locks`) and who holds it (`session_locks`); once released, neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_is_an_advisory_lock_that_names_its_holder() {
    with_postgres_url(|store, url| async move {
        let session = exoclaw_types::SessionId::new();
        let lease = store.lock_session(session, false).await.unwrap();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let held = || {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
        };
        assert_eq!(held().fetch_one(&mut conn).await.unwrap(), 1);
        let holder: String = sqlx::query_scalar("SELECT holder FROM session_locks WHERE session_id = $1")
            .bind(session.0)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(holder.starts_with(&format!("pid {} (", std::process::id())), "{holder}");
        drop(lease);
        // Released on a task: the next lock waits for it, then the server shows nothing held and
        // no holder row (the release ends the advisory lock and deletes the row, in either order,
        // so wait for both).
        drop(store.lock_session(session, true).await.unwrap());
        let rows = || sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM session_locks");
        for _ in 0..100 {
            if held().fetch_one(&mut conn).await.unwrap() == 0
                && rows().fetch_one(&mut conn).await.unwrap() == 0
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(held().fetch_one(&mut conn).await.unwrap(), 0);
        assert_eq!(rows().fetch_one(&mut conn).await.unwrap(), 0);
        conn.close().await.unwrap();
    })
    .await;
}

#[test]
fn the_database_is_swapped_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "t2"),
        "postgresql://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(with_database("postgres://localhost", "t3"), "postgres://localhost/t3");
}

#[test]
fn the_admin_password_is_masked_in_messages() {
    assert_eq!(without_password("postgres://u:hunter22@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(without_password(DEFAULT_ADMIN_URL), DEFAULT_ADMIN_URL);
}

#[tokio::test]
async fn reopening_keeps_the_data_and_the_schema() {
    let (name, url) = create_database().await;
    let store = Store::open(&url).await.unwrap();
    let session = store.create_session(NewSession::default()).await.unwrap();
    let first = super::fixtures::turn(1);
    store.commit_turn(session.id, &first, &[], None).await.unwrap();
    store.close().await;
    // Migrations already applied are recognised, not run again.
    let reopened = Store::open(&url).await.unwrap();
    let stored = reopened.messages(session.id).await;
    reopened.close().await;
    drop_database(&name).await;
    assert_eq!(stored.unwrap(), first);
}

#[tokio::test]
async fn a_missing_database_is_explained_without_the_password() {
    // Trust authentication ignores the password, so the server gets as far as the database name.
    let missing = format!("exoclaw_missing_{}", uuid::Uuid::now_v7().simple());
    let admin = admin_url();
    let with_password =
        with_database(&admin, &missing).replacen("://postgres@", "://postgres:Sup3rSecretPw@", 1);
    assert!(with_password.contains("Sup3rSecretPw"), "the test URL should carry a password: {with_password}");
    let message = match Store::open(&with_password).await {
        Err(StoreError::Open { message, .. }) => message,
        other => panic!("expected an Open error, got {other:?}"),
    };
    assert!(message.contains("does not exist") && message.contains(&missing), "{message}");
    assert!(!message.contains("Sup3rSecretPw"), "{message}");
    assert!(message.contains("postgres:***@"), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_is_explained_without_the_password() {
    // Port 1 on the loopback interface: nothing listens there.
    let message = match Store::open("postgres://exoclaw:Sup3rSecretPw@127.0.0.1:1/exoclaw").await {
        Err(StoreError::Open { message, .. }) => message,
        other => panic!("expected an Open error, got {other:?}"),
    };
    assert!(message.contains("could not reach PostgreSQL"), "{message}");
    assert!(message.contains("postgres://exoclaw:***@127.0.0.1:1/exoclaw"), "{message}");
    assert!(!message.contains("Sup3rSecretPw"), "{message}");
}
