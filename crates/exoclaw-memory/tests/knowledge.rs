//! Knowledge bases on a real SQLite store: what reaches whose turns, documents that change or go,
//! two processes syncing the same folder, and the users' own memory kept apart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::runtime::ContextRequest;
use exoclaw_core::{ContextAssembler, EntryKind, ForgetEntries, MemoryIndex, NewSession, SessionStore};
use exoclaw_memory::{EVERY_AGENT, KnowledgeBases, LOCAL_OWNER, Memory, MemoryOptions, knowledge_owner};
use exoclaw_store::Store;
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use exoclaw_types::Message;
use std::sync::Arc;

const HANDBOOK: &str = "# Holidays\n\nEvery employee gets twenty-seven days of paid leave a year.\n\n\
# Expenses\n\nReceipts go to the finance portal within thirty days.\n";
const RUST_NOTES: &str =
    "# Builds\n\nThe workspace builds with cargo and the nightly clippy is never used.\n";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    handbook: std::path::PathBuf,
    docs: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("memory.db").display().to_string()).await.unwrap();
    let handbook = dir.path().join("handbook");
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&handbook).unwrap();
    std::fs::create_dir_all(docs.join("guides")).unwrap();
    std::fs::write(handbook.join("people.md"), HANDBOOK).unwrap();
    std::fs::write(docs.join("guides/rust.md"), RUST_NOTES).unwrap();
    Fixture { _dir: dir, store, handbook, docs }
}

fn memory(f: &Fixture, store: &Store) -> Memory {
    let mut knowledge = KnowledgeBases::default();
    knowledge.add(EVERY_AGENT, &f.handbook);
    knowledge.add("coder", &f.docs);
    let provider = Arc::new(RespondingProvider::new("script", |_| Outcome::Text("ok".into())));
    Memory::new(Arc::new(store.clone()), Arc::new(store.clone()), provider, MemoryOptions::default())
        .with_knowledge(knowledge)
}

/// The memory block of a first turn of `agent` asking `input`.
async fn context(memory: &Memory, store: &Store, agent: &str, input: &str) -> String {
    let session = store.create_session(NewSession::default()).await.unwrap().id;
    let request =
        ContextRequest { session, key: None, agent, input, revision: 0, model: "script/m", budget: 100_000 };
    let assembled = memory.assemble(request).await.unwrap();
    assembled.messages.first().map(Message::text).unwrap_or_default()
}

async fn passages(store: &Store, agent: &str) -> Vec<String> {
    let mut texts: Vec<String> = store
        .entries(&knowledge_owner(agent), 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Knowledge)
        .map(|e| e.text)
        .collect();
    texts.sort();
    texts
}

#[tokio::test]
async fn an_agents_knowledge_reaches_its_turns_and_every_agents_reaches_all() {
    let f = fixture().await;
    let memory = memory(&f, &f.store);
    let sync = memory.sync_knowledge().await.unwrap();
    assert_eq!((sync.documents, sync.indexed, sync.passages, sync.removed), (2, 2, 3, 0), "{sync:?}");
    assert!(sync.problems.is_empty(), "{:?}", sync.problems);

    let coder = context(&memory, &f.store, "coder", "does the workspace use nightly clippy?").await;
    assert!(coder.contains("## From the knowledge base"), "{coder}");
    assert!(coder.contains("### guides/rust.md › Builds\nThe workspace builds with cargo"), "{coder}");

    let other = context(&memory, &f.store, "default", "how many days of paid leave do I get?").await;
    assert!(other.contains("### people.md › Holidays\nEvery employee gets twenty-seven days"), "{other}");
    let other = context(&memory, &f.store, "default", "does the workspace use nightly clippy?").await;
    assert!(!other.contains("rust.md"), "another agent's knowledge stays its own: {other}");

    let coder = context(&memory, &f.store, "coder", "where do receipts go?").await;
    assert!(coder.contains("people.md › Expenses"), "every agent's knowledge is the coder's too: {coder}");
}

#[tokio::test]
async fn a_first_turn_right_after_start_indexes_the_knowledge_before_it_is_answered() {
    let f = fixture().await;
    let memory = memory(&f, &f.store);
    let block = context(&memory, &f.store, "default", "paid leave days?").await;
    assert!(block.contains("twenty-seven days of paid leave"), "{block}");
}

#[tokio::test]
async fn a_changed_document_replaces_its_passages_and_a_deleted_one_is_removed() {
    let f = fixture().await;
    let memory = memory(&f, &f.store);
    memory.sync_knowledge().await.unwrap();

    let people = f.handbook.join("people.md");
    std::fs::write(&people, HANDBOOK.replace("twenty-seven", "thirty")).unwrap();
    let sync = memory.sync_knowledge().await.unwrap();
    assert_eq!((sync.indexed, sync.removed), (1, 1), "{sync:?}");
    let texts = passages(&f.store, EVERY_AGENT).await.join("\n");
    assert!(texts.contains("thirty days of paid leave"), "{texts}");
    assert!(!texts.contains("twenty-seven"), "the old version's passages are gone: {texts}");
    let block = context(&memory, &f.store, "default", "paid leave days?").await;
    assert!(block.contains("thirty days") && !block.contains("twenty-seven"), "{block}");

    std::fs::remove_file(&people).unwrap();
    let sync = memory.sync_knowledge().await.unwrap();
    assert_eq!((sync.indexed, sync.removed), (0, 1), "{sync:?}");
    assert!(passages(&f.store, EVERY_AGENT).await.is_empty());
    let block = context(&memory, &f.store, "default", "paid leave days?").await;
    assert!(!block.contains("paid leave"), "{block}");
}

#[tokio::test]
async fn a_document_that_cannot_be_read_keeps_what_was_indexed_of_it() {
    let f = fixture().await;
    let memory = memory(&f, &f.store);
    memory.sync_knowledge().await.unwrap();
    // Saved in another encoding by mistake: not UTF-8.
    std::fs::write(f.handbook.join("people.md"), [0xff, 0xfe, b'h', 0, b'i', 0]).unwrap();
    let sync = memory.sync_knowledge().await.unwrap();
    assert_eq!(sync.problems.len(), 1, "{sync:?}");
    assert!(sync.problems[0].contains("people.md is not UTF-8 text"), "{:?}", sync.problems);
    assert_eq!(sync.removed, 0);
    assert!(passages(&f.store, EVERY_AGENT).await.join("\n").contains("twenty-seven"));
}

#[tokio::test]
async fn two_processes_syncing_the_same_folder_at_once_keep_one_copy_of_each_passage() {
    let f = fixture().await;
    // A second handle on the same database file: another process.
    let path = f._dir.path().join("memory.db").display().to_string();
    let other = Store::open(&path).await.unwrap();
    let (a, b) = (memory(&f, &f.store), memory(&f, &other));
    let (first, second) = tokio::join!(a.sync_knowledge(), b.sync_knowledge());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.indexed + second.indexed >= 2, "{first:?} {second:?}");
    let texts = passages(&f.store, EVERY_AGENT).await;
    assert_eq!(texts.len(), 2, "one copy of each of the handbook's two passages: {texts:#?}");
    assert_eq!(passages(&f.store, "coder").await.len(), 1);
    // And each process finds them.
    let block = context(&b, &other, "default", "paid leave days?").await;
    assert!(block.contains("twenty-seven"), "{block}");
}

#[tokio::test]
async fn a_users_search_and_forget_never_reach_the_knowledge_base() {
    let f = fixture().await;
    let memory = memory(&f, &f.store);
    memory.sync_knowledge().await.unwrap();
    let (hits, _) = memory.search(LOCAL_OWNER, "paid leave", 10).await.unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    f.store.forget(LOCAL_OWNER, &ForgetEntries::Containing("leave".into())).await.unwrap();
    assert_eq!(passages(&f.store, EVERY_AGENT).await.len(), 2);
    let (hits, _) = memory.search(&knowledge_owner(EVERY_AGENT), "paid leave", 10).await.unwrap();
    assert!(hits[0].entry.text.starts_with("people.md › Holidays"), "{hits:?}");
}

#[test]
fn a_passage_names_its_document_and_section() {
    let cut = exoclaw_memory::knowledge::passages("guides/rust.md", RUST_NOTES);
    assert_eq!(
        cut,
        vec![
            "guides/rust.md › Builds\nThe workspace builds with cargo and the nightly clippy is never used."
        ]
    );
}
