//! Memory on a real SQLite store with a scripted model: the seed design's archival flow, and a
//! memory store that goes down mid-session and comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use exoclaw_core::runtime::{AfterTurn, ContextRequest, TurnReport};
use exoclaw_core::{
    ContextAssembler, Fact, FactRecorded, FactStore, ForgetEntries, MemoryEntry, MemoryIndex, NewEntry,
    NewFact, NewSession, ScoredEntry, SessionStore, StoreError, Summary, SummaryStore,
};
use exoclaw_memory::archive::SUMMARY_PROMPT;
use exoclaw_memory::{LOCAL_OWNER, Memory, MemoryOptions};
use exoclaw_store::Store;
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use exoclaw_types::{Message, Role, SessionId, TurnOutcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("memory.db").display().to_string()).await.unwrap();
    (dir, store)
}

/// Answers summary requests with a summary naming how many messages it saw, anything else "ok".
fn summariser() -> Arc<RespondingProvider> {
    Arc::new(RespondingProvider::new("script", |request| {
        if request.system.as_deref() == Some(SUMMARY_PROMPT) {
            let seen = request.messages[0].text().lines().filter(|l| l.starts_with("User: ")).count();
            Outcome::Text(format!("The user asked {seen} questions about gardening."))
        } else {
            Outcome::Text("ok".into())
        }
    }))
}

fn request<'a>(session: SessionId, revision: u64, input: &'a str, budget: usize) -> ContextRequest<'a> {
    ContextRequest { session, key: None, agent: "default", input, revision, model: "script/m", budget }
}

#[tokio::test]
async fn the_seed_flow_twenty_one_messages_archive_one_and_twenty_stay_in_the_window() {
    let (_dir, store) = sqlite().await;
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    let messages: Vec<Message> = (0..21)
        .map(|i| match i % 2 {
            0 => Message::user(format!("question {i} about tomatoes")),
            _ => Message::assistant(format!("answer {i}")),
        })
        .collect();
    store.commit_turn(session, &messages, &[], None).await.unwrap();
    let provider = summariser();
    let memory = Memory::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        provider.clone(),
        MemoryOptions::default(),
    );

    let summary = memory.archive(session, LOCAL_OWNER, "script/m", None).await.unwrap().expect("archived");
    assert_eq!(summary.through, 1);
    assert_eq!(summary.text, "The user asked 1 questions about gardening.");
    assert_eq!(store.summary(session).await.unwrap().as_ref(), Some(&summary), "the summary is stored");
    assert_eq!(store.messages(session).await.unwrap().len(), 21, "no message is deleted");
    assert_eq!(
        memory.archive(session, LOCAL_OWNER, "script/m", None).await.unwrap(),
        None,
        "nothing more to do"
    );

    let revision = store.session(session).await.unwrap().unwrap().revision;
    let context = memory.assemble(request(session, revision, "and now?", 100_000)).await.unwrap();
    assert_eq!(context.messages.len(), 21, "the summary's system message and the window");
    assert_eq!(context.messages[0].role, Role::System);
    assert!(context.messages[0].text().contains("The user asked 1 questions about gardening."));
    let stored = store.messages(session).await.unwrap();
    assert_eq!(&context.messages[1..], &stored[1..], "20 messages stay in the window");
    // The summary is searchable like the messages.
    let (hits, _) = memory.search(LOCAL_OWNER, "gardening", 5).await.unwrap();
    assert!(hits.iter().any(|h| h.entry.kind == exoclaw_core::EntryKind::Summary), "{hits:?}");
}

/// A memory store that fails every call while it is down.
#[derive(Debug)]
struct Switchable {
    store: Store,
    down: AtomicBool,
}

impl Switchable {
    fn check(&self) -> Result<(), StoreError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(StoreError::Database {
                message: "the memory database is unreachable".into(),
                source: None,
            }),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl MemoryIndex for Switchable {
    async fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        self.check()?;
        self.store.index(entries).await
    }
    async fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError> {
        self.check()?;
        self.store.indexed_messages(session).await
    }
    async fn reset_session(&self, session: SessionId) -> Result<(), StoreError> {
        self.check()?;
        self.store.reset_session(session).await
    }
    async fn search_text(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        self.check()?;
        self.store.search_text(owner, query, limit).await
    }
    async fn search_embedding(
        &self,
        owner: &str,
        embedding: &[f32],
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        self.check()?;
        self.store.search_embedding(owner, embedding, limit).await
    }
    async fn entries(&self, owner: &str, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        self.check()?;
        self.store.entries(owner, limit).await
    }
    async fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError> {
        self.check()?;
        self.store.forget(owner, which).await
    }
}

#[async_trait]
impl SummaryStore for Switchable {
    async fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError> {
        self.check()?;
        self.store.save_summary(summary).await
    }
    async fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError> {
        self.check()?;
        self.store.summary(session).await
    }
}

#[async_trait]
impl FactStore for Switchable {
    async fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError> {
        self.check()?;
        self.store.record_fact(fact).await
    }
    async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError> {
        self.check()?;
        self.store.facts(owner, include_superseded).await
    }
    async fn forget_fact(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        self.check()?;
        self.store.forget_fact(owner, id).await
    }
}

/// Commits a turn and runs the memory's after-turn work, as the runtime does.
async fn turn(store: &Store, memory: &Memory, session: SessionId, question: &str) -> TurnReport {
    let messages = vec![Message::user(question), Message::assistant("ok")];
    store.commit_turn(session, &messages, &[], None).await.unwrap();
    let report = TurnReport {
        session_id: session,
        session_key: None,
        agent: "default".into(),
        binding: None,
        model: "script/m".into(),
        outcome: TurnOutcome::Completed,
        stop_reason: None,
        messages,
        usage: Vec::new(),
        error: None,
        resumed: false,
    };
    memory.after_turn(&report).await;
    report
}

#[tokio::test]
async fn a_memory_store_that_goes_down_leaves_turns_going_and_is_caught_up_when_back() {
    let (_dir, store) = sqlite().await;
    let switchable = Arc::new(Switchable { store: store.clone(), down: AtomicBool::new(false) });
    let memory =
        Memory::new(switchable.clone(), Arc::new(store.clone()), summariser(), MemoryOptions::default());
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    turn(&store, &memory, session, "I live in Paris.").await;

    switchable.down.store(true, Ordering::SeqCst);
    let report = turn(&store, &memory, session, "My bicycle is a green Peugeot from 1984.").await;
    assert_eq!(report.outcome, TurnOutcome::Completed);
    let revision = store.session(session).await.unwrap().unwrap().revision;
    let context =
        memory.assemble(request(session, revision, "what bicycle do I have?", 100_000)).await.unwrap();
    assert_eq!(context.messages.len(), 4, "the recent messages alone, no memory block");
    assert!(context.messages.iter().all(|m| m.role != Role::System));
    assert_eq!(context.warnings.len(), 1, "{:?}", context.warnings);
    assert!(
        context.warnings[0].contains("unreachable") && context.warnings[0].contains("recent messages alone"),
        "{}",
        context.warnings[0]
    );

    switchable.down.store(false, Ordering::SeqCst);
    assert_eq!(store.indexed_messages(session).await.unwrap(), 2, "the outage's turn was not indexed");
    turn(&store, &memory, session, "Thanks.").await;
    assert_eq!(store.indexed_messages(session).await.unwrap(), 6, "caught up");
    let (hits, _) = memory.search(LOCAL_OWNER, "Peugeot bicycle", 3).await.unwrap();
    assert_eq!(hits[0].entry.text, "My bicycle is a green Peugeot from 1984.");
    let facts = memory.facts(LOCAL_OWNER, false).await.unwrap();
    assert_eq!(facts.iter().map(|f| f.object.as_str()).collect::<Vec<_>>(), ["Paris"]);
}
