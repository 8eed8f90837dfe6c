//! Knowledge bases: folders and files of documents (markdown or plain text) that one agent, or
//! every agent, draws on — a team's handbook, a project's docs — beside what each user said.
//!
//! Each document is cut into passages ([`passages`]: by headings, then paragraphs, about
//! [`PASSAGE_BYTES`] each, each headed by the document's name and section) and indexed in the
//! memory store like any entry (full text, and embeddings when an embedder is configured), as
//! [`EntryKind::Knowledge`] entries of a knowledge owner ([`knowledge_owner`]), which no user's
//! memory search or `forget` reaches. A turn's context gets the passages that best match its
//! input in their own section.
//!
//! # Keeping it current, from several processes at once
//!
//! A document's version is named by a content hash: its entries' `session` is an id derived from
//! the knowledge owner, the document's path and its bytes. [`Memory::sync_knowledge`] (at start,
//! and after turns at most every [`RESYNC_AFTER`] when a file's size or time changed) indexes each
//! version that has no entries yet — all its passages in one write, so a version is either whole
//! or absent — and removes the entries of versions no longer on disk. Writes of the same version
//! replace each other (the store's identity is the session, kind and position), so two processes
//! syncing the same folder at once end with one copy of each passage; a process that read a file
//! just before it changed may add the old version back, and the next sync of any process removes
//! it.

use crate::rank::Hit;
use crate::{Memory, MemoryError};
use chrono::{DateTime, Utc};
use exoclaw_core::{EntryKind, NewEntry};
use exoclaw_types::SessionId;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The name under which a knowledge base is every agent's (`[memory] knowledge = { "*" = [...] }`).
pub const EVERY_AGENT: &str = "*";

/// About how many bytes a passage holds: a few paragraphs, enough to answer from, small enough
/// that several fit a context's share.
pub const PASSAGE_BYTES: usize = 1_200;

/// The largest document read; larger ones are skipped with a warning.
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// The most documents one knowledge base reads; past it the rest are skipped with a warning.
pub const MAX_DOCUMENTS: usize = 2_000;

/// Passages a context may carry from the knowledge bases.
pub const KNOWLEDGE_HITS: usize = 4;

/// How long after a sync the files are looked at again after a turn.
pub const RESYNC_AFTER: Duration = Duration::from_secs(30);

/// The file names read as documents: markdown and plain text.
const DOCUMENT_EXTENSIONS: &[&str] = &["md", "markdown", "mdx", "txt", "text", "rst", "org", "adoc"];

/// Whose entries a knowledge base's are: `knowledge:*` for every agent's, `knowledge:agent:NAME`
/// for one agent's. A user's owner (`local`, or `channel:account:peer`) never starts with
/// `knowledge:`.
pub fn knowledge_owner(agent: &str) -> String {
    match agent {
        EVERY_AGENT => "knowledge:*".to_owned(),
        name => format!("knowledge:agent:{name}"),
    }
}

/// The knowledge bases a [`Memory`] keeps current: paths (folders or files) by agent name, or
/// [`EVERY_AGENT`].
#[derive(Debug, Default)]
pub struct KnowledgeBases {
    sources: BTreeMap<String, Vec<PathBuf>>,
    state: Mutex<SyncState>,
    /// Held by a running sync, so that two (the start sweep's and a first turn's) do not index
    /// the same documents at once.
    syncing: tokio::sync::Mutex<()>,
}

/// What the last sync saw.
#[derive(Debug, Default)]
struct SyncState {
    /// When it ended; `None` before the first.
    at: Option<Instant>,
    /// The size and time of each file it read, by knowledge owner.
    seen: BTreeMap<String, Vec<Fingerprint>>,
    /// The knowledge owners that have entries, so a turn searches only those.
    filled: BTreeSet<String>,
}

impl KnowledgeBases {
    /// Adds `path` (a folder, read recursively, or a file) to `agent`'s knowledge base
    /// ([`EVERY_AGENT`] for every agent's).
    pub fn add(&mut self, agent: impl Into<String>, path: impl Into<PathBuf>) {
        self.sources.entry(agent.into()).or_default().push(path.into());
    }

    /// Whether no knowledge base is configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The knowledge owners `agent`'s turns search: its own and every agent's, those with
    /// entries.
    fn searched_by(&self, agent: &str) -> Vec<String> {
        let state = self.lock();
        [knowledge_owner(agent), knowledge_owner(EVERY_AGENT)]
            .into_iter()
            .filter(|owner| state.filled.contains(owner))
            .collect()
    }
}

/// What a [`Memory::sync_knowledge`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KnowledgeSync {
    /// Documents read.
    pub documents: usize,
    /// Document versions indexed now (new or changed).
    pub indexed: usize,
    /// Passages they were cut into.
    pub passages: usize,
    /// Document versions removed (changed or gone).
    pub removed: usize,
    /// What could not be read, one line each (the rest was synced).
    pub problems: Vec<String>,
}

/// A document as read.
#[derive(Debug)]
struct Document {
    path: PathBuf,
    /// What its passages are headed with: its path within the configured folder.
    label: String,
    text: String,
    modified: Option<SystemTime>,
}

/// A document found: its path, label, size and time.
type Listed = (PathBuf, String, u64, Option<SystemTime>);

/// A file's path, size and time: what says it changed.
type Fingerprint = (PathBuf, u64, Option<SystemTime>);

/// What [`read_documents`] found.
#[derive(Debug, Default)]
struct Read {
    documents: Vec<Document>,
    /// What could not be listed or read.
    problems: Vec<String>,
    /// Every document found, read or not.
    listing: Vec<Fingerprint>,
}

fn fingerprints(listed: &[Listed]) -> Vec<Fingerprint> {
    listed.iter().map(|(path, _, len, modified)| (path.clone(), *len, *modified)).collect()
}

impl Memory {
    /// Puts the documents of `knowledge` in the contexts of the agents they are for. They are
    /// indexed by [`Memory::sync_knowledge`] (the runtime's start sweep does it).
    pub fn with_knowledge(mut self, knowledge: KnowledgeBases) -> Self {
        self.knowledge = knowledge;
        self
    }

    /// Brings the knowledge bases' entries in line with the files: indexes new and changed
    /// documents, removes the entries of changed and deleted ones. A file that cannot be read
    /// is a problem line in the result (its earlier version stays indexed); a store failure
    /// stops the sync, to be tried again later.
    pub async fn sync_knowledge(&self) -> Result<KnowledgeSync, MemoryError> {
        self.sync(true).await
    }

    /// [`Memory::sync_knowledge`]; without `embed`, new passages are indexed for full text at
    /// once and embedded by the next [`Memory::backfill`].
    async fn sync(&self, embed: bool) -> Result<KnowledgeSync, MemoryError> {
        let _one_at_a_time = self.knowledge.syncing.lock().await;
        let mut sync = KnowledgeSync::default();
        for (agent, paths) in &self.knowledge.sources {
            let owner = knowledge_owner(agent);
            let read = {
                let paths = paths.clone();
                tokio::task::spawn_blocking(move || read_documents(&paths)).await
            };
            let Read { documents, problems, listing } = read.unwrap_or_else(|e| Read {
                problems: vec![format!("reading failed: {e}")],
                ..Read::default()
            });
            sync.documents += documents.len();
            let unreadable = !problems.is_empty();
            sync.problems.extend(problems);
            let stored: HashSet<SessionId> = self
                .store
                .entries(&owner, usize::MAX)
                .await?
                .into_iter()
                .filter(|e| e.kind == EntryKind::Knowledge)
                .map(|e| e.session)
                .collect();
            let mut wanted = HashSet::new();
            for document in &documents {
                let version = version_of(&owner, document);
                wanted.insert(version);
                if stored.contains(&version) {
                    continue;
                }
                let created_at = document.modified.map_or_else(Utc::now, DateTime::<Utc>::from);
                let mut entries: Vec<NewEntry> = passages(&document.label, &document.text)
                    .into_iter()
                    .enumerate()
                    .map(|(seq, text)| NewEntry {
                        owner: owner.clone(),
                        session: version,
                        kind: EntryKind::Knowledge,
                        seq: seq as u64,
                        role: None,
                        text,
                        created_at,
                        embedding: None,
                    })
                    .collect();
                if entries.is_empty() {
                    continue;
                }
                if !embed {
                    self.unembedded.store(true, std::sync::atomic::Ordering::Relaxed);
                } else if let Some(e) = self.add_embeddings(&mut entries).await {
                    tracing::warn!(document = %document.path.display(), error = %e, "knowledge indexed without embeddings; they are added later");
                }
                self.store.index(&entries).await?;
                sync.indexed += 1;
                sync.passages += entries.len();
            }
            // A version whose file could not be read this time is kept: an unreadable file (a
            // permission changed, a disk unmounted) must not empty the knowledge base.
            if !unreadable {
                for gone in stored.difference(&wanted) {
                    self.store.reset_session(*gone).await?;
                    sync.removed += 1;
                }
            }
            let mut state = self.knowledge.lock();
            if !wanted.is_empty() || (unreadable && !stored.is_empty()) {
                state.filled.insert(owner.clone());
            } else {
                state.filled.remove(&owner);
            }
            state.seen.insert(owner, listing);
        }
        self.knowledge.lock().at = Some(Instant::now());
        if sync.indexed > 0 || sync.removed > 0 {
            tracing::info!(
                indexed = sync.indexed,
                removed = sync.removed,
                passages = sync.passages,
                "knowledge bases synced"
            );
        }
        for problem in &sync.problems {
            tracing::warn!("knowledge base: {problem}");
        }
        Ok(sync)
    }

    /// Syncs the knowledge bases when [`RESYNC_AFTER`] has passed since the last sync and a
    /// file was added, removed or changed since (sizes and times compared, nothing read).
    pub(crate) async fn resync_knowledge(&self) {
        if self.knowledge.is_empty() {
            return;
        }
        let due = self.knowledge.lock().at.is_none_or(|at| at.elapsed() >= RESYNC_AFTER);
        if !due {
            return;
        }
        let sources = self.knowledge.sources.clone();
        let seen = self.knowledge.lock().seen.clone();
        let changed = tokio::task::spawn_blocking(move || {
            sources.iter().any(|(agent, paths)| {
                let now = fingerprints(&list_documents(paths).0);
                seen.get(&knowledge_owner(agent)) != Some(&now)
            })
        })
        .await
        .unwrap_or(true);
        if !changed {
            self.knowledge.lock().at = Some(Instant::now());
            return;
        }
        if let Err(e) = self.sync_knowledge().await {
            tracing::warn!(error = %e, "syncing the knowledge bases failed; it is tried again after a later turn");
        }
    }

    /// The passages of `agent`'s knowledge bases that best match `input`, best first. Before
    /// the first sync has ended (a turn right after start), the documents are indexed first, for
    /// full text (embeddings follow after the turn).
    pub(crate) async fn knowledge_for(&self, agent: &str, input: &str) -> Result<Vec<Hit>, MemoryError> {
        if self.knowledge.is_empty() {
            return Ok(Vec::new());
        }
        if self.knowledge.lock().at.is_none() {
            self.sync(false).await?;
        }
        let mut hits = Vec::new();
        for owner in self.knowledge.searched_by(agent) {
            let (found, _) = self.search(&owner, input, KNOWLEDGE_HITS).await?;
            hits.extend(found);
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(KNOWLEDGE_HITS);
        Ok(hits)
    }
}

/// The id of a document's version: derived from the knowledge owner, the path and the bytes, so
/// the same version gets the same id in every process.
fn version_of(owner: &str, document: &Document) -> SessionId {
    let mut hash = Sha256::new();
    for part in [owner.as_bytes(), document.path.to_string_lossy().as_bytes(), document.text.as_bytes()] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    SessionId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The documents under `paths` — path, label, size and time — and what could not be listed.
fn list_documents(paths: &[PathBuf]) -> (Vec<Listed>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for root in paths {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => walk(root, root, &mut found, &mut problems),
            Ok(meta) => {
                let label = root
                    .file_name()
                    .map_or_else(|| root.display().to_string(), |n| n.to_string_lossy().into_owned());
                found.push((root.clone(), label, meta.len(), meta.modified().ok()));
            }
            Err(e) => problems.push(format!("{}: {e}", root.display())),
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    if found.len() > MAX_DOCUMENTS {
        problems.push(format!(
            "{} documents found; only the first {MAX_DOCUMENTS} (by path) are read",
            found.len()
        ));
        found.truncate(MAX_DOCUMENTS);
    }
    (found, problems)
}

/// The documents in `folder` and its subfolders (hidden ones skipped; links to folders not
/// followed), labelled by their path under `root`.
fn walk(root: &Path, folder: &Path, found: &mut Vec<Listed>, problems: &mut Vec<String>) {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!("{}: {e}", folder.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(root, &path, found, problems);
            continue;
        }
        let is_document = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| DOCUMENT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if !is_document {
            continue;
        }
        // A link to a file is read (its target's size and time).
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let label = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        found.push((path, label, meta.len(), meta.modified().ok()));
    }
}

/// Reads the documents under `paths`: too large or not UTF-8 ones become problem lines.
fn read_documents(paths: &[PathBuf]) -> Read {
    let (listed, mut problems) = list_documents(paths);
    let listing = fingerprints(&listed);
    let mut documents = Vec::new();
    for (path, label, len, modified) in listed {
        if len > MAX_DOCUMENT_BYTES {
            problems.push(format!(
                "{} is {len} bytes, over the {MAX_DOCUMENT_BYTES} a document may have; it is left out",
                path.display()
            ));
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => documents.push(Document { path, label, text, modified }),
                Err(_) => problems.push(format!("{} is not UTF-8 text; it is left out", path.display())),
            },
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    Read { documents, problems, listing }
}

/// `text` (markdown or plain) cut into passages of about [`PASSAGE_BYTES`]: a heading starts a
/// new passage, paragraphs are packed together, a paragraph too long for one passage is cut at
/// sentence ends (or spaces). Each passage's first line is `label`, with the section's heading
/// when there is one (`guide.md › Installing`). Fenced code stays whole where it fits.
pub fn passages(label: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut heading: Option<String> = None;
    let mut body = String::new();
    let mut paragraph = String::new();
    let mut fenced = false;
    let flush_paragraph =
        |paragraph: &mut String, body: &mut String, out: &mut Vec<String>, heading: &Option<String>| {
            let trimmed = paragraph.trim();
            if trimmed.is_empty() {
                paragraph.clear();
                return;
            }
            for piece in split_long(trimmed) {
                if !body.is_empty() && body.len() + piece.len() + 2 > PASSAGE_BYTES {
                    out.push(headed(label, heading.as_deref(), body));
                    body.clear();
                }
                if !body.is_empty() {
                    body.push_str("\n\n");
                }
                body.push_str(piece);
            }
            paragraph.clear();
        };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            paragraph.push_str(line);
            paragraph.push('\n');
            continue;
        }
        if fenced {
            paragraph.push_str(line);
            paragraph.push('\n');
            continue;
        }
        if let Some(title) = markdown_heading(trimmed) {
            flush_paragraph(&mut paragraph, &mut body, &mut out, &heading);
            if !body.is_empty() {
                out.push(headed(label, heading.as_deref(), &body));
                body.clear();
            }
            heading = Some(title.to_owned());
            continue;
        }
        if trimmed.is_empty() {
            flush_paragraph(&mut paragraph, &mut body, &mut out, &heading);
            continue;
        }
        paragraph.push_str(line.trim_end());
        paragraph.push('\n');
    }
    flush_paragraph(&mut paragraph, &mut body, &mut out, &heading);
    if !body.is_empty() {
        out.push(headed(label, heading.as_deref(), &body));
    }
    out
}

/// A markdown ATX heading's text (`## Installing` → `Installing`).
fn markdown_heading(line: &str) -> Option<&str> {
    let hashes = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    (!title.is_empty()).then_some(title)
}

fn headed(label: &str, heading: Option<&str>, body: &str) -> String {
    match heading {
        Some(heading) => format!("{label} › {heading}\n{body}"),
        None => format!("{label}\n{body}"),
    }
}

/// `paragraph` in pieces of at most [`PASSAGE_BYTES`], cut after a sentence's end where one is
/// in the second half of a piece, else at the last space, else at a character boundary.
fn split_long(paragraph: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = paragraph;
    while rest.len() > PASSAGE_BYTES {
        let mut limit = PASSAGE_BYTES;
        while !rest.is_char_boundary(limit) {
            limit -= 1;
        }
        let window = &rest[..limit];
        let half = limit / 2;
        let cut = window
            .rfind(". ")
            .or_else(|| window.rfind(".\n"))
            .filter(|at| *at >= half)
            .map(|at| at + 1)
            .or_else(|| window.rfind(char::is_whitespace).filter(|at| *at > 0))
            .unwrap_or(limit);
        pieces.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heading_starts_a_passage_headed_with_the_document_and_section() {
        let text = "Intro line.\n\n# Installing\n\nRun the installer.\n\n## Upgrading\nRun it again.\n";
        assert_eq!(
            passages("guide.md", text),
            vec![
                "guide.md\nIntro line.".to_owned(),
                "guide.md › Installing\nRun the installer.".to_owned(),
                "guide.md › Upgrading\nRun it again.".to_owned(),
            ]
        );
    }

    #[test]
    fn paragraphs_are_packed_up_to_the_passage_size() {
        let paragraph = "word ".repeat(100);
        let text = [paragraph.trim(); 6].join("\n\n");
        let cut = passages("a.txt", &text);
        assert!(cut.len() >= 2, "{} passages", cut.len());
        for passage in &cut {
            assert!(passage.len() <= PASSAGE_BYTES + "a.txt\n".len(), "{} bytes", passage.len());
        }
        let words: usize = cut.iter().map(|p| p.matches("word").count()).sum();
        assert_eq!(words, 600, "no word lost or repeated");
    }

    #[test]
    fn a_long_paragraph_is_cut_after_a_sentence() {
        let sentence = "This sentence is about forty bytes long. ";
        let text = sentence.repeat(60);
        let cut = passages("a.md", &text);
        assert!(cut.len() >= 2);
        for passage in &cut {
            assert!(passage.trim_end().ends_with('.'), "cut mid-sentence: {passage:?}");
        }
    }

    #[test]
    fn a_hash_inside_fenced_code_is_not_a_heading() {
        let text = "# Shell\n\n```sh\n# a comment\necho hi\n```\n";
        let cut = passages("s.md", text);
        assert_eq!(cut, vec!["s.md › Shell\n```sh\n# a comment\necho hi\n```".to_owned()]);
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let text = "é".repeat(PASSAGE_BYTES * 2);
        let cut = passages("e.txt", &text);
        let total: usize = cut.iter().map(|p| p.trim_start_matches("e.txt\n").chars().count()).sum();
        assert_eq!(total, PASSAGE_BYTES * 2);
    }

    #[test]
    fn knowledge_owners_never_look_like_a_users() {
        assert_eq!(knowledge_owner(EVERY_AGENT), "knowledge:*");
        assert_eq!(knowledge_owner("coder"), "knowledge:agent:coder");
        assert_ne!(knowledge_owner("local"), crate::LOCAL_OWNER);
    }

    #[test]
    fn folders_are_read_recursively_skipping_hidden_and_other_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
        std::fs::write(dir.path().join("a.md"), "# A\nalpha").expect("write");
        std::fs::write(dir.path().join("sub/b.txt"), "beta").expect("write");
        std::fs::write(dir.path().join(".git/c.md"), "hidden").expect("write");
        std::fs::write(dir.path().join("d.png"), [0u8, 1, 2]).expect("write");
        std::fs::write(dir.path().join("e.md"), [0xffu8, 0xfe]).expect("write");
        let Read { documents, problems, listing } = read_documents(&[dir.path().to_path_buf()]);
        assert_eq!(listing.len(), 3, "every document found, read or not");
        let labels: Vec<&str> = documents.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(labels, vec!["a.md", "sub/b.txt"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("e.md is not UTF-8"), "{problems:?}");
    }

    #[test]
    fn a_missing_path_is_a_problem_naming_it() {
        let Read { documents, problems, .. } = read_documents(&[PathBuf::from("/no/such/folder")]);
        assert!(documents.is_empty());
        assert!(problems[0].starts_with("/no/such/folder:"), "{problems:?}");
    }
}
