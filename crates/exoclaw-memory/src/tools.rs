//! The tools that let an agent use its memory: [`MemorySearch`] (read-only), [`Remember`] and
//! [`Forget`] (mutating, so the permission policy asks before they run, like any tool that
//! changes something). Each acts on the memories of the user of the session it is called in.

use crate::{Memory, facts, owner_of};
use async_trait::async_trait;
use chrono::Utc;
use exoclaw_core::{EntryKind, ForgetEntries, NewEntry, ToolContext, ToolError, TypedTool};
use exoclaw_types::{SessionId, ToolEffect};
use schemars::JsonSchema;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::Arc;

/// Most results `memory_search` gives.
pub const MAX_SEARCH_RESULTS: usize = 20;

/// The three memory tools over `memory`.
pub fn memory_tools(memory: &Arc<Memory>) -> Vec<Arc<dyn exoclaw_core::Tool>> {
    vec![
        Arc::new(MemorySearch { memory: Arc::clone(memory) }),
        Arc::new(Remember { memory: Arc::clone(memory) }),
        Arc::new(Forget { memory: Arc::clone(memory) }),
    ]
}

/// The owner and session of a call.
async fn whose(memory: &Memory, ctx: &ToolContext) -> Result<(String, SessionId), ToolError> {
    let Some(session) = ctx.session else {
        return Err(ToolError::Refused("memory tools work only inside a session".into()));
    };
    let key = match memory.sessions.session(session).await {
        Ok(info) => info.and_then(|info| info.key),
        // A new session is stored with its first checkpoint; before that it has no key yet
        // only if it was started without one.
        Err(e) => return Err(ToolError::Failed(format!("the session cannot be read: {e}"))),
    };
    Ok((owner_of(key.as_ref()), session))
}

fn store_failed(e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(format!("the memory store failed: {e}; try again later"))
}

/// `memory_search`.
#[derive(Debug)]
pub struct MemorySearch {
    memory: Arc<Memory>,
}

/// `memory_search`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MemorySearchArgs {
    /// What to look for, in plain words.
    pub query: String,
    /// How many results at most (default 8, at most 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Also list the facts known about the user, current and superseded (default false).
    #[serde(default)]
    pub facts: bool,
}

#[async_trait]
impl TypedTool for MemorySearch {
    type Args = MemorySearchArgs;
    const NAME: &'static str = "memory_search";

    fn description(&self) -> String {
        "Search your long-term memory of past conversations with this user (and their summaries \
         and notes) by words and meaning; newest and best matches first. Set `facts` to also list \
         what is known about the user, including what was true before (superseded facts)."
            .to_owned()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    async fn run(&self, args: MemorySearchArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let (owner, _) = whose(&self.memory, ctx).await?;
        let limit = args.limit.unwrap_or(8).clamp(1, MAX_SEARCH_RESULTS);
        let (hits, _) = self.memory.search(&owner, &args.query, limit).await.map_err(store_failed)?;
        let mut out = String::new();
        if hits.is_empty() {
            out.push_str("No memories match.");
        }
        for hit in &hits {
            let e = &hit.entry;
            let who = match (e.kind, e.role) {
                (EntryKind::Summary, _) => "summary".to_owned(),
                (EntryKind::Note, _) => "note".to_owned(),
                (EntryKind::Knowledge, _) => "knowledge".to_owned(),
                (EntryKind::Message, Some(role)) => format!("{role:?}").to_lowercase(),
                (EntryKind::Message, None) => "message".to_owned(),
            };
            let _ = writeln!(out, "- [{} {}] {}", e.created_at.format("%Y-%m-%d"), who, e.text.trim());
        }
        if args.facts {
            let facts = self.memory.facts(&owner, true).await.map_err(store_failed)?;
            out.push_str("\nFacts:\n");
            if facts.is_empty() {
                out.push_str("(none)\n");
            }
            for fact in facts {
                let state = match fact.invalidated_at {
                    None => String::new(),
                    Some(at) => format!(" (superseded {})", at.format("%Y-%m-%d")),
                };
                let _ = writeln!(
                    out,
                    "- #{} {} {}: {}{state}",
                    fact.id,
                    fact.subject,
                    fact.predicate.replace('_', " "),
                    fact.object
                );
            }
        }
        Ok(out)
    }
}

/// `remember`.
#[derive(Debug)]
pub struct Remember {
    memory: Arc<Memory>,
}

/// `remember`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RememberArgs {
    /// What to remember, as a self-contained sentence ("The user's sister Alice lives in Lisbon.").
    pub text: String,
}

#[async_trait]
impl TypedTool for Remember {
    type Args = RememberArgs;
    const NAME: &'static str = "remember";

    fn description(&self) -> String {
        "Save a note to your long-term memory of this user, to be found again in later \
         conversations. Use it when the user asks you to remember something, or states something \
         durable about themselves worth keeping. Write a self-contained sentence."
            .to_owned()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }

    async fn run(&self, args: RememberArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let text = args.text.trim();
        if text.is_empty() {
            return Err(ToolError::InvalidArguments("`text` is empty: say what to remember".into()));
        }
        let (owner, session) = whose(&self.memory, ctx).await?;
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        // Notes of a session are ordered by when they were taken.
        let seq = u64::try_from(now.timestamp_micros()).unwrap_or_default();
        let mut entry = [NewEntry {
            owner: owner.clone(),
            session,
            kind: EntryKind::Note,
            seq,
            role: None,
            text: text.to_owned(),
            created_at: now,
            embedding: None,
        }];
        if let Some(e) = self.memory.add_embeddings(&mut entry).await {
            tracing::warn!(error = %e, "the note is saved without an embedding");
        }
        self.memory.store.index(&entry).await.map_err(store_failed)?;
        let learned = self
            .memory
            .record_facts(&owner, facts::patterns(text), None, now)
            .await
            .map_err(store_failed)?
            .len();
        Ok(match learned {
            0 => "Saved.".to_owned(),
            n => format!("Saved, and {n} fact(s) recorded from it."),
        })
    }
}

/// `forget`.
#[derive(Debug)]
pub struct Forget {
    memory: Arc<Memory>,
}

/// `forget`'s arguments: one of them.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ForgetArgs {
    /// Forget the fact with this number (as `memory_search` with `facts` lists them: `#12`).
    #[serde(default)]
    pub fact: Option<i64>,
    /// Forget every memory (message, summary, note) whose text contains this, case-insensitively.
    #[serde(default)]
    pub containing: Option<String>,
}

#[async_trait]
impl TypedTool for Forget {
    type Args = ForgetArgs;
    const NAME: &'static str = "forget";

    fn description(&self) -> String {
        "Remove something from your long-term memory of this user: a fact by its number, or every \
         memory containing some text. Use it when the user asks you to forget something. The \
         conversation's stored messages stay; only what you recall from them goes."
            .to_owned()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }

    async fn run(&self, args: ForgetArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let (owner, _) = whose(&self.memory, ctx).await?;
        match (args.fact, args.containing.as_deref().map(str::trim)) {
            (Some(id), None) => {
                match self.memory.store.forget_fact(&owner, id).await.map_err(store_failed)? {
                    true => Ok(format!("Fact #{id} forgotten.")),
                    false => Err(ToolError::Failed(format!(
                        "there is no fact #{id}; memory_search with `facts` lists them"
                    ))),
                }
            }
            (None, Some(text)) if !text.is_empty() => {
                let n = self
                    .memory
                    .store
                    .forget(&owner, &ForgetEntries::Containing(text.to_owned()))
                    .await
                    .map_err(store_failed)?;
                Ok(format!("{n} memories forgotten."))
            }
            _ => Err(ToolError::InvalidArguments(
                "give either `fact` or a non-empty `containing`, not both".into(),
            )),
        }
    }
}
