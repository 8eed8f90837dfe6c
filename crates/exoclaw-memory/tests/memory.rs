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
use exoclaw_memory::{LOCAL_OWNER, Memory, MemoryOptions, Requester};
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

    let summary = memory
        .archive(session, LOCAL_OWNER, Requester::new("main", "script/m"), None)
        .await
        .unwrap()
        .expect("archived");
    assert_eq!(summary.through, 1);
    assert_eq!(summary.text, "The user asked 1 questions about gardening.");
    assert_eq!(store.summary(session).await.unwrap().as_ref(), Some(&summary), "the summary is stored");
    assert_eq!(store.messages(session).await.unwrap().len(), 21, "no message is deleted");
    assert_eq!(
        memory.archive(session, LOCAL_OWNER, Requester::new("main", "script/m"), None).await.unwrap(),
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
    async fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        self.check()?;
        self.store.unembedded(limit).await
    }
    async fn embed_entries(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError> {
        self.check()?;
        self.store.embed_entries(embeddings).await
    }
    async fn refuse_embeddings(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.check()?;
        self.store.refuse_embeddings(ids).await
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
    memory.after_turn(&report, None).await;
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
    // What the outage's turn said is learned as it is caught up.
    let facts = memory.facts(LOCAL_OWNER, false).await.unwrap();
    let mut predicates: Vec<&str> = facts.iter().map(|f| f.predicate.as_str()).collect();
    predicates.sort_unstable();
    assert_eq!(predicates, ["bicycle", "lives_in"]);
}

#[tokio::test]
async fn facts_said_while_the_memory_store_was_down_are_learned_when_indexing_catches_up() {
    let (_dir, store) = sqlite().await;
    let switchable = Arc::new(Switchable { store: store.clone(), down: AtomicBool::new(false) });
    let memory =
        Memory::new(switchable.clone(), Arc::new(store.clone()), summariser(), MemoryOptions::default());
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    turn(&store, &memory, session, "I live in Paris.").await;

    switchable.down.store(true, Ordering::SeqCst);
    turn(&store, &memory, session, "I moved to Lyon.").await;
    switchable.down.store(false, Ordering::SeqCst);
    let facts = memory.facts(LOCAL_OWNER, false).await.unwrap();
    assert_eq!(facts.iter().map(|f| f.object.as_str()).collect::<Vec<_>>(), ["Paris"], "not learned yet");

    turn(&store, &memory, session, "Thanks.").await;
    let current = memory.facts(LOCAL_OWNER, false).await.unwrap();
    assert_eq!(current.iter().map(|f| f.object.as_str()).collect::<Vec<_>>(), ["Lyon"]);
    assert_eq!(current[0].source, Some((session, 2)), "learned from the message that said it");
    let all = memory.facts(LOCAL_OWNER, true).await.unwrap();
    let paris = all.iter().find(|f| f.object == "Paris").unwrap();
    assert_eq!(paris.superseded_by, Some(current[0].id), "the older value is kept, superseded");
}

#[tokio::test]
async fn facts_of_a_turn_left_unindexed_are_learned_by_the_next_starts_sweep() {
    let (_dir, store) = sqlite().await;
    let switchable = Arc::new(Switchable { store: store.clone(), down: AtomicBool::new(true) });
    let memory =
        Memory::new(switchable.clone(), Arc::new(store.clone()), summariser(), MemoryOptions::default());
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    turn(&store, &memory, session, "My name is Ada.").await;
    drop(memory);

    // The next start, with the store back.
    switchable.down.store(false, Ordering::SeqCst);
    let memory = Memory::new(switchable, Arc::new(store.clone()), summariser(), MemoryOptions::default());
    let unfinished = exoclaw_memory::Unfinished {
        session,
        key: None,
        agent: "main".into(),
        model: "script/m".into(),
        archive: false,
    };
    memory.sweep(&[unfinished]).await;
    let facts = memory.facts(LOCAL_OWNER, false).await.unwrap();
    assert_eq!(
        facts.iter().map(|f| (f.predicate.as_str(), f.object.as_str())).collect::<Vec<_>>(),
        [("name", "Ada")]
    );
    // Caught up once: a second sweep learns nothing twice.
    memory
        .sweep(&[exoclaw_memory::Unfinished {
            session,
            key: None,
            agent: "main".into(),
            model: "script/m".into(),
            archive: false,
        }])
        .await;
    assert_eq!(memory.facts(LOCAL_OWNER, true).await.unwrap().len(), 1);
}

/// Embeds by meaning, as far as these tests go: texts about riding (a bicycle, a bike, riding)
/// point one way, texts about food another, the rest a third. Fails while `failing` is set.
#[derive(Debug, Default)]
struct Meaning {
    failing: AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
    /// A request holding a text that contains this is rejected as a bad request (HTTP 400), as
    /// a provider rejects a text it will not embed.
    refusing: std::sync::Mutex<Option<String>>,
    /// While set, it is not ready (its model being fetched), for this reason.
    not_ready: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl exoclaw_core::Embedder for Meaning {
    async fn embed(
        &self,
        request: exoclaw_types::EmbeddingRequest,
    ) -> Result<exoclaw_types::Embeddings, exoclaw_core::ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(refused) = self.refusing.lock().unwrap().as_deref()
            && request.inputs.iter().any(|text| text.contains(refused))
        {
            return Err(exoclaw_core::ProviderError::new(
                exoclaw_core::ErrorKind::InvalidRequest,
                "meaning",
                "input contains a text that cannot be embedded",
            )
            .with_status(400));
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(exoclaw_core::ProviderError::new(
                exoclaw_core::ErrorKind::Connect,
                "meaning",
                "the embedding server is unreachable",
            ));
        }
        let vectors = request
            .inputs
            .iter()
            .map(|text| {
                let text = text.to_lowercase();
                let about = |words: &[&str]| words.iter().any(|w| text.contains(w));
                match (about(&["bicycle", "bike", "ride"]), about(&["pizza", "pasta", "eat"])) {
                    (true, _) => vec![1.0, 0.0, 0.0],
                    (false, true) => vec![0.0, 1.0, 0.0],
                    (false, false) => vec![0.0, 0.0, 1.0],
                }
            })
            .collect();
        Ok(exoclaw_types::Embeddings { vectors, input_tokens: None })
    }

    fn readiness(&self) -> exoclaw_core::Readiness {
        match self.not_ready.lock().unwrap().clone() {
            Some(reason) => exoclaw_core::Readiness::NotNow(reason),
            None => exoclaw_core::Readiness::Ready,
        }
    }
}

#[tokio::test]
async fn entries_indexed_before_embeddings_were_on_are_found_by_meaning_once_backfilled() {
    let (_dir, store) = sqlite().await;
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    // Embeddings off: indexed for their words alone.
    let without =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default());
    turn(&store, &without, session, "My bicycle is a green Peugeot from 1984.").await;
    turn(&store, &without, session, "Pizza on Fridays, always.").await;
    drop(without);
    assert_eq!(store.unembedded(100).await.unwrap().len(), 4);

    // Turned on, but the embedder is down at the start's sweep: the entries stay pending.
    let embedder = Arc::new(Meaning::default());
    embedder.failing.store(true, Ordering::SeqCst);
    let memory =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default())
            .with_embedder(embedder.clone(), "meaning-1");
    memory.sweep(&[]).await;
    assert_eq!(store.unembedded(100).await.unwrap().len(), 4, "left for the next try");
    let (hits, degraded) = memory.search(LOCAL_OWNER, "what do I ride", 3).await.unwrap();
    assert!(hits.is_empty() && degraded.is_some(), "{hits:?}");

    // Back: the batch after the next turn embeds what was pending, and the bicycle is found by
    // meaning (no word of the question is in it).
    embedder.failing.store(false, Ordering::SeqCst);
    turn(&store, &memory, session, "Thanks.").await;
    assert!(store.unembedded(100).await.unwrap().is_empty());
    let (hits, degraded) = memory.search(LOCAL_OWNER, "what do I ride", 3).await.unwrap();
    assert!(degraded.is_none());
    assert_eq!(hits[0].entry.text, "My bicycle is a green Peugeot from 1984.");
    assert_eq!((hits[0].text_rank, hits[0].embedding_rank), (None, Some(0)));

    // Nothing left: later turns do not look again (one embedder call each, for the turn itself).
    let calls = embedder.calls.load(Ordering::SeqCst);
    turn(&store, &memory, session, "Bye.").await;
    assert_eq!(embedder.calls.load(Ordering::SeqCst), calls + 1);
}

#[tokio::test]
async fn an_entry_the_embedder_refuses_is_set_aside_and_the_others_are_embedded() {
    let (_dir, store) = sqlite().await;
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    let without =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default());
    turn(&store, &without, session, "My bicycle is a green Peugeot from 1984.").await;
    turn(&store, &without, session, "Here is the crash dump: 0xDEADBEEF at frame 7.").await;
    turn(&store, &without, session, "Pizza on Fridays, always.").await;
    drop(without);
    assert_eq!(store.unembedded(100).await.unwrap().len(), 6);

    // The embedder rejects any request holding the dump, as a provider answers 400 to one text.
    let embedder = Arc::new(Meaning::default());
    *embedder.refusing.lock().unwrap() = Some("0xDEADBEEF".into());
    let memory =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default())
            .with_embedder(embedder.clone(), "meaning-1");
    memory.sweep(&[]).await;
    assert!(store.unembedded(100).await.unwrap().is_empty(), "embedded, or set aside");
    let (hits, degraded) = memory.search(LOCAL_OWNER, "what do I ride", 3).await.unwrap();
    assert!(degraded.is_none());
    assert_eq!(hits[0].entry.text, "My bicycle is a green Peugeot from 1984.");
    assert_eq!(hits[0].embedding_rank, Some(0), "found by meaning: the entries after the dump were embedded");
    let (hits, _) = memory.search(LOCAL_OWNER, "crash dump", 3).await.unwrap();
    let dump = hits.iter().find(|h| h.entry.text == "Here is the crash dump: 0xDEADBEEF at frame 7.");
    assert_eq!(dump.map(|h| (h.text_rank, h.embedding_rank)), Some((Some(0), None)), "found by its words");

    // Set aside: later turns do not ask for it again (one embedder call each, for the turn).
    let calls = embedder.calls.load(Ordering::SeqCst);
    turn(&store, &memory, session, "Thanks.").await;
    assert_eq!(embedder.calls.load(Ordering::SeqCst), calls + 1);
}

#[tokio::test]
async fn an_embedder_that_rejects_every_text_sets_nothing_aside() {
    let (_dir, store) = sqlite().await;
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    let without =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default());
    turn(&store, &without, session, "My bicycle is a green Peugeot from 1984.").await;
    turn(&store, &without, session, "Pizza on Fridays, always.").await;
    drop(without);

    // A wrong model, say: every text is a bad request. Nothing is the entries' fault.
    let embedder = Arc::new(Meaning::default());
    *embedder.refusing.lock().unwrap() = Some(String::new());
    let memory =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default())
            .with_embedder(embedder.clone(), "meaning-1");
    assert!(memory.backfill(usize::MAX).await.is_err());
    assert_eq!(store.unembedded(100).await.unwrap().len(), 4, "all wait for the embedder to be fixed");
    // And later tries do not halve the batch again: one call each.
    let calls = embedder.calls.load(Ordering::SeqCst);
    assert!(memory.backfill(1).await.is_err());
    assert_eq!(embedder.calls.load(Ordering::SeqCst), calls + 1);

    // Fixed: everything is embedded.
    *embedder.refusing.lock().unwrap() = None;
    turn(&store, &memory, session, "Thanks.").await;
    assert!(store.unembedded(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_embedder_not_ready_yet_is_said_once_and_what_waited_is_embedded_once_it_is() {
    let (_dir, store) = sqlite().await;
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    let embedder = Arc::new(Meaning::default());
    let fetching = "semantic search starts once the model is fetched";
    *embedder.not_ready.lock().unwrap() = Some(fetching.into());
    let memory =
        Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), summariser(), MemoryOptions::default())
            .with_embedder(embedder.clone(), "meaning-1");

    // The first turn is told, by words the user can act on, and answered from full text.
    let first = memory.assemble(request(session, 0, "What do I ride?", 4_000)).await.unwrap();
    assert_eq!(first.warnings, vec![fetching.to_owned()]);
    turn(&store, &memory, session, "My bicycle is a green Peugeot from 1984.").await;
    // Not the next ones: nothing changed.
    let second = memory.assemble(request(session, 2, "Pizza on Fridays?", 4_000)).await.unwrap();
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    turn(&store, &memory, session, "Pizza on Fridays, always.").await;
    assert_eq!(embedder.calls.load(Ordering::SeqCst), 0, "never called while it is not ready");
    assert_eq!(store.unembedded(100).await.unwrap().len(), 4, "indexed for their words meanwhile");
    let (hits, degraded) = memory.search(LOCAL_OWNER, "Peugeot", 3).await.unwrap();
    assert_eq!(hits[0].entry.text, "My bicycle is a green Peugeot from 1984.");
    assert!(degraded.is_some());

    // Ready: the turn after it embeds what waited, and the bicycle is found by meaning.
    *embedder.not_ready.lock().unwrap() = None;
    turn(&store, &memory, session, "Thanks.").await;
    assert!(store.unembedded(100).await.unwrap().is_empty());
    let (hits, degraded) = memory.search(LOCAL_OWNER, "what do I ride", 3).await.unwrap();
    assert!(degraded.is_none());
    assert_eq!(hits[0].entry.text, "My bicycle is a green Peugeot from 1984.");
    assert_eq!(hits[0].embedding_rank, Some(0));

    // An embedder that fails is said once while it keeps failing the same way, and again when it
    // fails after having answered.
    embedder.failing.store(true, Ordering::SeqCst);
    let warned = |warnings: &[String]| warnings.iter().filter(|w| w.contains("unreachable")).count();
    let down = memory.assemble(request(session, 6, "What do I ride?", 4_000)).await.unwrap();
    assert_eq!(warned(&down.warnings), 1, "{:?}", down.warnings);
    let still = memory.assemble(request(session, 6, "What do I eat?", 4_000)).await.unwrap();
    assert_eq!(warned(&still.warnings), 0, "{:?}", still.warnings);
    embedder.failing.store(false, Ordering::SeqCst);
    let back = memory.assemble(request(session, 6, "What do I ride?", 4_000)).await.unwrap();
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    embedder.failing.store(true, Ordering::SeqCst);
    let again = memory.assemble(request(session, 6, "What do I ride?", 4_000)).await.unwrap();
    assert_eq!(warned(&again.warnings), 1, "{:?}", again.warnings);
}
