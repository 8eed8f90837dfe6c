//! What every long-term memory store must do, written once over the [`MemoryStore`] trait object
//! (not [`exoclaw_store::Store`]) so that any adapter runs the same scenarios. Each scenario gets
//! a fresh, empty store; the `pair` scenarios get two handles on one database.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use exoclaw_core::{
    EntryKind, FactRecorded, ForgetEntries, MemoryEntry, MemoryStore, NewEntry, NewFact, ScoredEntry, Summary,
};
use exoclaw_types::{Role, SessionId};
use pretty_assertions::assert_eq;

/// A fixed time `secs` seconds after a base, whole microseconds like every stored time.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

/// A user message of `owner` in `session` at position `seq`, written `seq` seconds after the base.
fn message(owner: &str, session: SessionId, seq: u64, text: &str) -> NewEntry {
    NewEntry {
        owner: owner.into(),
        session,
        kind: EntryKind::Message,
        seq,
        role: Some(Role::User),
        text: text.into(),
        created_at: at(seq as i64),
        embedding: None,
    }
}

fn embedded(mut entry: NewEntry, embedding: &[f32]) -> NewEntry {
    entry.embedding = Some(embedding.to_vec());
    entry
}

fn texts(found: &[ScoredEntry]) -> Vec<&str> {
    found.iter().map(|s| s.entry.text.as_str()).collect()
}

fn fact(owner: &str, predicate: &str, object: &str, single_valued: bool, valid_from: i64) -> NewFact {
    NewFact {
        owner: owner.into(),
        subject: "user".into(),
        predicate: predicate.into(),
        object: object.into(),
        confidence: 0.7,
        single_valued,
        source: None,
        valid_from: at(valid_from),
    }
}

fn new_id(recorded: FactRecorded) -> (i64, Vec<i64>) {
    match recorded {
        FactRecorded::New { id, superseded } => (id, superseded),
        other => panic!("expected a new fact, got {other:?}"),
    }
}

pub async fn indexing_an_entry_twice_keeps_one(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    let first = message("alice", session, 0, "I moved to Lyon");
    store.index(std::slice::from_ref(&first)).await.unwrap();
    store.index(std::slice::from_ref(&first)).await.unwrap();
    let mut changed = embedded(message("alice", session, 0, "I moved to Lyon in May"), &[1.0, 0.0]);
    changed.role = Some(Role::Assistant);
    // Twice in one batch too: the last one wins.
    store.index(&[first.clone(), changed.clone()]).await.unwrap();

    let entries = store.entries("alice", 10).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(
        (entry.owner.as_str(), entry.session, entry.kind, entry.seq, entry.role, entry.text.as_str()),
        ("alice", session, EntryKind::Message, 0, Some(Role::Assistant), "I moved to Lyon in May")
    );
    assert_eq!(entry.created_at, changed.created_at);
    // The full-text index followed: the old text is gone, the new one found once.
    assert_eq!(texts(&store.search_text("alice", "May", 10).await.unwrap()), vec!["I moved to Lyon in May"]);
    assert_eq!(store.search_text("alice", "Lyon", 10).await.unwrap().len(), 1);
    assert_eq!(store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap().len(), 1);
}

pub async fn indexed_messages_count_from_the_highest_seq(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    assert_eq!(store.indexed_messages(session).await.unwrap(), 0);
    store.index(&[message("alice", session, 0, "one"), message("alice", session, 1, "two")]).await.unwrap();
    assert_eq!(store.indexed_messages(session).await.unwrap(), 2);
    // Summaries and notes are not messages; another session's messages are not this one's.
    let mut note = message("alice", session, 9, "remember the milk");
    note.kind = EntryKind::Note;
    store.index(&[note, message("alice", SessionId::new(), 7, "elsewhere")]).await.unwrap();
    assert_eq!(store.indexed_messages(session).await.unwrap(), 2);
    store.index(&[message("alice", session, 4, "five")]).await.unwrap();
    assert_eq!(store.indexed_messages(session).await.unwrap(), 5);
}

pub async fn text_search_finds_stemmed_words(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 0, "My sister lives in Lyon"),
            message("alice", session, 1, "The weather is nice today"),
        ])
        .await
        .unwrap();
    let found = store.search_text("alice", "Where does she live?", 10).await.unwrap();
    assert_eq!(texts(&found), vec!["My sister lives in Lyon"]);
    assert!(found[0].score > 0.0, "{found:?}");
}

pub async fn text_search_gives_back_each_entry_exactly_as_indexed(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    // Quotes, backslashes, control characters, a line break, text beyond the BMP: what a chat holds.
    let text = "Lyon \"café\" \\ path\\to\tfile\nline two \u{1}\u{1f}é 🦀 \u{10ffff}";
    let mut summary = message("alice", session, 3, text);
    summary.kind = EntryKind::Summary;
    summary.role = None;
    store.index(&[message("alice", session, 2, text), summary]).await.unwrap();
    let found = store.search_text("alice", "Lyon", 10).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    for hit in &found {
        let entry = &hit.entry;
        assert_eq!((entry.owner.as_str(), entry.session, entry.text.as_str()), ("alice", session, text));
        assert!(hit.score > 0.0, "{hit:?}");
        match entry.kind {
            EntryKind::Message => {
                assert_eq!((entry.seq, entry.role, entry.created_at), (2, Some(Role::User), at(2)))
            }
            EntryKind::Summary => assert_eq!((entry.seq, entry.role, entry.created_at), (3, None, at(3))),
            other => panic!("unexpected kind {other:?}"),
        }
    }
}

pub async fn text_search_ranks_the_better_match_first(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 0, "Lyon has wonderful food and old streets"),
            message("alice", session, 1, "I moved to Lyon in the spring last year"),
            message("alice", session, 2, "Nothing much happened there, really"),
        ])
        .await
        .unwrap();
    let found = store.search_text("alice", "when I moved to Lyon", 10).await.unwrap();
    assert_eq!(
        texts(&found),
        vec!["I moved to Lyon in the spring last year", "Lyon has wonderful food and old streets"]
    );
    assert!(found[0].score > found[1].score, "{found:?}");
    assert_eq!(store.search_text("alice", "when I moved to Lyon", 1).await.unwrap().len(), 1);
}

pub async fn text_search_is_owner_scoped(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 0, "Alice lives in Lyon"),
            message("bob", session, 1, "Bob lives in Lyon"),
        ])
        .await
        .unwrap();
    assert_eq!(texts(&store.search_text("alice", "Lyon", 10).await.unwrap()), vec!["Alice lives in Lyon"]);
    assert_eq!(texts(&store.search_text("bob", "Lyon", 10).await.unwrap()), vec!["Bob lives in Lyon"]);
    assert!(store.search_text("carol", "Lyon", 10).await.unwrap().is_empty());
}

/// Enough entries that common words are in over a thousand each: SQLite then ranks only the
/// entries with a question's rarer words, which must still be the best ones, and only the owner's.
pub async fn text_search_among_thousands_of_matches_keeps_the_best_and_the_owners(
    store: Arc<dyn MemoryStore>,
) {
    let (alices, bobs) = (SessionId::new(), SessionId::new());
    let mut entries: Vec<NewEntry> =
        (0..1_200).map(|seq| message("bob", bobs, seq, &format!("tea break number {seq}"))).collect();
    entries.extend((0..1_100).map(|seq| message("alice", alices, seq, "more coffee, please")));
    entries.extend([
        message("alice", alices, 1_100, "my sister drinks her coffee in Lyon"),
        message("alice", alices, 1_101, "my sister lives in Lyon"),
        message("alice", alices, 1_102, "a sister in Tokyo"),
    ]);
    for batch in entries.chunks(500) {
        store.index(batch).await.unwrap();
    }
    let found = store.search_text("alice", "does my sister like coffee in Lyon?", 2).await.unwrap();
    let mut best = texts(&found);
    best.sort_unstable();
    assert_eq!(best, vec!["my sister drinks her coffee in Lyon", "my sister lives in Lyon"]);
    let found = store.search_text("alice", "does my sister like coffee in Lyon?", 5).await.unwrap();
    assert_eq!(found.len(), 5, "{found:?}");
    assert_eq!(texts(&found[2..]), vec!["a sister in Tokyo", "more coffee, please", "more coffee, please"]);
    // Another owner's matches, however many, are never found.
    assert!(store.search_text("alice", "a tea break", 10).await.unwrap().is_empty());
    assert!(store.search_text("bob", "coffee in Lyon", 10).await.unwrap().is_empty());
    assert_eq!(store.search_text("bob", "tea", 20).await.unwrap().len(), 20);
}

pub async fn text_search_never_fails_on_hostile_queries(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store.index(&[message("alice", session, 0, "I moved to Lyon, it's lovely")]).await.unwrap();
    for query in [
        "",
        " ",
        "\"",
        "\"lyon",
        "*",
        "lyon*",
        "NEAR(",
        "NEAR(lyon moved",
        ":",
        "text:lyon",
        "'",
        "it's",
        "🎉",
        "🎉lyon🎉",
        "AND",
        "lyon AND OR NOT",
        "(a OR",
        "^lyon",
        "-lyon",
        "\\",
        "&|!<->",
        "a:*",
        "lyon & !moved",
        "{col}",
        "\u{0}",
        "lyon\nmoved",
    ] {
        let found = store.search_text("alice", query, 10).await.unwrap_or_else(|e| panic!("{query:?}: {e}"));
        assert!(found.len() <= 1, "{query:?}: {found:?}");
    }
    for query in ["", "\"", "*", ":", "'", "🎉", "&|!<->"] {
        assert!(store.search_text("alice", query, 10).await.unwrap().is_empty(), "{query:?}");
    }
    for query in ["lyon*", "NEAR(lyon moved", "text:lyon", "🎉lyon🎉", "\"lyon"] {
        assert_eq!(store.search_text("alice", query, 10).await.unwrap().len(), 1, "{query:?}");
    }
}

pub async fn embedding_search_returns_the_nearest_first(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            embedded(message("alice", session, 0, "east"), &[1.0, 0.0, 0.0, 0.0]),
            embedded(message("alice", session, 1, "north-east"), &[0.8, 0.6, 0.0, 0.0]),
            embedded(message("alice", session, 2, "north"), &[0.0, 2.0, 0.0, 0.0]),
            embedded(message("alice", session, 3, "west"), &[-1.0, 0.0, 0.0, 0.0]),
            embedded(message("bob", session, 4, "bob's east"), &[1.0, 0.0, 0.0, 0.0]),
        ])
        .await
        .unwrap();
    let found = store.search_embedding("alice", &[3.0, 0.0, 0.0, 0.0], 10).await.unwrap();
    assert_eq!(texts(&found), vec!["east", "north-east", "north", "west"]);
    let scores: Vec<f32> = found.iter().map(|s| s.score).collect();
    for (score, expected) in scores.iter().zip([1.0, 0.8, 0.0, -1.0]) {
        assert!((score - expected).abs() < 1e-5, "cosine similarities {scores:?}");
    }
    assert_eq!(
        texts(&store.search_embedding("alice", &[0.0, 1.0, 0.0, 0.0], 2).await.unwrap()),
        vec!["north", "north-east"]
    );
    assert!(store.search_embedding("alice", &[1.0, 0.0, 0.0, 0.0], 0).await.unwrap().is_empty());
    // A query with no direction is near nothing.
    assert!(store.search_embedding("alice", &[0.0; 4], 10).await.unwrap().is_empty());
    assert!(store.search_embedding("carol", &[1.0, 0.0, 0.0, 0.0], 10).await.unwrap().is_empty());
}

pub async fn embedding_search_skips_entries_without_embeddings_or_of_other_dimensions(
    store: Arc<dyn MemoryStore>,
) {
    let session = SessionId::new();
    store
        .index(&[
            embedded(message("alice", session, 0, "four"), &[1.0, 0.0, 0.0, 0.0]),
            message("alice", session, 1, "none"),
            embedded(message("alice", session, 2, "three"), &[1.0, 0.0, 0.0]),
            embedded(message("alice", session, 3, "empty"), &[]),
        ])
        .await
        .unwrap();
    assert_eq!(
        texts(&store.search_embedding("alice", &[1.0, 0.0, 0.0, 0.0], 10).await.unwrap()),
        vec!["four"]
    );
    assert_eq!(texts(&store.search_embedding("alice", &[1.0, 0.0, 0.0], 10).await.unwrap()), vec!["three"]);
    assert!(store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap().is_empty());
}

pub async fn embedding_search_follows_this_stores_writes(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store.index(&[embedded(message("alice", session, 0, "east"), &[1.0, 0.0])]).await.unwrap();
    assert_eq!(texts(&store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap()), vec!["east"]);
    store.index(&[embedded(message("alice", session, 1, "north"), &[0.0, 1.0])]).await.unwrap();
    assert_eq!(texts(&store.search_embedding("alice", &[0.0, 1.0], 1).await.unwrap()), vec!["north"]);
    // Re-indexed with another embedding: found by the new one.
    store.index(&[embedded(message("alice", session, 0, "east, now west"), &[-1.0, 0.0])]).await.unwrap();
    assert_eq!(
        texts(&store.search_embedding("alice", &[-1.0, 0.0], 1).await.unwrap()),
        vec!["east, now west"]
    );
    let north = store.search_embedding("alice", &[0.0, 1.0], 1).await.unwrap()[0].entry.id;
    assert_eq!(store.forget("alice", &ForgetEntries::Ids(vec![north])).await.unwrap(), 1);
    assert_eq!(
        texts(&store.search_embedding("alice", &[0.0, 1.0], 10).await.unwrap()),
        vec!["east, now west"]
    );
    store.forget("alice", &ForgetEntries::Session(session)).await.unwrap();
    assert!(store.search_embedding("alice", &[0.0, 1.0], 10).await.unwrap().is_empty());
}

pub async fn entries_indexed_without_embeddings_are_listed_then_embedded_under_new_ids(
    store: Arc<dyn MemoryStore>,
) {
    let (session, other) = (SessionId::new(), SessionId::new());
    store
        .index(&[
            message("alice", session, 0, "east"),
            embedded(message("alice", session, 1, "north"), &[0.0, 1.0]),
            message("alice", session, 2, "west"),
            message("bob", other, 0, "bob's east"),
        ])
        .await
        .unwrap();
    // Loads the cache of Alice's embeddings, so that what follows must bring it along.
    assert_eq!(texts(&store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap()), vec!["north"]);

    let pending = store.unembedded(10).await.unwrap();
    let pending_texts: Vec<&str> = pending.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(pending_texts, vec!["east", "west", "bob's east"], "every owner's, oldest first");
    assert_eq!(store.unembedded(2).await.unwrap().len(), 2);

    let (east, west, bobs) = (pending[0].id, pending[1].id, pending[2].id);
    let embedded_now = store.embed_entries(&[(east, vec![1.0, 0.0]), (bobs, vec![1.0, 0.0])]).await.unwrap();
    assert_eq!(embedded_now, 2);
    let found = store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap();
    assert_eq!(texts(&found), vec!["east", "north"]);
    assert_ne!(found[0].entry.id, east, "an embedded entry gets a new id");
    let entry = &found[0].entry;
    assert_eq!(
        (entry.session, entry.seq, entry.role, entry.created_at),
        (session, 0, Some(Role::User), at(0))
    );
    assert_eq!(texts(&store.search_embedding("bob", &[1.0, 0.0], 10).await.unwrap()), vec!["bob's east"]);
    assert_eq!(texts(&store.search_text("alice", "east", 10).await.unwrap()), vec!["east"]);
    assert_eq!(store.entries("alice", 10).await.unwrap().len(), 3, "replaced, not added");

    // Embedded already, or forgotten meanwhile: left as they are.
    assert_eq!(store.forget("alice", &ForgetEntries::Ids(vec![west])).await.unwrap(), 1);
    let again = store.embed_entries(&[(east, vec![0.0, 1.0]), (west, vec![-1.0, 0.0])]).await.unwrap();
    assert_eq!(again, 0);
    assert!(store.entries("alice", 10).await.unwrap().iter().all(|e| e.text != "west"), "not brought back");
    assert_eq!(texts(&store.search_embedding("alice", &[1.0, 0.0], 1).await.unwrap()), vec!["east"]);
    assert!(store.unembedded(10).await.unwrap().is_empty());
    assert_eq!(store.embed_entries(&[]).await.unwrap(), 0);
    assert_eq!(store.indexed_messages(session).await.unwrap(), 3, "the indexing mark is not moved");
}

pub async fn entries_whose_embedding_was_refused_are_no_longer_listed_but_found_by_text(
    store: Arc<dyn MemoryStore>,
) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 0, "a text the embedder refuses"),
            message("alice", session, 1, "an ordinary text"),
            embedded(message("alice", session, 2, "embedded already"), &[1.0, 0.0]),
        ])
        .await
        .unwrap();
    let pending = store.unembedded(10).await.unwrap();
    assert_eq!(texts_of(&pending), vec!["a text the embedder refuses", "an ordinary text"]);
    let (refused, ordinary) = (pending[0].id, pending[1].id);
    let embedded_already = store.entries("alice", 10).await.unwrap()[0].id;

    // An entry with an embedding, or one not there, is not marked.
    assert_eq!(store.refuse_embeddings(&[refused, embedded_already, 999_999]).await.unwrap(), 1);
    assert_eq!(store.refuse_embeddings(&[refused]).await.unwrap(), 0, "marked once");
    assert_eq!(store.refuse_embeddings(&[]).await.unwrap(), 0);
    assert_eq!(texts_of(&store.unembedded(10).await.unwrap()), vec!["an ordinary text"]);
    assert_eq!(
        texts(&store.search_text("alice", "refuses", 10).await.unwrap()),
        vec!["a text the embedder refuses"],
        "found by its words still"
    );
    assert_eq!(store.embed_entries(&[(ordinary, vec![0.0, 1.0])]).await.unwrap(), 1);
    assert!(store.unembedded(10).await.unwrap().is_empty());

    // Indexed again (its text changed, say), it waits for an embedding again.
    store.index(&[message("alice", session, 0, "a text the embedder takes now")]).await.unwrap();
    assert_eq!(texts_of(&store.unembedded(10).await.unwrap()), vec!["a text the embedder takes now"]);
}

fn texts_of(entries: &[MemoryEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.text.as_str()).collect()
}

/// `store` and `other` are two handles on one database (two processes, or two nodes).
pub async fn embedding_search_sees_another_handles_writes(
    store: Arc<dyn MemoryStore>,
    other: Arc<dyn MemoryStore>,
) {
    let session = SessionId::new();
    store.index(&[embedded(message("alice", session, 0, "east"), &[1.0, 0.0, 0.0])]).await.unwrap();
    // Loads `store`'s cache.
    assert_eq!(texts(&store.search_embedding("alice", &[1.0, 0.0, 0.0], 10).await.unwrap()), vec!["east"]);

    // Added elsewhere.
    other.index(&[embedded(message("alice", session, 1, "north"), &[0.0, 1.0, 0.0])]).await.unwrap();
    assert_eq!(texts(&store.search_embedding("alice", &[0.0, 1.0, 0.0], 1).await.unwrap()), vec!["north"]);

    // Replaced elsewhere with another embedding.
    other.index(&[embedded(message("alice", session, 0, "up"), &[0.0, 0.0, 1.0])]).await.unwrap();
    let found = store.search_embedding("alice", &[0.0, 0.0, 1.0], 10).await.unwrap();
    assert_eq!(texts(&found), vec!["up", "north"]);
    assert!((found[0].score - 1.0).abs() < 1e-5, "{found:?}");

    // Forgotten elsewhere.
    other.forget("alice", &ForgetEntries::Containing("north".into())).await.unwrap();
    assert_eq!(texts(&store.search_embedding("alice", &[0.0, 1.0, 0.0], 10).await.unwrap()), vec!["up"]);

    // Forgotten and added elsewhere between two searches.
    other.forget("alice", &ForgetEntries::Session(session)).await.unwrap();
    other.index(&[embedded(message("alice", SessionId::new(), 0, "down"), &[0.0, 0.0, -1.0])]).await.unwrap();
    assert_eq!(texts(&store.search_embedding("alice", &[0.0, 0.0, 1.0], 10).await.unwrap()), vec!["down"]);
}

pub async fn forgetting_by_ids_is_owner_scoped(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            embedded(message("alice", session, 0, "alice in Lyon"), &[1.0, 0.0]),
            message("alice", session, 1, "alice in Paris"),
            embedded(message("bob", session, 2, "bob in Lyon"), &[1.0, 0.0]),
        ])
        .await
        .unwrap();
    let ids: Vec<i64> = store.entries("alice", 10).await.unwrap().iter().map(|e| e.id).collect();
    let bob: Vec<i64> = store.entries("bob", 10).await.unwrap().iter().map(|e| e.id).collect();
    let lyon = store.search_text("alice", "Lyon", 1).await.unwrap()[0].entry.id;
    assert_eq!(store.forget("alice", &ForgetEntries::Ids(vec![lyon, bob[0], -5])).await.unwrap(), 1);
    assert_eq!(texts(&store.search_text("bob", "Lyon", 10).await.unwrap()), vec!["bob in Lyon"]);
    assert!(store.search_text("alice", "Lyon", 10).await.unwrap().is_empty());
    assert!(store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap().is_empty());
    assert_eq!(store.search_embedding("bob", &[1.0, 0.0], 10).await.unwrap().len(), 1);
    assert_eq!(store.forget("alice", &ForgetEntries::Ids(ids)).await.unwrap(), 1);
    assert_eq!(store.forget("alice", &ForgetEntries::Ids(Vec::new())).await.unwrap(), 0);
    assert!(store.entries("alice", 10).await.unwrap().is_empty());
}

pub async fn forgetting_a_session_is_owner_scoped(store: Arc<dyn MemoryStore>) {
    let (session, other) = (SessionId::new(), SessionId::new());
    store
        .index(&[
            message("alice", session, 0, "one"),
            message("alice", session, 1, "two"),
            message("bob", session, 2, "bob's"),
            message("alice", other, 0, "another session"),
        ])
        .await
        .unwrap();
    assert_eq!(store.forget("alice", &ForgetEntries::Session(session)).await.unwrap(), 2);
    let left: Vec<String> = store.entries("alice", 10).await.unwrap().into_iter().map(|e| e.text).collect();
    assert_eq!(left, vec!["another session"]);
    assert_eq!(store.entries("bob", 10).await.unwrap().len(), 1);
    assert_eq!(store.forget("alice", &ForgetEntries::Session(session)).await.unwrap(), 0);
}

pub async fn forgotten_messages_stay_counted_as_indexed(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 0, "one"),
            message("alice", session, 1, "two"),
            message("alice", session, 2, "my password is hunter2"),
        ])
        .await
        .unwrap();
    let newest = store.entries("alice", 1).await.unwrap()[0].id;
    assert_eq!(store.forget("alice", &ForgetEntries::Ids(vec![newest])).await.unwrap(), 1);
    // Otherwise the session's next turn would index the forgotten message again.
    assert_eq!(store.indexed_messages(session).await.unwrap(), 3);
    assert_eq!(store.forget("alice", &ForgetEntries::Session(session)).await.unwrap(), 2);
    assert_eq!(store.indexed_messages(session).await.unwrap(), 3);
    // Indexing an earlier message again does not lower the mark either.
    store.index(&[message("alice", session, 0, "one")]).await.unwrap();
    assert_eq!(store.indexed_messages(session).await.unwrap(), 3);
}

pub async fn resetting_a_session_forgets_its_entries_summary_and_mark(store: Arc<dyn MemoryStore>) {
    let (session, other) = (SessionId::new(), SessionId::new());
    let mut note = message("alice", session, 0, "remember the milk");
    note.kind = EntryKind::Note;
    store
        .index(&[
            embedded(message("alice", session, 0, "I moved to Lyon"), &[1.0, 0.0]),
            message("alice", session, 1, "Lyon is lovely"),
            message("bob", session, 2, "Bob visits Lyon"),
            note,
            embedded(message("alice", other, 0, "Lyon again, elsewhere"), &[1.0, 0.0]),
        ])
        .await
        .unwrap();
    // Searched once before, so a cache of embeddings holds the session's.
    assert_eq!(store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap().len(), 2);
    let summary = |session, text: &str| Summary {
        session,
        through: 2,
        text: text.into(),
        model: "anthropic/claude-haiku-4-5".into(),
        created_at: at(2),
    };
    assert!(store.save_summary(&summary(session, "moved to Lyon")).await.unwrap());
    assert!(store.save_summary(&summary(other, "elsewhere")).await.unwrap());

    store.reset_session(session).await.unwrap();

    let left: Vec<String> = store.entries("alice", 10).await.unwrap().into_iter().map(|e| e.text).collect();
    assert_eq!(left, vec!["Lyon again, elsewhere"]);
    assert!(store.entries("bob", 10).await.unwrap().is_empty());
    assert_eq!(texts(&store.search_text("alice", "Lyon", 10).await.unwrap()), vec!["Lyon again, elsewhere"]);
    assert_eq!(
        texts(&store.search_embedding("alice", &[1.0, 0.0], 10).await.unwrap()),
        vec!["Lyon again, elsewhere"]
    );
    assert_eq!(store.summary(session).await.unwrap(), None);
    assert_eq!(store.summary(other).await.unwrap(), Some(summary(other, "elsewhere")));
    assert_eq!(store.indexed_messages(session).await.unwrap(), 0);
    assert_eq!(store.indexed_messages(other).await.unwrap(), 1);
    // The cleared session's new messages start at 0 and are indexed as new.
    store.index(&[message("alice", session, 0, "a fresh start")]).await.unwrap();
    assert_eq!(store.indexed_messages(session).await.unwrap(), 1);
    // Resetting a session with no memory is no error.
    store.reset_session(SessionId::new()).await.unwrap();
}

pub async fn resetting_a_session_keeps_the_facts_learned_from_it(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store.index(&[message("alice", session, 0, "I live in Lyon")]).await.unwrap();
    let mut lives = fact("alice", "lives_in", "Lyon", true, 0);
    lives.source = Some((session, 0));
    let (id, _) = new_id(store.record_fact(&lives).await.unwrap());

    store.reset_session(session).await.unwrap();

    let facts = store.facts("alice", false).await.unwrap();
    assert_eq!(
        facts.iter().map(|f| (f.id, f.object.as_str(), f.source)).collect::<Vec<_>>(),
        vec![(id, "Lyon", Some((session, 0)))]
    );
}

pub async fn forgetting_what_contains_a_text_ignores_case_and_is_owner_scoped(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 0, "I moved to LYON"),
            message("alice", session, 1, "lyonnaise potatoes"),
            message("alice", session, 2, "Paris is fine"),
            message("bob", session, 3, "Lyon too"),
        ])
        .await
        .unwrap();
    assert_eq!(store.forget("alice", &ForgetEntries::Containing("".into())).await.unwrap(), 0);
    assert_eq!(store.forget("alice", &ForgetEntries::Containing("lYoN".into())).await.unwrap(), 2);
    let left: Vec<String> = store.entries("alice", 10).await.unwrap().into_iter().map(|e| e.text).collect();
    assert_eq!(left, vec!["Paris is fine"]);
    assert_eq!(texts(&store.search_text("bob", "lyon", 10).await.unwrap()), vec!["Lyon too"]);
    assert!(store.search_text("alice", "lyon", 10).await.unwrap().is_empty());
}

pub async fn entries_are_listed_newest_first(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    store
        .index(&[
            message("alice", session, 1, "second"),
            message("alice", session, 0, "first"),
            message("alice", session, 2, "third"),
            message("bob", session, 3, "bob's"),
        ])
        .await
        .unwrap();
    let listed: Vec<String> = store.entries("alice", 2).await.unwrap().into_iter().map(|e| e.text).collect();
    assert_eq!(listed, vec!["third", "second"]);
    assert_eq!(store.entries("alice", 10).await.unwrap().len(), 3);
    assert!(store.entries("alice", 0).await.unwrap().is_empty());
}

pub async fn summaries_only_move_forward(store: Arc<dyn MemoryStore>) {
    let session = SessionId::new();
    assert_eq!(store.summary(session).await.unwrap(), None);
    let summary = |through: u64, text: &str| Summary {
        session,
        through,
        text: text.into(),
        model: "anthropic/claude-haiku-4-5".into(),
        created_at: at(through as i64),
    };
    assert!(store.save_summary(&summary(10, "the first ten")).await.unwrap());
    assert_eq!(store.summary(session).await.unwrap(), Some(summary(10, "the first ten")));
    // A slower archival finishing late changes nothing.
    assert!(!store.save_summary(&summary(6, "the first six")).await.unwrap());
    assert!(!store.save_summary(&summary(10, "the first ten, again")).await.unwrap());
    assert_eq!(store.summary(session).await.unwrap(), Some(summary(10, "the first ten")));
    assert!(store.save_summary(&summary(14, "the first fourteen")).await.unwrap());
    assert_eq!(store.summary(session).await.unwrap(), Some(summary(14, "the first fourteen")));
    assert_eq!(store.summary(SessionId::new()).await.unwrap(), None);
}

pub async fn a_fact_with_the_same_object_is_known_and_keeps_the_higher_confidence(
    store: Arc<dyn MemoryStore>,
) {
    let source = SessionId::new();
    let mut first = fact("alice", "lives_in", "Lyon", true, 0);
    first.source = Some((source, 3));
    let (id, superseded) = new_id(store.record_fact(&first).await.unwrap());
    assert!(superseded.is_empty());

    let mut surer = fact("alice", "lives_in", "  lyon ", true, 5);
    surer.confidence = 0.9;
    assert_eq!(store.record_fact(&surer).await.unwrap(), FactRecorded::Known { id });
    let mut less_sure = fact("alice", "lives_in", "LYON", true, 6);
    less_sure.confidence = 0.2;
    assert_eq!(store.record_fact(&less_sure).await.unwrap(), FactRecorded::Known { id });

    let facts = store.facts("alice", true).await.unwrap();
    assert_eq!(facts.len(), 1, "{facts:?}");
    let known = &facts[0];
    assert_eq!((known.id, known.object.as_str(), known.confidence), (id, "Lyon", 0.9));
    assert_eq!((known.subject.as_str(), known.predicate.as_str()), ("user", "lives_in"));
    assert_eq!(known.source, Some((source, 3)));
    assert_eq!(known.valid_from, at(0));
    assert!(known.is_current() && known.superseded_by.is_none());
    // Another owner's identical fact is its own.
    assert!(matches!(
        store.record_fact(&fact("bob", "lives_in", "Lyon", true, 0)).await.unwrap(),
        FactRecorded::New { .. }
    ));
}

pub async fn a_single_valued_fact_supersedes_the_current_one(store: Arc<dyn MemoryStore>) {
    let (paris, _) = new_id(store.record_fact(&fact("alice", "lives_in", "Paris", true, 0)).await.unwrap());
    let (bobs, _) = new_id(store.record_fact(&fact("bob", "lives_in", "Paris", true, 0)).await.unwrap());
    let (lyon, superseded) =
        new_id(store.record_fact(&fact("alice", "lives_in", "Lyon", true, 100)).await.unwrap());
    assert_eq!(superseded, vec![paris]);

    let current = store.facts("alice", false).await.unwrap();
    assert_eq!(current.iter().map(|f| f.id).collect::<Vec<_>>(), vec![lyon]);
    assert!(current[0].is_current());
    let all = store.facts("alice", true).await.unwrap();
    assert_eq!(all.iter().map(|f| f.id).collect::<Vec<_>>(), vec![lyon, paris]);
    let old = &all[1];
    assert_eq!(
        (old.object.as_str(), old.invalidated_at, old.superseded_by),
        ("Paris", Some(at(100)), Some(lyon))
    );
    // Bob still lives in Paris.
    let bob = store.facts("bob", false).await.unwrap();
    assert_eq!(bob.iter().map(|f| f.id).collect::<Vec<_>>(), vec![bobs]);
}

pub async fn multi_valued_facts_coexist(store: Arc<dyn MemoryStore>) {
    let (tea, _) = new_id(store.record_fact(&fact("alice", "likes", "tea", false, 0)).await.unwrap());
    let (coffee, superseded) =
        new_id(store.record_fact(&fact("alice", "likes", "coffee", false, 1)).await.unwrap());
    assert!(superseded.is_empty());
    let current = store.facts("alice", false).await.unwrap();
    assert_eq!(current.iter().map(|f| f.id).collect::<Vec<_>>(), vec![coffee, tea]);
    assert!(current.iter().all(|f| f.is_current()));
}

pub async fn forgetting_a_fact_clears_what_pointed_at_it(store: Arc<dyn MemoryStore>) {
    let (paris, _) = new_id(store.record_fact(&fact("alice", "lives_in", "Paris", true, 0)).await.unwrap());
    let (lyon, _) = new_id(store.record_fact(&fact("alice", "lives_in", "Lyon", true, 100)).await.unwrap());
    // Not another owner's to forget.
    assert!(!store.forget_fact("bob", lyon).await.unwrap());
    assert!(store.forget_fact("alice", lyon).await.unwrap());
    assert!(!store.forget_fact("alice", lyon).await.unwrap());
    let all = store.facts("alice", true).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].id, all[0].superseded_by, all[0].invalidated_at), (paris, None, Some(at(100))));
    assert!(store.facts("alice", false).await.unwrap().is_empty());
}

/// `store` and `other` are two handles on one database: one embeds what the other indexed and
/// searched without embeddings.
pub async fn embedding_search_sees_entries_another_handle_embedded_later(
    store: Arc<dyn MemoryStore>,
    other: Arc<dyn MemoryStore>,
) {
    let session = SessionId::new();
    store
        .index(&[
            embedded(message("alice", session, 0, "east"), &[1.0, 0.0]),
            message("alice", session, 1, "north"),
        ])
        .await
        .unwrap();
    // Loads `store`'s cache.
    assert_eq!(texts(&store.search_embedding("alice", &[0.0, 1.0], 10).await.unwrap()), vec!["east"]);

    let pending = other.unembedded(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(other.embed_entries(&[(pending[0].id, vec![0.0, 1.0])]).await.unwrap(), 1);
    assert_eq!(
        texts(&store.search_embedding("alice", &[0.0, 1.0], 10).await.unwrap()),
        vec!["north", "east"]
    );
}
