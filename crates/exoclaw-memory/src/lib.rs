//! exoclaw's layered memory, plugged into the runtime as its [`ContextAssembler`] and as
//! [`AfterTurn`] work.
//!
//! - **Context within a budget** ([`compose`]): the agent's soul, what is known about the user,
//!   excerpts of past conversations relevant to the new input, the session's rolling summary,
//!   then as many recent messages as the budget leaves — counted with the tokenizer of the
//!   model answering the turn where exoclaw has it, the [`Estimate`] otherwise ([`Counters`]).
//! - **Archival** ([`Memory::archive`]): once a session has more than `window` messages after
//!   its summary, a model folds the oldest into the summary, in the background. Messages are
//!   never deleted; a failed or killed archival changes nothing and is done again later (after
//!   the session's next turn, or by [`Memory::sweep`] at start).
//! - **Long-term search** ([`Memory::search`]): every message and summary is indexed in the
//!   [`MemoryStore`] — full text, and embeddings when an [`Embedder`] is configured — and found
//!   by [`rank::fuse`]d hybrid ranking with recency weighting.
//! - **Facts** ([`facts`]): extracted from each user message by the model as validated JSON, or
//!   by patterns; a new value of a single-valued fact supersedes the old, which is kept.
//! - **Knowledge bases** ([`knowledge`]): folders of documents an agent, or every agent, draws
//!   on, cut into passages, indexed, kept in line with the files, and searched for each turn.
//! - **Degradation**: when the memory store or the embedder fails, the turn goes on with the
//!   session's recent messages and a warning; indexing catches up after the next turn, and the
//!   facts of the messages it catches up are learned then. Entries indexed without an embedding
//!   (no embedder configured then, or it failed) are embedded later ([`Memory::backfill`]): at
//!   the start sweep, and a batch after turns while some are left.

pub mod archive;
pub mod compose;
pub mod facts;
pub mod knowledge;
pub mod rank;
pub mod soul;
pub mod tokens;
pub mod tools;

use async_trait::async_trait;
use chrono::Utc;
use exoclaw_core::runtime::{
    AfterTurn, AssembleError, Assembled, Committed, ContextRequest, HistoryAssembler, TurnReport,
};
use exoclaw_core::{
    CallFor, Embedder, EntryKind, Fact, MemoryStore, MeteredModels, Metering, ModelCallError, NewEntry,
    NewFact, Payer, Provider, ProviderError, Readiness, SessionStore, StoreError, Summary, UsageStore,
};
use exoclaw_types::{
    CallPurpose, ChatRequest, EmbeddingRequest, GenerationParams, JsonSchemaFormat, Message, ResponseFormat,
    Role, SessionId, SessionKey,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use compose::{Composed, Parts, compose};
pub use knowledge::{EVERY_AGENT, KnowledgeBases, KnowledgeSync, knowledge_owner};
pub use rank::{Hit, Ranking};
pub use soul::Soul;
pub use tokens::{CounterError, CounterSource, Counters, Encoding, Estimate, Tiktoken, TokenCounter};

/// Messages a session keeps in its recent window before the oldest are archived.
pub const DEFAULT_WINDOW: usize = 20;

/// Search results considered for a context's excerpts.
pub const DEFAULT_EXCERPTS: usize = 6;

/// Entries embedded at a time by [`Memory::backfill`]: one embedder call and one write each.
pub const BACKFILL_BATCH: usize = 32;

/// Caught-up user messages whose facts are asked of the model at most (the last ones); earlier
/// ones are read with the patterns, so that catching up a long session costs a few model calls.
pub const MODEL_FACTS_PER_CATCH_UP: usize = 8;

/// The owner of the memories of sessions without a key (the CLI's).
pub const LOCAL_OWNER: &str = "local";

/// How facts are found in what the user says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum FactsMode {
    /// No facts are learned.
    Off,
    /// The patterns only: no model call.
    #[default]
    Patterns,
    /// Ask the model (structured output), falling back to the patterns when it fails.
    Model,
}

/// What a [`Memory`] does, and how much.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// Messages kept in the recent window before archival ([`DEFAULT_WINDOW`]).
    pub window: usize,
    /// The most tokens a context may take, below what the model's window allows.
    pub budget: Option<usize>,
    /// The `provider/model` that writes summaries and extracts facts; the agent's own when `None`.
    pub model: Option<String>,
    /// How facts are found.
    pub facts: FactsMode,
    /// Providers whose models are never asked for facts (the patterns are used instead), such
    /// as the embedded one, whose small model would spend seconds on each turn for little.
    pub patterns_for: Vec<String>,
    /// Search results considered for a context's excerpts ([`DEFAULT_EXCERPTS`]; 0: none).
    pub excerpts: usize,
    /// How search results are ranked.
    pub ranking: Ranking,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            budget: None,
            model: None,
            facts: FactsMode::default(),
            patterns_for: Vec::new(),
            excerpts: DEFAULT_EXCERPTS,
            ranking: Ranking::default(),
        }
    }
}

/// Why memory work failed. None of these fails a turn: they become warnings and log lines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The memory store or the session store failed.
    #[error("the memory store failed: {0}")]
    Store(#[from] StoreError),
    /// The model asked for a summary failed, or a budget refused the call.
    #[error("the summary model failed: {0}")]
    Summary(#[source] ModelCallError),
    /// The model asked for a summary answered nothing.
    #[error(
        "the summary model `{0}` answered with no text; archival will be tried again after the next turn"
    )]
    EmptySummary(String),
    /// The embedder failed.
    #[error("the embedder failed: {0}")]
    Embedding(#[source] ProviderError),
    /// The embedder does not answer for now (its model is being fetched, say), in its words:
    /// searches go by words alone meanwhile, and what is indexed is embedded later.
    #[error("{0}")]
    EmbedderNotReady(String),
    /// The embedder does not answer, as the user chose (offline without its model), in its
    /// words: never warned about, only given as why a search went by words alone.
    #[error("{0}")]
    EmbedderOff(String),
}

/// The agent memory works for after its turn: whose model it asks for summaries and facts
/// (unless `[memory] model` names another), whose budgets count those calls, and who pays for
/// them besides the budgets (the turn's payer).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The agent.
    pub agent: &'a str,
    /// Its `provider/model`.
    pub model: &'a str,
    /// The turn's payer, when it had one.
    pub payer: Option<&'a dyn Payer>,
}

impl<'a> Requester<'a> {
    /// `agent`, answering with `model`, with nobody paying besides the budgets.
    pub fn new(agent: &'a str, model: &'a str) -> Self {
        Self { agent, model, payer: None }
    }

    /// Whom a call for `session` with `purpose` is made for.
    fn call(&self, session: SessionId, purpose: CallPurpose) -> CallFor<'a> {
        CallFor { session: Some(session), agent: self.agent, purpose, payer: self.payer }
    }
}

/// Whose memories a session's are: the peer its key names on its channel, or [`LOCAL_OWNER`].
pub fn owner_of(key: Option<&SessionKey>) -> String {
    match key {
        Some(key) => format!("{}:{}:{}", key.channel, key.account, key.peer),
        None => LOCAL_OWNER.to_owned(),
    }
}

/// A session's messages as archival needs them: read already, or to be read only when the
/// window (`count` messages past the summary, when known) is past its limit.
enum History {
    /// Read.
    Read(Vec<Message>),
    /// Not read; the session has `count` messages, when known.
    Unread { count: Option<u64> },
}

/// What indexing a turn found.
struct IndexedTurn {
    /// The session's messages, when they had to be read.
    history: History,
    /// What was indexed.
    indexed: Indexed,
}

/// What indexing a run of a session's messages did.
struct Indexed {
    /// The user's messages indexed, whose facts are to be learned: the turn's, and those of
    /// turns before it that were not indexed then (the memory store was down).
    said: Vec<Said>,
    /// Why the entries have no embeddings, when the embedder failed.
    warning: Option<MemoryError>,
}

/// A user's message, where it is in its session and when it was said.
struct Said {
    seq: u64,
    text: String,
    at: chrono::DateTime<Utc>,
}

/// A session [`Memory::sweep`] catches up.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// The session.
    pub session: SessionId,
    /// Its key, whose peer owns its memories.
    pub key: Option<SessionKey>,
    /// Its agent, whose budgets count the summaries and facts asked for it.
    pub agent: String,
    /// The `provider/model` its summaries are asked of (unless `[memory] model` says another).
    pub model: String,
    /// Whether to archive it too (a model call), not only index it.
    pub archive: bool,
}

/// The embedder a memory indexes and searches with, and its name.
#[derive(Debug, Clone)]
pub struct EmbedderRef {
    /// The embedder.
    pub embedder: Arc<dyn Embedder>,
    /// The model, as the embedder names it.
    pub model: String,
}

/// Layered memory over a [`MemoryStore`] and the session store.
pub struct Memory {
    store: Arc<dyn MemoryStore>,
    history: HistoryAssembler,
    sessions: Arc<dyn SessionStore>,
    /// The runtime's router, its calls metered ([`Memory::with_metering`]).
    models: MeteredModels,
    embedder: Option<EmbedderRef>,
    /// The counter of each model a turn is answered by.
    counters: Arc<Counters>,
    souls: BTreeMap<String, Soul>,
    knowledge: KnowledgeBases,
    options: MemoryOptions,
    /// Sessions being archived now, so that two after-turn runs do not summarise twice.
    archiving: Mutex<HashSet<SessionId>>,
    /// Whether entries may be waiting for an embedding: set at start and whenever the embedder
    /// fails; cleared when [`Memory::backfill`] finds none left.
    unembedded: AtomicBool,
    /// Whether a backfill is running, so that concurrent after-turn runs do not embed the same
    /// entries twice.
    backfilling: AtomicBool,
    /// Whether the embedder rejected every text of the last backfill batch (see
    /// [`Memory::backfill`]); cleared when it embeds one.
    rejecting_all: AtomicBool,
    /// What the user was last told about the embedder not answering, while it still does not
    /// (see [`Memory::is_news`]): one notice for an embedder that stays down or not ready, not
    /// a warning on every turn.
    embedder_notice: Mutex<Option<String>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("store", &self.store)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Memory {
    /// Memory in `store` over the sessions in `sessions`, asking `models` (the runtime's router)
    /// for summaries and facts.
    pub fn new(
        store: Arc<dyn MemoryStore>,
        sessions: Arc<dyn SessionStore>,
        models: Arc<dyn Provider>,
        options: MemoryOptions,
    ) -> Self {
        Self {
            store,
            history: HistoryAssembler::new(Arc::clone(&sessions)),
            sessions,
            models: MeteredModels::unmetered(models),
            embedder: None,
            counters: Arc::new(Counters::new()),
            souls: BTreeMap::new(),
            knowledge: KnowledgeBases::default(),
            options,
            archiving: Mutex::new(HashSet::new()),
            unembedded: AtomicBool::new(true),
            backfilling: AtomicBool::new(false),
            rejecting_all: AtomicBool::new(false),
            embedder_notice: Mutex::new(None),
        }
    }

    /// Holds its model calls (summaries, fact extraction) against `metering`'s budgets and the
    /// turn's payer, and records them in `ledger` marked with their purpose, as a turn's calls
    /// are. Without it they are priced but held against nothing and recorded nowhere.
    pub fn with_metering(mut self, metering: Arc<Metering>, ledger: Arc<dyn UsageStore>) -> Self {
        self.models = MeteredModels::new(Arc::clone(self.models.provider()), metering, ledger);
        self
    }

    /// Indexes and searches with embeddings from `embedder` too.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>, model: impl Into<String>) -> Self {
        self.embedder = Some(EmbedderRef { embedder, model: model.into() });
        self
    }

    /// Counts every model's tokens with `counter`, instead of each model's own tokenizer where
    /// exoclaw has it ([`Counters::new`]).
    pub fn with_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counters = Arc::new(Counters::same(counter));
        self
    }

    /// Counts each model's tokens with `counters` (the runtime's, which know the embedded
    /// model's tokenizer and which it counts system prompts with too).
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// Puts the soul document at `path` first in `agent`'s contexts.
    pub fn with_soul(mut self, agent: impl Into<String>, path: impl Into<std::path::PathBuf>) -> Self {
        self.souls.insert(agent.into(), Soul::new(path));
        self
    }

    /// The options in force.
    pub fn options(&self) -> &MemoryOptions {
        &self.options
    }

    /// The memory store.
    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.store
    }

    /// The owner's entries matching `query`, best first: full text and (with an embedder)
    /// embeddings, fused. A failing embedder leaves full text alone, with the error returned
    /// beside the hits.
    pub async fn search(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<(Vec<Hit>, Option<MemoryError>), MemoryError> {
        let wide = limit.saturating_mul(3).max(10);
        // The full-text search runs while the query is embedded and searched by embedding: the two
        // wait on different things (the database, the embedder and the CPU), so the search takes
        // about the longer of the two rather than their sum.
        let semantic = async {
            let Some(embedder) = &self.embedder else { return Ok::<_, MemoryError>((Vec::new(), None)) };
            match self.embed(embedder, vec![query.to_owned()]).await {
                Ok(mut vectors) => {
                    // The embedder takes texts again: a backfill may halve what it rejects.
                    self.rejecting_all.store(false, Ordering::Relaxed);
                    match vectors.pop() {
                        Some(vector) => Ok((self.store.search_embedding(owner, &vector, wide).await?, None)),
                        None => Ok((Vec::new(), None)),
                    }
                }
                Err(e) => Ok((Vec::new(), Some(e))),
            }
        };
        let (text, semantic) = tokio::join!(self.store.search_text(owner, query, wide), semantic);
        let (text, (semantic, warning)) = (text?, semantic?);
        Ok((rank::fuse(text, semantic, &self.options.ranking, Utc::now(), limit), warning))
    }

    /// Indexes the session's messages not indexed yet (all of them after an outage); gives the
    /// session's messages as read. Embeddings are added when the embedder answers; when it does
    /// not, the entries are indexed for full text alone and the error is returned beside them.
    pub async fn index_session(
        &self,
        session: SessionId,
        owner: &str,
    ) -> Result<(Vec<Message>, Option<MemoryError>), MemoryError> {
        let (messages, indexed) = self.catch_up(session, owner).await?;
        Ok((messages, indexed.warning))
    }

    /// [`Memory::index_session`], saying which of the user's messages were indexed.
    async fn catch_up(
        &self,
        session: SessionId,
        owner: &str,
    ) -> Result<(Vec<Message>, Indexed), MemoryError> {
        let messages = self.sessions.messages(session).await?;
        let from = usize::try_from(self.store.indexed_messages(session).await?).unwrap_or(usize::MAX);
        let indexed =
            self.index_messages(session, owner, from, messages.get(from..).unwrap_or_default()).await?;
        Ok((messages, indexed))
    }

    /// Indexes `messages`, the session's from position `first` on (their user and assistant
    /// text), with embeddings when the embedder answers.
    async fn index_messages(
        &self,
        session: SessionId,
        owner: &str,
        first: usize,
        messages: &[Message],
    ) -> Result<Indexed, MemoryError> {
        let mut entries: Vec<NewEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.role, Role::User | Role::Assistant))
            .filter_map(|(index, m)| {
                let text = m.text();
                (!text.trim().is_empty()).then(|| NewEntry {
                    owner: owner.to_owned(),
                    session,
                    kind: EntryKind::Message,
                    seq: (first + index) as u64,
                    role: Some(m.role),
                    text,
                    created_at: m.created_at,
                    embedding: None,
                })
            })
            .collect();
        let warning = self.add_embeddings(&mut entries).await;
        if !entries.is_empty() {
            self.store.index(&entries).await?;
        }
        let said = entries
            .into_iter()
            .filter(|e| e.role == Some(Role::User))
            .map(|e| Said { seq: e.seq, text: e.text, at: e.created_at })
            .collect();
        Ok(Indexed { said, warning })
    }

    /// Indexes a turn's messages, just committed: only they are read when the index is current
    /// up to the turn (the usual case); otherwise the whole session is caught up.
    async fn index_turn(&self, report: &TurnReport, owner: &str) -> Result<IndexedTurn, MemoryError> {
        let session = report.session_id;
        let count = self.sessions.session(session).await?.map_or(0, |info| info.message_count);
        let from = self.store.indexed_messages(session).await?;
        let turn = report.messages.len() as u64;
        // The index's mark may trail the turn by messages that have no text (tool results), so
        // the turn is alone past the mark when the mark is within the turn.
        let first = count.saturating_sub(turn);
        if from >= first && from <= count {
            let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
            let first = usize::try_from(first).unwrap_or(usize::MAX);
            let indexed = self
                .index_messages(session, owner, first + skip, report.messages.get(skip..).unwrap_or_default())
                .await?;
            return Ok(IndexedTurn { history: History::Unread { count: Some(count) }, indexed });
        }
        let (messages, indexed) = self.catch_up(session, owner).await?;
        Ok(IndexedTurn { history: History::Read(messages), indexed })
    }

    pub(crate) async fn add_embeddings(&self, entries: &mut [NewEntry]) -> Option<MemoryError> {
        let embedder = self.embedder.as_ref()?;
        if entries.is_empty() {
            return None;
        }
        match self.embed(embedder, entries.iter().map(|e| e.text.clone()).collect()).await {
            Ok(vectors) => {
                self.rejecting_all.store(false, Ordering::Relaxed);
                for (entry, vector) in entries.iter_mut().zip(vectors) {
                    entry.embedding = Some(vector);
                }
                None
            }
            Err(e) => {
                // Indexed without embeddings: the backfill gives them theirs later.
                self.unembedded.store(true, Ordering::Relaxed);
                Some(e)
            }
        }
    }

    /// Embeds entries indexed without an embedding (while no embedder was configured, or while
    /// it failed), so that search finds them by meaning too: up to `batches` batches of
    /// [`BACKFILL_BATCH`], oldest first, each one embedder call and one write. Gives how many
    /// were embedded. Does nothing without an embedder, when a backfill is running already, or
    /// when the last one found none left (until the embedder fails again).
    ///
    /// A batch the embedder rejects for what it holds (a 400 for one text, a text too long for
    /// it) is embedded in halves, down to single entries, so that the others get theirs; an entry
    /// it rejects alone while taking others is recorded as refused
    /// ([`MemoryIndex::refuse_embeddings`](exoclaw_core::MemoryIndex::refuse_embeddings)) and not
    /// tried again: full text still finds it. Any other failure (the embedder down, slow, or
    /// misconfigured), or one that rejects every text, stops the backfill; what was not embedded
    /// waits for the next try.
    pub async fn backfill(&self, batches: usize) -> Result<u64, MemoryError> {
        let Some(embedder) = &self.embedder else { return Ok(0) };
        // Not ready yet (its model being fetched): what waits is embedded once it is.
        if !self.unembedded.load(Ordering::Relaxed)
            || embedder.embedder.readiness() != Readiness::Ready
            || self.backfilling.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return Ok(0);
        }
        let _running = Running(&self.backfilling);
        let mut embedded = 0;
        for _ in 0..batches {
            let pending = self.store.unembedded(BACKFILL_BATCH).await?;
            if pending.is_empty() {
                self.unembedded.store(false, Ordering::Relaxed);
                break;
            }
            let done = self.embed_batch(embedder, &pending).await;
            embedded += self.store.embed_entries(&done.embedded).await?;
            if !done.refused.is_empty() {
                let refused = self.store.refuse_embeddings(&done.refused).await?;
                tracing::warn!(
                    refused,
                    model = %embedder.model,
                    "the embedder refused the text of memory entries; they are found by their words only"
                );
            }
            if let Some(e) = done.failed {
                return Err(e);
            }
            if pending.len() < BACKFILL_BATCH {
                self.unembedded.store(false, Ordering::Relaxed);
                break;
            }
        }
        if embedded > 0 {
            tracing::info!(embedded, "memory entries indexed without embeddings are embedded now");
        }
        Ok(embedded)
    }

    /// Embeds `batch` in one call or, when the embedder rejects it for what it holds, in halves
    /// down to single entries (see [`Memory::backfill`]). When the embedder rejects every text of
    /// a batch of several, none is recorded as refused, and later batches are tried whole only
    /// until it embeds something again: a rejection of everything is no one entry's fault (a
    /// wrong model, say), and halving would cost dozens of calls a turn. A lone entry rejected
    /// cannot be told apart from that: it is recorded as refused.
    async fn embed_batch(&self, embedder: &EmbedderRef, batch: &[exoclaw_core::MemoryEntry]) -> Embedded {
        let mut done = Embedded { embedded: Vec::new(), refused: Vec::new(), failed: None };
        let mut rejected: Option<MemoryError> = None;
        let mut pieces = vec![batch];
        while let Some(piece) = pieces.pop() {
            match self.embed(embedder, piece.iter().map(|e| e.text.clone()).collect()).await {
                Ok(vectors) if vectors.len() == piece.len() => {
                    done.embedded.extend(piece.iter().map(|e| e.id).zip(vectors));
                }
                Ok(vectors) => {
                    done.failed = Some(MemoryError::Embedding(ProviderError::new(
                        exoclaw_core::ErrorKind::Protocol,
                        &embedder.model,
                        format!("{} embeddings for {} texts", vectors.len(), piece.len()),
                    )));
                    break;
                }
                Err(MemoryError::Embedding(e))
                    if rejects_the_text(&e) && !self.rejecting_all.load(Ordering::Relaxed) =>
                {
                    match piece.split_at_checked(piece.len() / 2) {
                        Some((first, rest)) if !first.is_empty() => pieces.extend([rest, first]),
                        _ => done.refused.extend(piece.iter().map(|e| e.id)),
                    }
                    rejected = Some(MemoryError::Embedding(e));
                }
                Err(e) => {
                    done.failed = Some(e);
                    break;
                }
            }
        }
        if done.embedded.is_empty() && done.failed.is_none() && batch.len() > 1 && rejected.is_some() {
            // Every text rejected: the embedder's configuration, not the entries, is at fault.
            self.rejecting_all.store(true, Ordering::Relaxed);
            done.refused.clear();
            done.failed = rejected;
        } else if !done.embedded.is_empty() {
            self.rejecting_all.store(false, Ordering::Relaxed);
        }
        done
    }

    /// Archives the session if its window is past the limit: the messages cut off are folded
    /// into its summary by the requester's model (or the configured summary model), which is
    /// stored and indexed. Gives the new summary, or `None` when there was nothing to do (or
    /// another archival of the session is running).
    pub async fn archive(
        &self,
        session: SessionId,
        owner: &str,
        requester: Requester<'_>,
        messages: Option<Vec<Message>>,
    ) -> Result<Option<Summary>, MemoryError> {
        let history = match messages {
            Some(messages) => History::Read(messages),
            None => History::Unread { count: None },
        };
        self.archive_history(session, owner, requester, history).await
    }

    async fn archive_history(
        &self,
        session: SessionId,
        owner: &str,
        requester: Requester<'_>,
        history: History,
    ) -> Result<Option<Summary>, MemoryError> {
        {
            let mut running = self.archiving.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !running.insert(session) {
                return Ok(None);
            }
        }
        let result = self.archive_now(session, owner, requester, history).await;
        self.archiving.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&session);
        result
    }

    async fn archive_now(
        &self,
        session: SessionId,
        owner: &str,
        requester: Requester<'_>,
        history: History,
    ) -> Result<Option<Summary>, MemoryError> {
        let previous = self.store.summary(session).await?;
        let through = previous.as_ref().map_or(0, |s| usize::try_from(s.through).unwrap_or(usize::MAX));
        let messages = match history {
            History::Read(messages) => messages,
            // The window is within its limit: nothing to read.
            History::Unread { count: Some(count) }
                if usize::try_from(count).unwrap_or(usize::MAX).saturating_sub(through)
                    <= self.options.window =>
            {
                return Ok(None);
            }
            History::Unread { .. } => self.sessions.messages(session).await?,
        };
        let Some(cut) = archive::archival_cut(&messages, through, self.options.window) else {
            return Ok(None);
        };
        let model = self.options.model.as_deref().unwrap_or(requester.model);
        let request = ChatRequest {
            system: Some(archive::SUMMARY_PROMPT.to_owned()),
            params: GenerationParams {
                temperature: Some(0.0),
                max_tokens: Some(600),
                ..GenerationParams::default()
            },
            ..ChatRequest::new(
                model,
                vec![Message::user(archive::summary_request(
                    previous.as_ref().map(|s| s.text.as_str()),
                    &messages[through..cut],
                ))],
            )
        };
        let answer = self
            .models
            .complete(request, requester.call(session, CallPurpose::Summary))
            .await
            .map_err(MemoryError::Summary)?;
        let text = answer.message.text().trim().to_owned();
        if text.is_empty() {
            return Err(MemoryError::EmptySummary(model.to_owned()));
        }
        // Stores keep times to the microsecond: the summary given back equals the one read later.
        let created_at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let summary = Summary { session, through: cut as u64, text, model: model.to_owned(), created_at };
        if !self.store.save_summary(&summary).await? {
            return Ok(None);
        }
        let mut entry = [NewEntry {
            owner: owner.to_owned(),
            session,
            kind: EntryKind::Summary,
            seq: summary.through,
            role: None,
            text: summary.text.clone(),
            created_at: summary.created_at,
            embedding: None,
        }];
        if let Some(e) = self.add_embeddings(&mut entry).await {
            tracing::warn!(%session, error = %e, "the summary is indexed without an embedding");
        }
        self.store.index(&entry).await?;
        tracing::info!(%session, through = summary.through, "session archived");
        Ok(Some(summary))
    }

    /// Learns the facts `message` (the session's message at `seq`) states, by the requester's
    /// model or the patterns as configured; gives the facts recorded.
    pub async fn learn(
        &self,
        owner: &str,
        session: SessionId,
        seq: u64,
        message: &str,
        requester: Requester<'_>,
    ) -> Result<Vec<exoclaw_core::FactRecorded>, MemoryError> {
        let found = self
            .find_facts(message, requester.call(session, CallPurpose::Facts), requester.model, true)
            .await;
        self.record_facts(owner, found, Some((session, seq)), Utc::now()).await
    }

    /// The facts `message` states, found by `model` (asked for `call`) or the patterns as
    /// configured (the patterns only unless `may_ask`).
    async fn find_facts(
        &self,
        message: &str,
        call: CallFor<'_>,
        model: &str,
        may_ask: bool,
    ) -> Vec<facts::Extracted> {
        let model = self.options.model.as_deref().unwrap_or(model);
        let provider = model.split_once('/').map_or(model, |(provider, _)| provider);
        let mode = match !may_ask || self.options.patterns_for.iter().any(|p| p == provider) {
            true => FactsMode::Patterns.min(self.options.facts),
            false => self.options.facts,
        };
        match mode {
            FactsMode::Off => Vec::new(),
            FactsMode::Patterns => facts::patterns(message),
            FactsMode::Model => match self.extract(message, model, call).await {
                Ok(found) => found,
                Err(why) => {
                    tracing::debug!(%why, "fact extraction by the model failed; using the patterns");
                    facts::patterns(message)
                }
            },
        }
    }

    /// Records `found` as the owner's facts, learned from `source` and true from `valid_from`.
    pub(crate) async fn record_facts(
        &self,
        owner: &str,
        found: Vec<facts::Extracted>,
        source: Option<(SessionId, u64)>,
        valid_from: chrono::DateTime<Utc>,
    ) -> Result<Vec<exoclaw_core::FactRecorded>, MemoryError> {
        let mut recorded = Vec::with_capacity(found.len());
        for fact in found {
            let new = NewFact {
                owner: owner.to_owned(),
                subject: fact.subject,
                predicate: fact.predicate,
                object: fact.object,
                confidence: fact.confidence,
                single_valued: fact.single_valued,
                source,
                valid_from,
            };
            recorded.push(self.store.record_fact(&new).await?);
        }
        Ok(recorded)
    }

    async fn extract(
        &self,
        message: &str,
        model: &str,
        call: CallFor<'_>,
    ) -> Result<Vec<facts::Extracted>, String> {
        let format = JsonSchemaFormat {
            name: "facts".to_owned(),
            description: Some("Durable facts the user stated".to_owned()),
            schema: facts::facts_schema(),
            strict: true,
        };
        let request = ChatRequest {
            system: Some(facts::EXTRACTION_PROMPT.to_owned()),
            params: GenerationParams {
                temperature: Some(0.0),
                max_tokens: Some(400),
                response_format: Some(ResponseFormat::JsonSchema(format)),
                ..GenerationParams::default()
            },
            ..ChatRequest::new(model, vec![Message::user(message)])
        };
        let answer = self.models.complete(request, call).await.map_err(|e| e.to_string())?;
        facts::parse_model_facts(&answer.message.text()).map_err(|e| e.to_string())
    }

    /// The owner's facts, current ones or all.
    pub async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, MemoryError> {
        Ok(self.store.facts(owner, include_superseded).await?)
    }

    /// Catches up what a stopped or killed process left undone: indexes each session in
    /// `sessions`, and archives those marked `archive` whose window is past the limit. Gives how
    /// many sessions were archived; failures are logged and left for next time.
    pub async fn sweep(&self, sessions: &[Unfinished]) -> usize {
        let mut archived = 0;
        for unfinished in sessions {
            let session = unfinished.session;
            let owner = owner_of(unfinished.key.as_ref());
            let requester = Requester::new(&unfinished.agent, &unfinished.model);
            let messages = match self.catch_up(session, &owner).await {
                Ok((messages, indexed)) => {
                    self.learn_said(&owner, session, &indexed.said, requester).await;
                    Some(messages)
                }
                Err(e) => {
                    tracing::warn!(%session, error = %e, "memory catch-up failed; it is tried again later");
                    continue;
                }
            };
            if !unfinished.archive {
                continue;
            }
            match self.archive(session, &owner, requester, messages).await {
                Ok(Some(_)) => archived += 1,
                Ok(None) => {}
                Err(e) => tracing::warn!(%session, error = %e, "archival failed; it is tried again later"),
            }
        }
        if !self.knowledge.is_empty()
            && let Err(e) = self.sync_knowledge().await
        {
            tracing::warn!(error = %e, "syncing the knowledge bases failed; it is tried again after a turn");
        }
        if let Err(e) = self.backfill(usize::MAX).await {
            self.log_failure(
                &e,
                "embedding the entries indexed without one failed; it is tried again after a turn",
            );
        }
        archived
    }

    /// Learns the facts of the user's messages `said` (in the order they were said, so that a
    /// later value supersedes an earlier one), each true from when it was said. A long catch-up
    /// (a session from before memory was on) asks the model about its last
    /// [`MODEL_FACTS_PER_CATCH_UP`] messages only, and reads the others with the patterns.
    async fn learn_said(&self, owner: &str, session: SessionId, said: &[Said], requester: Requester<'_>) {
        let by_patterns = said.len().saturating_sub(MODEL_FACTS_PER_CATCH_UP);
        let call = requester.call(session, CallPurpose::Facts);
        for (index, message) in said.iter().enumerate() {
            let found = self.find_facts(&message.text, call, requester.model, index >= by_patterns).await;
            if let Err(e) = self.record_facts(owner, found, Some((session, message.seq)), message.at).await {
                tracing::warn!(%session, error = %e, "facts could not be recorded");
            }
        }
    }

    fn soul(&self, agent: &str) -> Option<Arc<str>> {
        self.souls.get(agent).and_then(Soul::text)
    }

    /// The vectors of `input`, unless the embedder is not ready ([`MemoryError::EmbedderNotReady`],
    /// without calling it) or fails. An answer ends any notice about it not answering.
    async fn embed(&self, embedder: &EmbedderRef, input: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError> {
        match embedder.embedder.readiness() {
            Readiness::Ready => {}
            Readiness::NotNow(reason) => return Err(MemoryError::EmbedderNotReady(reason)),
            Readiness::Off(reason) => return Err(MemoryError::EmbedderOff(reason)),
        }
        let request = EmbeddingRequest::new(embedder.model.clone(), input);
        let embeddings = embedder.embedder.embed(request).await.map_err(MemoryError::Embedding)?;
        let told = self.embedder_notice.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if told.is_some() {
            tracing::info!(model = %embedder.model, "the embedder answers again; memory is searched by meaning too");
        }
        Ok(embeddings.vectors)
    }

    /// Logs background work's failure `error` ([`Memory::is_news`]: as a warning when it is news,
    /// at debug level when it was said already).
    fn log_failure(&self, error: &MemoryError, what: &str) {
        match self.is_news(error) {
            true => tracing::warn!(error = %error, "{what}"),
            false => tracing::debug!(error = %error, "{what}"),
        }
    }

    /// Whether the user is to be told of `error`: any error but the embedder's is news each
    /// time; the embedder's only when it is not what they were last told while it has not
    /// answered since (a model being fetched is said once, not on every turn until it is
    /// ready), and never when it is off as the user chose.
    fn is_news(&self, error: &MemoryError) -> bool {
        match error {
            MemoryError::EmbedderOff(_) => return false,
            MemoryError::Embedding(_) | MemoryError::EmbedderNotReady(_) => {}
            _ => return true,
        }
        let text = error.to_string();
        let mut told = self.embedder_notice.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if told.as_deref() == Some(text.as_str()) {
            return false;
        }
        *told = Some(text);
        true
    }
}

/// What embedding a backfill batch did.
struct Embedded {
    /// The entries embedded, by id.
    embedded: Vec<(i64, Vec<f32>)>,
    /// The entries whose text the embedder rejected alone, by id.
    refused: Vec<i64>,
    /// Why the rest was not embedded, when the embedder failed otherwise.
    failed: Option<MemoryError>,
}

/// Whether the embedder rejected the texts it was given, rather than failed to answer: what
/// halving a batch can get round. Exhaustive, so that a new kind is decided here.
fn rejects_the_text(error: &ProviderError) -> bool {
    match error.kind {
        exoclaw_core::ErrorKind::InvalidRequest | exoclaw_core::ErrorKind::ContextLength => true,
        exoclaw_core::ErrorKind::Auth
        | exoclaw_core::ErrorKind::Permission
        | exoclaw_core::ErrorKind::ModelNotFound
        | exoclaw_core::ErrorKind::RateLimited { .. }
        | exoclaw_core::ErrorKind::Overloaded
        | exoclaw_core::ErrorKind::Server
        | exoclaw_core::ErrorKind::Timeout
        | exoclaw_core::ErrorKind::Connect
        | exoclaw_core::ErrorKind::Protocol
        | exoclaw_core::ErrorKind::Cancelled => false,
    }
}

/// Clears a flag when dropped (a backfill ended, or its future was dropped).
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[async_trait]
impl exoclaw_core::ContextAssembler for Memory {
    async fn assemble(&self, request: ContextRequest<'_>) -> Result<Assembled, AssembleError> {
        let history = self.history.history(request.session, request.revision).await?;
        let owner = owner_of(request.key);
        let budget = self.options.budget.map_or(request.budget, |b| b.min(request.budget));
        let mut warnings = Vec::new();
        let has_input = !request.input.trim().is_empty();
        // The reads are independent: made at once, each on its own connection, the assembly takes
        // about the longest of them rather than their sum.
        let summary = async {
            match request.revision {
                0 => Ok(None),
                _ => self.store.summary(request.session).await.map_err(MemoryError::from),
            }
        };
        let facts = async { self.store.facts(&owner, true).await.map_err(MemoryError::from) };
        let search = async {
            match self.options.excerpts > 0 && has_input {
                true => self.search(&owner, request.input, self.options.excerpts * 2).await.map(Some),
                false => Ok(None),
            }
        };
        let knowledge = async {
            match has_input {
                true => Some(self.knowledge_for(request.agent, request.input).await),
                false => None,
            }
        };
        let (summary, facts, search, knowledge) = tokio::join!(summary, facts, search, knowledge);
        // The first failure of the memory store (in this order): the turn goes on with the window
        // alone, and nothing else the store gave is used.
        let (summary, facts, mut excerpts, down) = match (summary, facts, search) {
            (Ok(summary), Ok(facts), Ok(search)) => {
                let excerpts = match search {
                    Some((hits, embedding_failed)) => {
                        match embedding_failed {
                            Some(e @ MemoryError::EmbedderNotReady(_)) if self.is_news(&e) => {
                                tracing::info!(reason = %e, "searching memory by words alone");
                                warnings.push(e.to_string());
                            }
                            Some(e) if self.is_news(&e) => {
                                tracing::warn!(error = %e, "searching memory by words alone");
                                warnings.push(format!(
                                    "{e}; past conversations were searched by their words alone"
                                ));
                            }
                            Some(e) => tracing::debug!(error = %e, "searching memory by words alone"),
                            None => {}
                        }
                        hits
                    }
                    None => Vec::new(),
                };
                (summary, facts, excerpts, None)
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => (None, Vec::new(), Vec::new(), Some(e)),
        };
        let knowledge = match (knowledge, &down) {
            (Some(Ok(hits)), None) => hits,
            (Some(Err(e)), None) => {
                tracing::warn!(error = %e, "knowledge bases unavailable for this turn");
                warnings.push(format!("{e}; this answer is given without the knowledge base"));
                Vec::new()
            }
            (None, _) | (_, Some(_)) => Vec::new(),
        };
        if let Some(e) = down {
            tracing::warn!(error = %e, "memory unavailable for this turn");
            warnings.push(format!("{e}; this answer is given from the recent messages alone"));
        }
        // What the window may hold is not repeated as an excerpt: the session's own recent
        // messages and its summary.
        let archived = summary.as_ref().map_or(0, |s| s.through);
        excerpts.retain(|hit| {
            let e = &hit.entry;
            !(e.session == request.session && (e.kind == EntryKind::Summary || e.seq >= archived))
        });
        excerpts.truncate(self.options.excerpts);
        let soul = self.soul(request.agent);
        let parts = Parts {
            soul: soul.as_deref(),
            facts: &facts,
            knowledge: &knowledge,
            excerpts: &excerpts,
            summary: summary.as_ref(),
            history: &history,
            input: request.input,
        };
        // Counted as the model answering this turn counts (the estimate while its tokenizer is
        // being built).
        let counter = self.counters.for_model(request.model);
        let composed = compose(&parts, budget, counter.as_ref(), Utc::now());
        Ok(Assembled { messages: composed.messages, warnings })
    }

    fn committed(&self, commit: Committed<'_>) {
        self.history.extend(commit);
    }
}

#[async_trait]
impl AfterTurn for Memory {
    async fn after_turn(&self, report: &TurnReport, payer: Option<&dyn Payer>) {
        let session = report.session_id;
        let owner = owner_of(report.session_key.as_ref());
        let requester = Requester { agent: &report.agent, model: &report.model, payer };
        // Facts are learned from the user's messages as they are indexed: this turn's, and those
        // of earlier turns whose after-turn work failed (caught up now). A turn that cannot be
        // indexed has its facts learned when it is.
        let history = match self.index_turn(report, &owner).await {
            Ok(IndexedTurn { history, indexed }) => {
                if let Some(e) = indexed.warning {
                    self.log_failure(&e, &format!("session {session} indexed without embeddings"));
                }
                self.learn_said(&owner, session, &indexed.said, requester).await;
                history
            }
            Err(e) => {
                tracing::warn!(%session, error = %e, "indexing failed; it catches up after the next turn");
                History::Unread { count: None }
            }
        };
        if let Err(e) = self.archive_history(session, &owner, requester, history).await {
            tracing::warn!(%session, error = %e, "archival failed; it is tried again after the next turn");
        }
        self.resync_knowledge().await;
        // One batch at a time: after-turn work runs beside the next turns.
        if let Err(e) = self.backfill(1).await {
            self.log_failure(
                &e,
                "embedding the entries indexed without one failed; it is tried again after the next turn",
            );
        }
    }
}
