//! What every backend must do, written once. Each scenario gets a fresh, empty store.

use std::future::Future;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoclaw_core::{AuditEvent, Decision, Permission, Reason, Resource, Rule, RuleEntry, Scope};
use exoclaw_store::{
    AuditEntry, AuditLog, AuditQuery, ChannelHealth, ChannelHealthStore, KeyStore, NewApiKey, NewSession,
    RunStore, SessionLocks, SessionStore, Store, StoreError, UsageStore,
};
use exoclaw_types::{Message, Part, Role, SessionId, ToolEffect};
use pretty_assertions::assert_eq;

use super::fixtures::{every_part_kind, key, message, now, run, turn, usage};

pub async fn a_turn_round_trips_every_part_kind(store: Store) {
    let before = now();
    let created = store
        .create_session(NewSession {
            id: None,
            key: Some(key("U42")),
            title: Some("pictures".into()),
            model: Some("anthropic/claude-haiku-4-5".into()),
        })
        .await
        .unwrap();
    assert_eq!(created.message_count, 0);
    assert_eq!(created.created_at, created.updated_at);
    assert!(created.created_at >= before);
    assert_eq!(store.session(created.id).await.unwrap(), Some(created.clone()));
    assert_eq!(store.list_sessions(10).await.unwrap(), vec![created.clone()]);
    assert!(store.messages(created.id).await.unwrap().is_empty());

    let messages = every_part_kind();
    let records = vec![usage(Some(created.id), 1200, 80), usage(Some(created.id), 1500, 40)];
    store.commit_turn(created.id, &messages, &records, Some("anthropic/claude-sonnet-4-5")).await.unwrap();

    let stored = store.messages(created.id).await.unwrap();
    assert_eq!(stored, messages);
    // Byte for byte, not just equal: tool-call arguments keep their key order.
    assert_eq!(serde_json::to_string(&stored).unwrap(), serde_json::to_string(&messages).unwrap());

    let session = store.session(created.id).await.unwrap().unwrap();
    assert_eq!(session.message_count, messages.len() as u64);
    assert_eq!(session.model.as_deref(), Some("anthropic/claude-sonnet-4-5"));
    assert_eq!(session.key, created.key);
    assert_eq!(session.title, created.title);
    assert_eq!(session.created_at, created.created_at);
    assert!(session.updated_at >= created.updated_at);
    assert_eq!(store.list_sessions(10).await.unwrap(), vec![session]);
    assert_eq!(store.usage_since(before).await.unwrap(), records);

    // A turn that names no model keeps the one set before.
    store.commit_turn(created.id, &turn(2), &[], None).await.unwrap();
    let session = store.session(created.id).await.unwrap().unwrap();
    assert_eq!(session.model.as_deref(), Some("anthropic/claude-sonnet-4-5"));
}

pub async fn turns_keep_their_order(store: Store) {
    let a = store.create_session(NewSession::default()).await.unwrap();
    let b = store.create_session(NewSession::default()).await.unwrap();
    let mut expected_a = Vec::new();
    let mut expected_b = Vec::new();
    for n in 0..60 {
        let turn_a = turn(n);
        store.commit_turn(a.id, &turn_a, &[], None).await.unwrap();
        expected_a.extend(turn_a);
        // Interleaved commits to another session do not disturb the first one's sequence.
        if n % 3 == 0 {
            let turn_b = turn(1000 + n);
            store.commit_turn(b.id, &turn_b, &[], None).await.unwrap();
            expected_b.extend(turn_b);
        }
    }
    // A turn of one message and an empty turn are fine too.
    let single = vec![message(Role::User, vec![Part::text("just one")])];
    store.commit_turn(a.id, &single, &[], None).await.unwrap();
    store.commit_turn(a.id, &[], &[], None).await.unwrap();
    expected_a.extend(single);

    assert_eq!(store.messages(a.id).await.unwrap(), expected_a);
    assert_eq!(store.messages(b.id).await.unwrap(), expected_b);
    assert_eq!(store.session(a.id).await.unwrap().unwrap().message_count, 121);
    assert_eq!(store.session(b.id).await.unwrap().unwrap().message_count, 40);
}

pub async fn a_failing_turn_leaves_nothing(store: Store) {
    let since = now();
    let session = store
        .create_session(NewSession { model: Some("openai/gpt-5".into()), ..NewSession::default() })
        .await
        .unwrap();
    let first = turn(1);
    store.commit_turn(session.id, &first, &[usage(Some(session.id), 10, 5)], None).await.unwrap();
    let before = store.session(session.id).await.unwrap().unwrap();
    let usage_before = store.usage_since(since).await.unwrap();

    // The second message reuses the first one's id: the insert of the second message fails after
    // the session was touched and the first message was written.
    let mut broken = turn(2);
    broken[1].id = broken[0].id;
    let error = store
        .commit_turn(session.id, &broken, &[usage(Some(session.id), 99, 99)], Some("other/model"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Database { .. }), "{error:?}");
    assert!(error.to_string().contains(&session.id.to_string()), "{error}");

    // A message id that another session already holds fails the same way.
    let other = store.create_session(NewSession::default()).await.unwrap();
    let mut stolen = turn(3);
    stolen[1].id = first[0].id;
    store.commit_turn(other.id, &stolen, &[usage(Some(other.id), 7, 7)], Some("x/y")).await.unwrap_err();

    assert_eq!(store.messages(session.id).await.unwrap(), first);
    assert!(store.messages(other.id).await.unwrap().is_empty());
    assert_eq!(store.session(session.id).await.unwrap().unwrap(), before);
    assert_eq!(store.session(other.id).await.unwrap().unwrap().model, None);
    assert_eq!(store.usage_since(since).await.unwrap(), usage_before);

    // The store is still usable and the sequence continues where the good turn ended.
    let good = turn(4);
    store.commit_turn(session.id, &good, &[], None).await.unwrap();
    let expected: Vec<Message> = first.into_iter().chain(good).collect();
    assert_eq!(store.messages(session.id).await.unwrap(), expected);
}

pub async fn unknown_sessions_are_reported(store: Store) {
    let ghost = SessionId::new();
    let since = now();
    let error = store.commit_turn(ghost, &turn(1), &[usage(Some(ghost), 1, 1)], None).await.unwrap_err();
    assert!(matches!(error, StoreError::SessionNotFound(id) if id == ghost), "{error:?}");
    // Nothing of the refused turn was kept, not even its usage.
    assert!(store.usage_since(since).await.unwrap().is_empty());
    assert!(matches!(store.messages(ghost).await, Err(StoreError::SessionNotFound(_))));
    assert!(matches!(store.clear_session(ghost).await, Err(StoreError::SessionNotFound(_))));
    assert!(!store.delete_session(ghost).await.unwrap());
    assert_eq!(store.session(ghost).await.unwrap(), None);
    assert_eq!(store.session_by_key(&key("nobody")).await.unwrap(), None);
    assert!(store.list_sessions(10).await.unwrap().is_empty());
}

pub async fn concurrent_commits_all_land(store: Store) {
    const SESSIONS: usize = 8;
    const TURNS: usize = 10;
    const SHARED_WRITERS: usize = 4;
    let since = now();
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(store.create_session(NewSession::default()).await.unwrap().id);
    }
    let shared = store.create_session(NewSession::default()).await.unwrap().id;

    let mut tasks = Vec::new();
    for (writer, id) in ids.iter().copied().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..TURNS {
                store.commit_turn(id, &turn(writer * 100 + n), &[usage(Some(id), 1, 1)], None).await.unwrap();
            }
        }));
    }
    // Several writers on one session: each turn stays whole and the sequence has no gaps.
    for writer in 0..SHARED_WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..TURNS {
                store.commit_turn(shared, &turn(10_000 + writer * 100 + n), &[], None).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    for (writer, id) in ids.iter().copied().enumerate() {
        let expected: Vec<Message> = (0..TURNS).flat_map(|n| turn(writer * 100 + n)).collect();
        let stored = store.messages(id).await.unwrap();
        assert_eq!(texts(&stored), texts(&expected));
    }
    let stored = store.messages(shared).await.unwrap();
    assert_eq!(stored.len(), SHARED_WRITERS * TURNS * 2);
    for pair in stored.chunks(2) {
        let question = pair[0].text();
        assert_eq!(pair[1].text(), question.replace("question", "answer"), "a turn was split");
    }
    assert_eq!(store.usage_since(since).await.unwrap().len(), SESSIONS * TURNS);
    let listed = store.list_sessions(100).await.unwrap();
    assert_eq!(listed.len(), SESSIONS + 1);
    assert_eq!(
        listed.iter().map(|s| s.message_count).sum::<u64>(),
        ((SESSIONS + SHARED_WRITERS) * TURNS * 2) as u64
    );
}

pub async fn sessions_list_newest_first_and_are_found_by_key(store: Store) {
    let a =
        store.create_session(NewSession { key: Some(key("alice")), ..NewSession::default() }).await.unwrap();
    let b =
        store.create_session(NewSession { key: Some(key("bob")), ..NewSession::default() }).await.unwrap();
    let c = store.create_session(NewSession::default()).await.unwrap();
    assert_eq!(ids(&store.list_sessions(10).await.unwrap()), vec![c.id, b.id, a.id]);

    store.commit_turn(a.id, &turn(1), &[], None).await.unwrap();
    let listed = store.list_sessions(10).await.unwrap();
    assert_eq!(ids(&listed), vec![a.id, c.id, b.id]);
    assert_eq!(listed.iter().map(|s| s.message_count).collect::<Vec<_>>(), vec![2, 0, 0]);
    assert_eq!(ids(&store.list_sessions(2).await.unwrap()), vec![a.id, c.id]);
    assert!(store.list_sessions(0).await.unwrap().is_empty());

    assert_eq!(store.session_by_key(&key("alice")).await.unwrap().map(|s| s.id), Some(a.id));
    assert_eq!(store.session_by_key(&key("bob")).await.unwrap().map(|s| s.id), Some(b.id));
    assert_eq!(store.session_by_key(&key("carol")).await.unwrap(), None);
    let mut other_channel = key("alice");
    other_channel.channel = "discord".into();
    assert_eq!(store.session_by_key(&other_channel).await.unwrap(), None);

    // A newer session for the same conversation wins, until the older one is used again.
    let a2 =
        store.create_session(NewSession { key: Some(key("alice")), ..NewSession::default() }).await.unwrap();
    assert_eq!(store.session_by_key(&key("alice")).await.unwrap().map(|s| s.id), Some(a2.id));
    store.commit_turn(a.id, &turn(2), &[], None).await.unwrap();
    let found = store.session_by_key(&key("alice")).await.unwrap().unwrap();
    assert_eq!((found.id, found.message_count), (a.id, 4));
}

pub async fn every_write_of_a_sessions_messages_moves_its_revision(store: Store) {
    let revision = |id| {
        let store = store.clone();
        async move { store.session(id).await.unwrap().unwrap().revision }
    };
    let a = store.create_session(NewSession::default()).await.unwrap();
    let b = store.create_session(NewSession::default()).await.unwrap();
    assert_eq!((a.revision, revision(a.id).await), (0, 0), "a new session was never written");
    store.commit_turn(a.id, &turn(1), &[], None).await.unwrap();
    store.commit_turn(a.id, &turn(2), &[], None).await.unwrap();
    assert_eq!(revision(a.id).await, 2);
    // A checkpoint is not a write of the messages; clearing is.
    let run = exoclaw_core::Run::new(exoclaw_core::RunConfig::new("m"), vec![], Message::user("q"));
    store.save_run(a.id, &run).await.unwrap();
    assert_eq!(revision(a.id).await, 2);
    store.clear_session(a.id).await.unwrap();
    assert_eq!(revision(a.id).await, 3);
    assert_eq!(revision(b.id).await, 0, "another session's commits moved this one");
    let by_key_or_list = store.list_sessions(10).await.unwrap();
    assert_eq!(by_key_or_list.iter().find(|s| s.id == a.id).map(|s| s.revision), Some(3));
}

pub async fn clear_keeps_the_session_and_delete_keeps_the_usage(store: Store) {
    let since = now();
    let doomed = store
        .create_session(NewSession { title: Some("doomed".into()), ..NewSession::default() })
        .await
        .unwrap();
    let bystander = store.create_session(NewSession::default()).await.unwrap();
    store.commit_turn(doomed.id, &turn(1), &[usage(Some(doomed.id), 100, 10)], None).await.unwrap();
    store.commit_turn(doomed.id, &turn(2), &[usage(Some(doomed.id), 200, 20)], None).await.unwrap();
    let kept = turn(3);
    store.commit_turn(bystander.id, &kept, &[usage(Some(bystander.id), 300, 30)], None).await.unwrap();

    store.clear_session(doomed.id).await.unwrap();
    assert!(store.messages(doomed.id).await.unwrap().is_empty());
    let cleared = store.session(doomed.id).await.unwrap().unwrap();
    assert_eq!((cleared.message_count, cleared.title.as_deref()), (0, Some("doomed")));
    // A cleared session takes new turns.
    let fresh = turn(4);
    store.commit_turn(doomed.id, &fresh, &[], None).await.unwrap();
    assert_eq!(store.messages(doomed.id).await.unwrap(), fresh);

    assert!(store.delete_session(doomed.id).await.unwrap());
    assert_eq!(store.session(doomed.id).await.unwrap(), None);
    assert!(matches!(store.messages(doomed.id).await, Err(StoreError::SessionNotFound(_))));
    assert!(!store.delete_session(doomed.id).await.unwrap());
    assert_eq!(ids(&store.list_sessions(10).await.unwrap()), vec![bystander.id]);
    assert_eq!(store.messages(bystander.id).await.unwrap(), kept);

    // The ledger keeps what the deleted session cost, detached from it.
    let ledger = store.usage_since(since).await.unwrap();
    let sessions: Vec<_> = ledger.iter().map(|u| u.session_id).collect();
    assert_eq!(sessions, vec![None, None, Some(bystander.id)]);
    assert_eq!(
        ledger.iter().map(|u| u.usage.input_tokens).collect::<Vec<_>>(),
        vec![Some(100), Some(200), Some(300)]
    );
}

pub async fn usage_is_a_ledger_that_keeps_unreported_counts(store: Store) {
    let start = now();
    let mut unreported = usage(None, 0, 0);
    unreported.usage = exoclaw_types::Usage::default();
    unreported.ttft_ms = None;
    unreported.cost_usd = None;
    unreported.estimated = true;
    store.record_usage(&unreported).await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let middle = now();
    let mut zero = usage(None, 0, 0);
    zero.usage.cache_write_tokens = Some(0);
    zero.at = now();
    store.record_usage(&zero).await.unwrap();
    let mut big = usage(Some(SessionId::new()), u64::from(u32::MAX) * 4, 1);
    big.at = now();
    big.cost_usd = Some(12.345_678_9);
    store.record_usage(&big).await.unwrap();

    let all = store.usage_since(start).await.unwrap();
    assert_eq!(all, vec![unreported.clone(), zero.clone(), big.clone()]);
    // "Not reported" stays distinct from zero.
    assert_eq!(all[0].usage.input_tokens, None);
    assert_eq!(all[1].usage.input_tokens, Some(0));
    assert_eq!(store.usage_since(middle).await.unwrap(), vec![zero, big]);
    assert!(store.usage_since(now() + chrono::Duration::seconds(1)).await.unwrap().is_empty());
}

fn ids(sessions: &[exoclaw_types::SessionInfo]) -> Vec<SessionId> {
    sessions.iter().map(|s| s.id).collect()
}

fn texts(messages: &[Message]) -> Vec<(Role, String)> {
    messages.iter().map(|m| (m.role, m.text())).collect()
}

pub async fn usage_batches_land_whole(store: Store) {
    let since = now() - chrono::Duration::seconds(1);
    // More rows than one SQLite statement may bind, and a remainder of several statement sizes
    // (SQLite inserts them 64 rows at a time, then 4, 2 and 1): every value lands in its row.
    let records: Vec<_> = (0..2503)
        .map(|i| {
            let mut record = usage((i % 2 == 1).then(SessionId::new), i, 1);
            record.ttft_ms = (i % 3 != 0).then_some(i);
            record
        })
        .collect();
    store.record_usage_batch(&records).await.unwrap();
    let stored = store.usage_since(since).await.unwrap();
    assert_eq!(stored.len(), 2503);
    assert_eq!(stored, records);
}

pub async fn keys_are_stored_hashed_named_once_revoked_and_charged(store: Store) {
    let new = |name: &str, hash: &str| NewApiKey {
        name: name.into(),
        hash: hash.into(),
        prefix: "exo-12345678…".into(),
        models: vec!["openai/*".into(), "fast".into()],
        budget_usd: Some(5.0),
        rpm: Some(60),
    };
    let hash_a = "a".repeat(64);
    let created = store.create_key(new("ci", &hash_a)).await.unwrap();
    assert_eq!(created.models, ["openai/*", "fast"]);
    assert_eq!((created.budget_usd, created.spent_usd, created.rpm), (Some(5.0), 0.0, Some(60)));
    // One live key per name.
    match store.create_key(new("ci", &"b".repeat(64))).await {
        Err(StoreError::KeyExists(name)) => assert_eq!(name, "ci"),
        other => panic!("a second live `ci` key: {other:?}"),
    }
    let found = store.key_by_hash(&hash_a).await.unwrap().unwrap();
    assert_eq!(found.id, created.id);
    assert_eq!(found.created_at, created.created_at);
    assert!(store.key_by_hash(&"c".repeat(64)).await.unwrap().is_none());

    store.add_key_spend(&created.id, 0.25).await.unwrap();
    store.add_key_spend(&created.id, 0.5).await.unwrap();
    assert!((store.key_by_hash(&hash_a).await.unwrap().unwrap().spent_usd - 0.75).abs() < 1e-12);

    assert!(store.revoke_key("ci").await.unwrap());
    assert!(!store.revoke_key("ci").await.unwrap(), "revoking twice finds no live key");
    assert!(store.key_by_hash(&hash_a).await.unwrap().unwrap().revoked_at.is_some());
    // The name is free again; the revoked key stays listed, by id too.
    let again = store.create_key(new("ci", &"d".repeat(64))).await.unwrap();
    assert!(store.revoke_key(&again.id).await.unwrap());
    let listed = store.list_keys().await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [created.id.as_str(), again.id.as_str()]
    );
}

pub async fn a_saved_run_is_interrupted_until_its_turn_commits(store: Store) {
    let session = store.create_session(NewSession::default()).await.unwrap();
    assert!(!session.interrupted);
    assert_eq!(store.interrupted_run(session.id).await.unwrap(), None);

    let first = run("what is in src/lib.rs?");
    store.save_run(session.id, &first).await.unwrap();
    assert_eq!(store.interrupted_run(session.id).await.unwrap(), Some(first.clone()));
    assert!(store.session(session.id).await.unwrap().unwrap().interrupted);
    assert!(store.list_sessions(10).await.unwrap()[0].interrupted);
    assert_eq!(store.interrupted_sessions().await.unwrap(), vec![session.id]);

    // Each step replaces the one before.
    let mut second = first.clone();
    second.record_usage(usage(Some(session.id), 2000, 40));
    store.save_run(session.id, &second).await.unwrap();
    assert_eq!(store.interrupted_run(session.id).await.unwrap(), Some(second));
    assert_eq!(store.interrupted_sessions().await.unwrap(), vec![session.id]);

    // Committing the turn ends it: nothing is left to resume.
    store.commit_turn(session.id, &turn(1), &[], None).await.unwrap();
    assert_eq!(store.interrupted_run(session.id).await.unwrap(), None);
    assert!(store.interrupted_sessions().await.unwrap().is_empty());
    let committed = store.session(session.id).await.unwrap().unwrap();
    assert!(!committed.interrupted);
    assert_eq!(committed.message_count, 2);

    // A turn that failed to commit keeps its run.
    store.save_run(session.id, &first).await.unwrap();
    let mut duplicate = turn(2);
    duplicate[1].id = duplicate[0].id;
    assert!(store.commit_turn(session.id, &duplicate, &[], None).await.is_err());
    assert_eq!(store.interrupted_run(session.id).await.unwrap(), Some(first.clone()));

    let unknown = SessionId::new();
    match store.save_run(unknown, &first).await {
        Err(StoreError::SessionNotFound(id)) => assert_eq!(id, unknown),
        other => panic!("a run saved for a missing session: {other:?}"),
    }
    assert_eq!(store.interrupted_run(unknown).await.unwrap(), None);
}

pub async fn interrupted_sessions_are_newest_first_and_go_with_discard_clear_and_delete(store: Store) {
    let mut sessions = Vec::new();
    for n in 0..4 {
        let session = store.create_session(NewSession::default()).await.unwrap();
        store.commit_turn(session.id, &turn(n), &[], None).await.unwrap();
        store.save_run(session.id, &run(&format!("question {n}"))).await.unwrap();
        sessions.push(session.id);
        // Saved at distinct microseconds whatever the clock's resolution.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let bystander = store.create_session(NewSession::default()).await.unwrap();
    let [a, b, c, d] = sessions[..] else { unreachable!() };
    assert_eq!(store.interrupted_sessions().await.unwrap(), vec![d, c, b, a]);
    store.save_run(a, &run("question 0, step 2")).await.unwrap();
    assert_eq!(store.interrupted_sessions().await.unwrap(), vec![a, d, c, b]);

    store.discard_run(b).await.unwrap();
    store.discard_run(b).await.unwrap();
    store.discard_run(bystander.id).await.unwrap();
    assert_eq!(store.interrupted_run(b).await.unwrap(), None);
    assert_eq!(store.messages(b).await.unwrap().len(), 2, "discarding keeps the committed turns");

    store.clear_session(c).await.unwrap();
    assert_eq!(store.interrupted_run(c).await.unwrap(), None);
    assert!(store.delete_session(d).await.unwrap());
    assert_eq!(store.interrupted_run(d).await.unwrap(), None);

    assert_eq!(store.interrupted_sessions().await.unwrap(), vec![a]);
    let flags: Vec<_> =
        store.list_sessions(10).await.unwrap().iter().map(|s| (s.id, s.interrupted)).collect();
    // Clearing bumps the session's `updated_at`; saving and discarding runs do not.
    assert_eq!(flags, vec![(c, false), (bystander.id, false), (b, false), (a, true)]);
}

pub async fn a_locked_session_refuses_a_second_lock_that_will_not_wait(store: Store) {
    // Locks need no stored session: a front end may lock an id before it creates the session.
    let session = SessionId::new();
    let lease = store.lock_session(session, false).await.unwrap();
    assert_eq!(lease.session(), session);
    let refused = store.lock_session(session, false).await.unwrap_err();
    let message = refused.to_string();
    match refused {
        StoreError::SessionLocked { session: locked, holder } => {
            assert_eq!(locked, session);
            assert!(holder.contains(&format!("pid {} (", std::process::id())), "{holder}");
        }
        other => panic!("a second lock: {other:?}"),
    }
    assert!(message.contains(&session.to_string()) && message.contains("--no-wait"), "{message}");

    // Other sessions are not affected.
    let other = store.lock_session(SessionId::new(), false).await.unwrap();
    drop(other);

    // Dropping the lease lets the next one have it, without waiting.
    drop(lease);
    let again = store.lock_session(session, false).await.unwrap();
    drop(again);
}

pub async fn a_waiting_lock_gets_the_session_when_the_holder_lets_go(store: Store) {
    let session = SessionId::new();
    let lease = store.lock_session(session, false).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let waiter = tokio::spawn({
        let (store, events) = (store.clone(), Arc::clone(&events));
        async move {
            let lease = store.lock_session(session, true).await.unwrap();
            events.lock().unwrap().push("waiter locked");
            lease
        }
    });
    // Long enough for the waiter to be waiting; it must still be.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the waiter got a lock that is held");
    events.lock().unwrap().push("holder let go");
    drop(lease);
    let second = tokio::time::timeout(Duration::from_secs(30), waiter).await.unwrap().unwrap();
    assert_eq!(*events.lock().unwrap(), ["holder let go", "waiter locked"]);
    assert_eq!(second.session(), session);
    // The waiter holds it now.
    assert!(matches!(store.lock_session(session, false).await, Err(StoreError::SessionLocked { .. })));
}

/// A stored run that cannot be read is a `Corrupt` error (never a panic) naming the session, and
/// can be discarded. `corrupt` overwrites the stored run of a session with something that is not
/// a run, as only the backend's own SQL can.
/// The audit log keeps every entry whole and gives the newest first, by session and by tool.
pub async fn the_audit_log_keeps_entries_whole_newest_first_and_filters_them(store: Store) {
    let (mine, other) = (SessionId::new(), SessionId::new());
    let entries: Vec<AuditEntry> = vec![
        audit(
            Some(mine),
            "shell",
            AuditEvent::Decided {
                permission: Permission::Ask,
                reason: Reason::EffectDefault { effect: ToolEffect::Mutating },
            },
        ),
        audit(
            Some(mine),
            "shell",
            AuditEvent::Answered {
                decision: Decision::ApproveAlways,
                remembered: vec![Rule::new("shell", Permission::Allow).command("git status")],
            },
        ),
        audit(Some(mine), "shell", AuditEvent::Executed { ok: true, duration_ms: 12 }),
        audit(
            Some(other),
            "http_fetch",
            AuditEvent::Decided {
                permission: Permission::Deny,
                reason: Reason::Rule(std::sync::Arc::new(RuleEntry {
                    rule: Rule::new("http_fetch", Permission::Deny).host("*.evil.test"),
                    scope: Scope::Project,
                    file: Some("/w/.exoclaw/permissions.toml".into()),
                })),
            },
        ),
        audit(None, "write_file", AuditEvent::Executed { ok: false, duration_ms: 0 }),
    ];
    assert!(store.audit_entries(&AuditQuery::default()).await.unwrap().is_empty());
    store.record_audit(&entries[..2]).await.unwrap();
    store.record_audit(&entries[2..]).await.unwrap();
    store.record_audit(&[]).await.unwrap();

    let newest_first: Vec<AuditEntry> = entries.iter().rev().cloned().collect();
    assert_eq!(store.audit_entries(&AuditQuery::default()).await.unwrap(), newest_first);
    let query = |session: Option<SessionId>, tool: Option<&str>, limit: u32| AuditQuery {
        session,
        tool: tool.map(str::to_owned),
        limit,
    };
    assert_eq!(store.audit_entries(&query(Some(mine), None, 50)).await.unwrap(), newest_first[2..].to_vec());
    assert_eq!(
        store.audit_entries(&query(None, Some("http_fetch"), 50)).await.unwrap(),
        vec![entries[3].clone()]
    );
    assert_eq!(
        store.audit_entries(&query(Some(mine), Some("shell"), 2)).await.unwrap(),
        newest_first[2..4].to_vec()
    );
    assert!(store.audit_entries(&query(Some(other), Some("shell"), 50)).await.unwrap().is_empty());
    // Deleting a session keeps its trail.
    let created = store.create_session(NewSession { id: Some(mine), ..NewSession::default() }).await.unwrap();
    assert!(store.delete_session(created.id).await.unwrap());
    assert_eq!(store.audit_entries(&query(Some(mine), None, 50)).await.unwrap().len(), 3);
}

pub async fn a_channels_latest_connection_state_replaces_older_ones(store: Store) {
    assert_eq!(store.channel_health().await.unwrap(), Vec::new());
    let at = |seconds: i64| now() + chrono::Duration::seconds(seconds);
    let state = |channel: &str, since, error: Option<&str>| ChannelHealth {
        channel: channel.into(),
        connected: error.is_none(),
        since,
        error: error.map(str::to_owned),
    };
    store.record_channel_health(&state("kadi", at(0), None)).await.unwrap();
    let dropped = state("discord", at(1), Some("the connection dropped; reconnecting"));
    store.record_channel_health(&dropped).await.unwrap();
    let down = state("kadi", at(2), Some("no answer within 15 s"));
    store.record_channel_health(&down).await.unwrap();
    // A report older than the one kept (another gateway's, late) does not replace it.
    store.record_channel_health(&state("kadi", at(-5), None)).await.unwrap();
    assert_eq!(store.channel_health().await.unwrap(), vec![dropped, down]);
}

fn audit(session: Option<SessionId>, tool: &str, event: AuditEvent) -> AuditEntry {
    AuditEntry {
        at: now(),
        session_id: session,
        agent: "default".into(),
        call_id: format!("call_{tool}"),
        tool: tool.into(),
        effect: ToolEffect::Mutating,
        resources: vec![Resource::Command("git status --short".into()), Resource::Path("src/ü.rs".into())],
        event,
    }
}

pub async fn a_corrupt_run_is_an_error_that_discarding_clears<F, Fut>(store: Store, corrupt: F)
where
    F: FnOnce(SessionId) -> Fut,
    Fut: Future<Output = ()>,
{
    let session = store.create_session(NewSession::default()).await.unwrap();
    store.save_run(session.id, &run("first")).await.unwrap();
    corrupt(session.id).await;

    match store.interrupted_run(session.id).await {
        Err(StoreError::Corrupt { message, .. }) => {
            assert!(message.contains(&session.id.to_string()), "{message}");
            assert!(message.contains("discard"), "{message}");
        }
        other => panic!("a corrupt run read back as {other:?}"),
    }
    // Listing does not read the run, so the session can still be found and its run discarded.
    assert_eq!(store.interrupted_sessions().await.unwrap(), vec![session.id]);
    assert!(store.session(session.id).await.unwrap().unwrap().interrupted);
    store.discard_run(session.id).await.unwrap();
    assert_eq!(store.interrupted_run(session.id).await.unwrap(), None);
}

/// The variables through which [`hold_a_lock_until_killed`] learns what to lock.
const HOLDER_URL: &str = "EXOCLAW_TEST_LOCK_HOLDER_URL";
const HOLDER_SESSION: &str = "EXOCLAW_TEST_LOCK_HOLDER_SESSION";
/// What the holder says once it holds the lock.
const LOCKED: &str = "lock holder: locked";

/// In a child process (the test binary running `suite::lock_holder_process`): opens the store at
/// `$EXOCLAW_TEST_LOCK_HOLDER_URL`, locks the session, says [`LOCKED`] on stdout and waits to be
/// killed, or for its stdin to close (the test that started it ended without killing it). Does
/// nothing when the variables are not set.
pub async fn hold_a_lock_until_killed() {
    let (Ok(url), Ok(session)) = (std::env::var(HOLDER_URL), std::env::var(HOLDER_SESSION)) else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let session: SessionId = session.parse().unwrap();
    let _lease = store.lock_session(session, false).await.unwrap();
    let mut stdout = std::io::stdout();
    // On a line of its own: libtest's "test … ..." has no line end yet.
    writeln!(stdout, "\n{LOCKED}").unwrap();
    stdout.flush().unwrap();
    let stdin_closed =
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()));
    let _ = stdin_closed.await;
}

/// The lock holder process, killed (if it still runs) when dropped, so a failing test leaves no
/// process behind.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process holding `session`'s lock in the store at `url`, started and waited for until
/// it holds it.
fn start_holder(url: &str, session: SessionId) -> Holder {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "suite::lock_holder_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HOLDER_URL, url)
        .env(HOLDER_SESSION, session.to_string())
        // Kept open until the holder is dropped: its end tells the child to stop.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines() {
        if line.unwrap().trim() == LOCKED {
            return Holder(child);
        }
    }
    let status = child.wait().unwrap();
    panic!("the lock holder process ended ({status}) without taking the lock; its stderr is above");
}

/// A process that holds a session's lock and is killed (SIGKILL: no destructor runs) leaves the
/// session free. Runs on a store that another process can open at `url`.
pub async fn a_killed_holder_releases_its_lock(store: Store, url: String) {
    let session = SessionId::new();
    let mut child = tokio::task::spawn_blocking(move || start_holder(&url, session)).await.unwrap();
    let holder = match store.lock_session(session, false).await {
        Err(StoreError::SessionLocked { holder, .. }) => holder,
        other => panic!("a session locked by another process: {other:?}"),
    };
    assert!(holder.contains(&format!("pid {} (", child.0.id())), "{holder}");

    // SIGKILL: the child runs no destructor, so only the OS (or the server) can release its lock.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(30), store.lock_session(session, true))
        .await
        .expect("the killed process's lock was never released")
        .unwrap();
    assert_eq!(lease.session(), session);
}
