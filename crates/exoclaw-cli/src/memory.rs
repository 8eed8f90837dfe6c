//! `exoclaw memory search|facts|forget|export`: what the layered memory holds about a user, read
//! and pruned from the terminal.
//!
//! These commands need the store and the configuration, never a chat model: they build the
//! [`Memory`] pieces on the session store themselves rather than a [`exoclaw::Runtime`], whose
//! start-up sweep would index and archive sessions (asking a model for summaries) behind a
//! command that only reads. Texts came from users and models: on the way to a terminal their
//! control characters are escaped ([`escape_untrusted`]).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::app::App;
use crate::output::{self, escape_untrusted};
use anyhow::{Context, bail};
use exoclaw::runtime::Models;
use exoclaw_core::{EntryKind, Fact, ForgetEntries, MemoryEntry, Provider, Summary};
use exoclaw_memory::{Hit, LOCAL_OWNER, Memory, MemoryError};
use exoclaw_types::{Role, SessionId};
use serde::Serialize;
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// What `exoclaw memory --help` teaches.
pub const HELP: &str = "\
What memory is:
  Every message of every session is indexed for search; facts the user states (\"I live in
  Paris\") are learned, and a newer value supersedes the old one, which is kept; long sessions are
  summarised. Each turn's context is assembled from these within a token budget. Nothing is ever
  deleted from a session by memory: these commands prune the memory index, not the sessions.

Where it lives:
  In the same database as the sessions (~/.exoclaw/exoclaw.db, or [storage] url). Memories
  belong to an owner: `local` for the CLI's sessions, `CHANNEL:ACCOUNT:PEER` for a gateway
  conversation's user.

Examples:
  exoclaw memory search where do I live
  exoclaw memory facts --all
  exoclaw memory forget --fact 12
  exoclaw memory forget --containing \"my old address\" --yes
  exoclaw memory export -o memory.jsonl
  exoclaw memory knowledge

Settings: [memory] in the config (`exoclaw config show`); details in docs/memory.md.";

/// Whose memories a command acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct OwnerArg {
    /// Whose memories: `local` (the CLI's sessions) or a gateway user as `CHANNEL:ACCOUNT:PEER`.
    #[arg(long, default_value = LOCAL_OWNER)]
    owner: String,
}

/// `exoclaw memory …`.
#[derive(Debug, clap::Subcommand)]
pub enum MemoryCommand {
    /// Search past conversations, best match first (by words; by meaning too when
    /// `[memory] embeddings` is set).
    #[command(after_help = "\
Examples:
  exoclaw memory search Lyon
  exoclaw memory search --limit 3 what did we decide about the release
  exoclaw memory search --json database migration | jq '.[0].text'")]
    Search {
        /// What to look for, in plain words.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// How many results at most.
        #[arg(short = 'n', long, default_value_t = 10)]
        limit: usize,
        #[command(flatten)]
        owner: OwnerArg,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Facts learned about the user (subject, predicate, object), newest first.
    #[command(after_help = "\
A fact with one value at a time (where you live, your name) is superseded when a new value is
learned: the old one is kept and shown by --all, with what replaced it.

Examples:
  exoclaw memory facts
  exoclaw memory facts --all --json")]
    Facts {
        /// Superseded facts too, marked, with the fact that replaced each.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        owner: OwnerArg,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a fact, an entry, a session's entries or every entry containing a text.
    Forget(ForgetArgs),
    /// Every entry (newest first), fact and session summary, as JSON Lines.
    #[command(after_help = "\
Each line is one object: {\"type\":\"entry\",…} for every indexed message, summary and note,
newest first; {\"type\":\"fact\",…} for every fact, superseded ones included; then
{\"type\":\"summary\",…} for each session's current summary.

Examples:
  exoclaw memory export > memory.jsonl
  exoclaw memory export --owner telegram:bot:42 -o ada.jsonl")]
    Export {
        #[command(flatten)]
        owner: OwnerArg,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Index the knowledge bases (`[memory] knowledge`) now and say what changed.
    #[command(after_help = "\
The knowledge bases are also indexed each time exoclaw starts and kept in line with their files
after turns; this does it now, and names the documents it could not read. Their passages belong
to the owner `knowledge:*` (every agent's) or `knowledge:agent:NAME`:

Examples:
  exoclaw memory knowledge
  exoclaw memory search --owner 'knowledge:*' holidays")]
    Knowledge,
}

/// `exoclaw memory forget`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("what").required(true).args(["fact", "entry", "session", "containing"])),
    after_help = "\
Forgetting removes memories from the index and the facts: later turns no longer see them. The
sessions' messages stay, and messages still in a session may be indexed again (after that
session's next turn, or when exoclaw next starts): to remove a conversation for good, forget its
entries and delete the session (`exoclaw session delete ID`), which alone does not touch memory.
Forgetting entries does not forget the facts learned from them, and forgetting the current value
of a fact does not bring back the one it replaced.

IDs come from `exoclaw memory search` (entries) and `exoclaw memory facts --all` (facts).

Examples:
  exoclaw memory forget --fact 12
  exoclaw memory forget --entry 340 --yes
  exoclaw memory forget --session 0190e4a4-1b2c
  exoclaw memory forget --containing \"my old address\""
)]
pub struct ForgetArgs {
    /// A fact, by its id.
    #[arg(long, value_name = "ID")]
    fact: Option<i64>,
    /// An entry (a message, summary or note), by its id.
    #[arg(long, value_name = "ID")]
    entry: Option<i64>,
    /// Every entry of a session: its id, or a unique prefix of it.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Every entry whose text contains TEXT (case-insensitively).
    #[arg(long, value_name = "TEXT")]
    containing: Option<String>,
    #[command(flatten)]
    owner: OwnerArg,
    /// Forget without asking.
    #[arg(short, long)]
    yes: bool,
}

/// Runs a memory command.
pub async fn run(config: Option<&Path>, command: MemoryCommand) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    if !app.config().memory.enabled {
        let file = app.loaded.path.as_ref().map_or_else(
            || "the config file".to_owned(),
            |p| escape_untrusted(&p.display().to_string(), false).into_owned(),
        );
        output::hint(&format!(
            "exoclaw: memory is turned off ([memory] enabled = false in {file}); set `enabled = true` \
             under [memory], or remove the line, to use `exoclaw memory`"
        ));
        return Ok(ExitCode::from(2));
    }
    let code = match command {
        MemoryCommand::Search { query, limit, owner, json } => {
            search(&app, &query.join(" "), limit, &owner.owner, json).await?
        }
        MemoryCommand::Facts { all, owner, json } => facts(&app, all, &owner.owner, json).await?,
        MemoryCommand::Forget(args) => forget(&app, args).await?,
        MemoryCommand::Export { owner, output } => export(&app, &owner.owner, output.as_deref()).await?,
        MemoryCommand::Knowledge => knowledge(&app).await?,
    };
    app.store.close().await;
    Ok(code)
}

/// The long-term memory store: `[memory] url`, or the sessions' database.
async fn memory_store(app: &App) -> anyhow::Result<Arc<dyn exoclaw::exoclaw_core::MemoryStore>> {
    exoclaw::runtime::memory::open_store(app.config(), &app.store)
        .await
        .context("cannot open the long-term memory store; check [memory] url in the configuration")
}

/// The [`Memory`] searches go through, built as the runtime builds it: the same store, ranking
/// and embedder (`[memory] embeddings`; one that cannot be opened leaves full text, said by the
/// search).
async fn memory(app: &App) -> anyhow::Result<Memory> {
    let config = Arc::new(app.config().clone());
    // Search asks no model; the router is what `Memory` is built over, and opens nothing.
    let models = Models::new(Arc::clone(&config), Vec::new())
        .context("the configuration's providers or routes are invalid; `exoclaw config check` says how")?;
    let router = Arc::clone(models.router()) as Arc<dyn Provider>;
    exoclaw::runtime::memory::open_memory(&config, &app.store, router)
        .await
        .context("cannot open the long-term memory store; check [memory] url in the configuration")
}

/// `exoclaw memory knowledge`: syncs the knowledge bases; exit code 1 when a document could not be
/// read (the rest is synced).
async fn knowledge(app: &App) -> anyhow::Result<ExitCode> {
    let bases = &app.config().memory.knowledge;
    if bases.is_empty() {
        output::hint(
            "exoclaw: no knowledge base is configured; add one under [memory], such as \
             `knowledge = { \"*\" = [\"~/handbook\"] }` (see docs/memory.md)",
        );
        return Ok(ExitCode::from(2));
    }
    let memory = memory(app).await?;
    let sync = memory.sync_knowledge().await.context("cannot index the knowledge bases")?;
    for (agent, paths) in bases {
        let whose = match agent.as_str() {
            exoclaw_memory::EVERY_AGENT => "every agent".to_owned(),
            name => format!("agent {name}"),
        };
        let paths: Vec<String> =
            paths.iter().map(|p| escape_untrusted(&p.display().to_string(), false).into_owned()).collect();
        println!("{whose}: {}", paths.join(", "));
    }
    println!(
        "{}: {} indexed now ({}), {} removed, {} unchanged",
        plural(sync.documents, "document"),
        sync.indexed,
        plural(sync.passages, "passage"),
        sync.removed,
        sync.documents.saturating_sub(sync.indexed),
    );
    for problem in &sync.problems {
        output::warning(&escape_untrusted(problem, false));
    }
    Ok(if sync.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn search(app: &App, query: &str, limit: usize, owner: &str, json: bool) -> anyhow::Result<ExitCode> {
    if query.trim().is_empty() {
        output::hint("exoclaw: the query is empty; `exoclaw memory search --help` shows how to search");
        return Ok(ExitCode::from(2));
    }
    let memory = memory(app).await?;
    let (hits, degraded) =
        memory.search(owner, query, limit.max(1)).await.context("cannot search the memory store")?;
    match degraded {
        // Their words say it went by words.
        Some(e @ (MemoryError::EmbedderNotReady(_) | MemoryError::EmbedderOff(_))) => {
            output::hint(&format!("exoclaw: {e}"));
        }
        Some(e) => output::hint(&format!("exoclaw: {e}; searched by words alone")),
        None => {}
    }
    if json {
        let hits: Vec<HitJson<'_>> = hits.iter().map(HitJson::from).collect();
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        println!("nothing in {owner}'s memory matches `{}`", escape_untrusted(query, false));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![row(["ID", "WHEN (UTC)", "SESSION", "WHO", "MATCHED", "TEXT"])];
    for hit in &hits {
        let e = &hit.entry;
        rows.push(vec![
            e.id.to_string(),
            e.created_at.format("%Y-%m-%d %H:%M").to_string(),
            short(e.session),
            who(e).to_owned(),
            matched(hit).to_owned(),
            one_line(&e.text, 100),
        ]);
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

/// A hit as `search --json` prints it.
#[derive(Serialize)]
struct HitJson<'a> {
    #[serde(flatten)]
    entry: &'a MemoryEntry,
    who: &'static str,
    score: f32,
    /// `words`, `meaning` or `words+meaning`.
    matched: &'static str,
    text_rank: Option<usize>,
    embedding_rank: Option<usize>,
}

impl<'a> From<&'a Hit> for HitJson<'a> {
    fn from(hit: &'a Hit) -> Self {
        Self {
            entry: &hit.entry,
            who: who(&hit.entry),
            score: hit.score,
            matched: matched(hit),
            text_rank: hit.text_rank,
            embedding_rank: hit.embedding_rank,
        }
    }
}

/// A fact as `facts --json` prints it.
#[derive(Serialize)]
struct FactJson<'a> {
    #[serde(flatten)]
    fact: &'a Fact,
    current: bool,
}

async fn facts(app: &App, all: bool, owner: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = memory_store(app).await?;
    let facts = store.facts(owner, all).await.context("cannot read the facts from the memory store")?;
    if json {
        let facts: Vec<FactJson<'_>> =
            facts.iter().map(|fact| FactJson { fact, current: fact.is_current() }).collect();
        println!("{}", serde_json::to_string_pretty(&facts)?);
        return Ok(ExitCode::SUCCESS);
    }
    if facts.is_empty() {
        println!(
            "no facts about {owner} yet: they are learned from what the user says (\"I live in …\", \"my name is …\")"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = row(["ID", "SUBJECT", "PREDICATE", "OBJECT", "CONF", "LEARNED (UTC)", "SESSION"]);
    if all {
        header.push("STATE".to_owned());
    }
    let mut rows = vec![header];
    for fact in &facts {
        let mut cells = vec![
            fact.id.to_string(),
            one_line(&fact.subject, 30),
            one_line(&fact.predicate, 30),
            one_line(&fact.object, 50),
            format!("{:.2}", fact.confidence),
            fact.learned_at.format("%Y-%m-%d %H:%M").to_string(),
            fact.source.map_or_else(|| "-".to_owned(), |(session, _)| short(session)),
        ];
        if all {
            cells.push(match (fact.invalidated_at, fact.superseded_by) {
                (None, _) => "current".to_owned(),
                (Some(at), Some(by)) => format!("superseded by {by} on {}", at.format("%Y-%m-%d")),
                (Some(at), None) => format!("superseded on {}", at.format("%Y-%m-%d")),
            });
        }
        rows.push(cells);
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

async fn forget(app: &App, args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let owner = args.owner.owner.as_str();
    let store = memory_store(app).await?;
    let failed = "cannot reach the memory store; nothing was forgotten";
    if let Some(id) = args.fact {
        let facts = store.facts(owner, true).await.context(failed)?;
        let Some(fact) = facts.iter().find(|f| f.id == id) else {
            bail!("{owner} has no fact {id}; `exoclaw memory facts --all` lists them with their ids");
        };
        let what = format!("fact {id}: {} {} {}", fact.subject, fact.predicate, fact.object);
        if let Some(code) =
            unconsented(consent(&format!("Forget {}?", escape_untrusted(&what, false)), args.yes))
        {
            return Ok(code);
        }
        let gone = store.forget_fact(owner, id).await.context(failed)?;
        println!("forgot {}", if gone { "1 fact" } else { "no fact (it was gone already)" });
        return Ok(ExitCode::SUCCESS);
    }
    let entries = store.entries(owner, usize::MAX).await.context(failed)?;
    let (which, question) = if let Some(id) = args.entry {
        let Some(entry) = entries.iter().find(|e| e.id == id) else {
            bail!("{owner} has no memory entry {id}; `exoclaw memory search …` shows entries with their ids");
        };
        let question = format!(
            "Forget entry {id} ({}, session {}): \"{}\"?",
            who(entry),
            short(entry.session),
            one_line(&entry.text, 80)
        );
        (ForgetEntries::Ids(vec![id]), question)
    } else if let Some(prefix) = &args.session {
        let session = session_of(&entries, prefix)?;
        let count = entries.iter().filter(|e| e.session == session).count();
        (ForgetEntries::Session(session), format!("Forget {} of session {session}?", plural(count, "entry")))
    } else if let Some(text) = &args.containing {
        if text.trim().is_empty() {
            output::hint("exoclaw: --containing needs some text to look for");
            return Ok(ExitCode::from(2));
        }
        let needle = text.to_lowercase();
        let count = entries.iter().filter(|e| e.text.to_lowercase().contains(&needle)).count();
        if count == 0 {
            println!(
                "nothing in {owner}'s memory contains `{}`; nothing was forgotten",
                escape_untrusted(text, false)
            );
            return Ok(ExitCode::SUCCESS);
        }
        let question =
            format!("Forget {} containing \"{}\"?", plural(count, "entry"), escape_untrusted(text, false));
        (ForgetEntries::Containing(text.clone()), question)
    } else {
        // clap requires one of the four.
        bail!("say what to forget: --fact ID, --entry ID, --session ID or --containing TEXT");
    };
    if let Some(code) = unconsented(consent(&question, args.yes)) {
        return Ok(code);
    }
    let gone = store.forget(owner, &which).await.context(failed)?;
    println!("forgot {}", plural(gone as usize, "entry"));
    Ok(ExitCode::SUCCESS)
}

/// The session of the owner's entries that `id` names in full or by a unique prefix; the session
/// itself may have been deleted since, so the entries are what is searched.
fn session_of(entries: &[MemoryEntry], id: &str) -> anyhow::Result<SessionId> {
    if let Ok(full) = id.trim().parse::<SessionId>() {
        if entries.iter().any(|e| e.session == full) {
            return Ok(full);
        }
        bail!(
            "no memories of session {full}; `exoclaw memory search …` shows the sessions memories come from"
        );
    }
    let prefix = id.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        bail!("`{id}` is too short to pick a session: give at least 4 characters of its id");
    }
    let mut sessions: Vec<SessionId> = Vec::new();
    for e in entries {
        if e.session.to_string().starts_with(&prefix) && !sessions.contains(&e.session) {
            sessions.push(e.session);
        }
    }
    match sessions.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no memories of a session whose id starts with `{id}`"),
        many => bail!("memories of {} sessions start with `{id}`; give more of the id", many.len()),
    }
}

/// What the user said to forgetting.
enum Consent {
    /// `--yes`, or "y" at the prompt.
    Given,
    /// Anything else at the prompt.
    Refused,
    /// Nobody is at a terminal to ask, and no `--yes`.
    Unasked,
}

/// Asks `question` on the terminal unless `yes`.
fn consent(question: &str, yes: bool) -> Consent {
    if yes {
        return Consent::Given;
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Consent::Unasked;
    }
    // On the terminal itself, as the tool approvals are asked (see approve.rs).
    let config = rustyline::Config::builder().behavior(rustyline::Behavior::PreferTerm).build();
    let answer = rustyline::Editor::<(), rustyline::history::DefaultHistory>::with_config(config)
        .and_then(|mut editor| editor.readline(&format!("{question} [y/N] ")));
    match answer.as_deref().map(str::trim) {
        Ok("y" | "Y" | "yes" | "Yes") => Consent::Given,
        _ => Consent::Refused,
    }
}

/// The exit code of a forget that was not agreed to (nothing changed): 1 after a "no", so a
/// script does not take it for done; 2, a usage error, when nobody could be asked.
fn unconsented(consent: Consent) -> Option<ExitCode> {
    match consent {
        Consent::Given => None,
        Consent::Refused => {
            eprintln!("nothing was forgotten");
            Some(ExitCode::from(1))
        }
        Consent::Unasked => {
            output::hint(
                "exoclaw: forgetting asks first, and nobody is at a terminal to answer; nothing was \
                 forgotten. Rerun with --yes to forget without asking",
            );
            Some(ExitCode::from(2))
        }
    }
}

/// One line of `export`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Entry(&'a MemoryEntry),
    Fact(&'a Fact),
    Summary(&'a Summary),
}

async fn export(app: &App, owner: &str, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = memory_store(app).await?;
    let failed = "cannot read the memory store";
    let entries = store.entries(owner, usize::MAX).await.context(failed)?;
    let facts = store.facts(owner, true).await.context(failed)?;
    // Each session the owner's memories come from, in the order its entries are listed.
    let mut seen = HashSet::new();
    let sessions = entries
        .iter()
        .map(|e| e.session)
        .chain(facts.iter().filter_map(|f| f.source.map(|(session, _)| session)))
        .filter(|session| seen.insert(*session));
    let mut summaries = Vec::new();
    for session in sessions {
        if let Some(summary) = store.summary(session).await.context(failed)? {
            summaries.push(summary);
        }
    }
    let lines = entries
        .iter()
        .map(Line::Entry)
        .chain(facts.iter().map(Line::Fact))
        .chain(summaries.iter().map(Line::Summary));
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(&line)?);
        text.push('\n');
    }
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "exported {}, {} and {} to {}",
                plural(entries.len(), "entry"),
                plural(facts.len(), "fact"),
                plural(summaries.len(), "summary"),
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Who wrote an entry, as the tables name it.
fn who(entry: &MemoryEntry) -> &'static str {
    match (entry.kind, entry.role) {
        (EntryKind::Summary, _) => "summary",
        (EntryKind::Note, _) => "note",
        (EntryKind::Knowledge, _) => "knowledge",
        (EntryKind::Message, Some(Role::User)) => "user",
        (EntryKind::Message, Some(Role::Assistant)) => "assistant",
        (EntryKind::Message, Some(Role::System)) => "system",
        (EntryKind::Message, Some(Role::Tool)) => "tool",
        (EntryKind::Message, None) => "message",
    }
}

/// How a hit was found: by its words (full text), its meaning (embeddings) or both.
fn matched(hit: &Hit) -> &'static str {
    match (hit.text_rank.is_some(), hit.embedding_rank.is_some()) {
        (true, true) => "words+meaning",
        (true, false) => "words",
        (false, true) => "meaning",
        (false, false) => "-",
    }
}

/// A session's id cut to its first 13 characters: ids are time-ordered (UUID v7), so the first 8
/// are shared by every session started in the same minute or so, while these 13 (the
/// millisecond it started) tell sessions apart and still work as a prefix for `--session`.
fn short(session: SessionId) -> String {
    session.to_string().chars().take(13).collect()
}

/// `text` on one line (whitespace runs become one space), at most `max` characters, escaped
/// for the terminal.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = match flat.chars().count() > max {
        true => flat.chars().take(max.saturating_sub(1)).chain(std::iter::once('…')).collect(),
        false => flat,
    };
    escape_untrusted(&cut, false).into_owned()
}

fn plural(n: usize, word: &str) -> String {
    match (n, word.strip_suffix('y')) {
        (1, _) => format!("1 {word}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {word}s"),
    }
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints rows as columns two spaces apart, each as wide as its widest cell; the last column is
/// not padded.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_to_one_escaped_line() {
        assert_eq!(one_line("I moved\n to   Lyon.", 80), "I moved to Lyon.");
        assert_eq!(one_line("abcdefghij", 5), "abcd…");
        assert_eq!(one_line("evil\x1b[2J", 80), "evil\\x1b[2J");
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(plural(1, "entry"), "1 entry");
        assert_eq!(plural(3, "entry"), "3 entries");
        assert_eq!(plural(0, "fact"), "0 facts");
        assert_eq!(plural(2, "summary"), "2 summaries");
    }
}
