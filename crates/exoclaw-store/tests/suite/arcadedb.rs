//! The long-term memory scenarios on a real ArcadeDB server (`exoclaw_store::ArcadeDbMemory`),
//! and what only ArcadeDB has: its URL, its errors, and transactions that lose races and are run
//! again. Each test starts its own server (exoclaw-testkit's `ArcadeDbServer`, from
//! `scripts/peers/arcadedb.sh`, which installs ArcadeDB the first time) on a free loopback port,
//! and the server is killed when the test ends, even when it fails.
//!
//! These tests never skip: a server that cannot be installed or started fails them, saying why.

use std::future::Future;
use std::sync::Arc;

use exoclaw_core::{EntryKind, FactRecorded, FactStore, MemoryIndex, NewEntry, NewFact};
use exoclaw_store::ArcadeDbMemory;
use exoclaw_testkit::arcadedb::ArcadeDbServer;
use exoclaw_types::{Role, SessionId};
use pretty_assertions::assert_eq;

/// A server for this test: started off the async workers, since the JVM takes a few seconds.
async fn server() -> ArcadeDbServer {
    tokio::task::spawn_blocking(ArcadeDbServer::start).await.unwrap()
}

/// Runs `scenario` on a fresh database (created by the adapter's `connect`) on a server of its own.
async fn with_arcadedb<F, Fut>(scenario: F)
where
    F: FnOnce(ArcadeDbMemory) -> Fut,
    Fut: Future<Output = ()>,
{
    let server = server().await;
    let store = ArcadeDbMemory::connect(&server.url("memory")).await.unwrap();
    scenario(store).await;
    drop(server);
}

/// Runs `scenario` with two handles on one fresh database, as two processes would.
async fn with_two_handles<F, Fut>(scenario: F)
where
    F: FnOnce(ArcadeDbMemory, ArcadeDbMemory) -> Fut,
    Fut: Future<Output = ()>,
{
    let server = server().await;
    let store = ArcadeDbMemory::connect(&server.url("memory")).await.unwrap();
    let other = ArcadeDbMemory::connect(&server.url("memory")).await.unwrap();
    scenario(store, other).await;
    drop(server);
}

memory_scenario_tests!(with_arcadedb, with_two_handles);

#[tokio::test]
async fn a_server_that_is_down_is_named_with_what_to_do() {
    // A port that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("arcadedb://root:hunter2-secret@127.0.0.1:{port}/memory");
    let error = ArcadeDbMemory::connect(&url).await.unwrap_err().to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("check that the server is running"), "{error}");
    assert!(!error.contains("hunter2-secret"), "{error}");
}

#[tokio::test]
async fn a_bad_url_says_the_form() {
    let error = ArcadeDbMemory::connect("arcadedb://root:hunter2-secret@127.0.0.1:2480").await.unwrap_err();
    let error = error.to_string();
    assert!(error.contains("arcadedb://USER:PASSWORD@HOST:PORT/DATABASE"), "{error}");
    assert!(!error.contains("hunter2-secret"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_is_refused_without_showing_it() {
    let server = server().await;
    eprintln!(
        "ArcadeDB answered {:.2} s after it was started; peak RSS {} KiB",
        server.started_in().as_secs_f64(),
        server.peak_rss_kib().unwrap_or_default()
    );
    let url = format!("arcadedb://root:not-the-password-42@{}/memory", server.addr());
    let error = ArcadeDbMemory::connect(&url).await.unwrap_err().to_string();
    assert!(error.contains("refused the login"), "{error}");
    assert!(error.contains("check the user and password"), "{error}");
    assert!(!error.contains("not-the-password-42"), "{error}");

    // The right one works, and a store opened twice on one database finds its types there.
    ArcadeDbMemory::connect(&server.url("memory")).await.unwrap();
    let store = ArcadeDbMemory::connect(&server.url("memory")).await.unwrap();
    assert!(store.location().contains("root:***@"), "{}", store.location());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_all_land_once() {
    with_arcadedb(|store| async move {
        let store = Arc::new(store);
        let session = SessionId::new();
        // Eight writers index their own entries, re-index a shared one, and record the same
        // single-valued fact with different objects, all at once: ArcadeDB's optimistic
        // transactions conflict, and the adapter runs the losers again.
        let writers: Vec<_> = (0..8u64)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    let entries: Vec<NewEntry> = (0..5)
                        .map(|i| entry(session, 1 + writer * 5 + i, &format!("writer {writer} line {i}")))
                        .chain([entry(session, 0, &format!("shared, last written by {writer}"))])
                        .collect();
                    store.index(&entries).await.unwrap();
                    let fact = NewFact {
                        owner: "alice".into(),
                        subject: "user".into(),
                        predicate: "lives_in".into(),
                        object: format!("city {}", writer % 3),
                        confidence: 0.5,
                        single_valued: true,
                        source: None,
                        valid_from: chrono::Utc::now(),
                    };
                    store.record_fact(&fact).await.unwrap()
                })
            })
            .collect();
        let mut recorded = Vec::new();
        for writer in writers {
            recorded.push(writer.await.unwrap());
        }

        let entries = store.entries("alice", 100).await.unwrap();
        assert_eq!(entries.len(), 41, "{entries:?}");
        let mut ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 41, "ids must be unique: {ids:?}");
        assert_eq!(store.indexed_messages(session).await.unwrap(), 41);

        // One current fact; every new one but the last superseded another.
        let current = store.facts("alice", false).await.unwrap();
        assert_eq!(current.len(), 1, "{current:?}");
        let new = recorded.iter().filter(|r| matches!(r, FactRecorded::New { .. })).count();
        assert_eq!(store.facts("alice", true).await.unwrap().len(), new);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_batch_lands_whole_across_requests() {
    with_arcadedb(|store| async move {
        let session = SessionId::new();
        // More than one request's worth of statements, in one transaction.
        let entries: Vec<NewEntry> =
            (0..450).map(|seq| entry(session, seq, &format!("line {seq}"))).collect();
        store.index(&entries).await.unwrap();
        assert_eq!(store.indexed_messages(session).await.unwrap(), 450);
        assert_eq!(store.entries("alice", 1000).await.unwrap().len(), 450);
        let found = store.search_text("alice", "line 449", 3).await.unwrap();
        assert_eq!(found[0].entry.text, "line 449", "{found:?}");
    })
    .await;
}

fn entry(session: SessionId, seq: u64, text: &str) -> NewEntry {
    NewEntry {
        owner: "alice".into(),
        session,
        kind: EntryKind::Message,
        seq,
        role: Some(Role::User),
        text: text.into(),
        created_at: chrono::DateTime::from_timestamp(1_750_000_000 + seq as i64, 0).unwrap(),
        embedding: Some(vec![1.0, seq as f32]),
    }
}
