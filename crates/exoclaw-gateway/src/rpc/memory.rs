//! The `memory.*` methods: a user's layered memory (`exoclaw-memory`) searched, listed, pruned
//! and exported over the WebSocket, as `exoclaw memory` does in a terminal. They are operator
//! methods ([`super::Access::Operator`]): a virtual key is not bound to a user, so no memory is
//! a key's own.

use super::error::{Code, RpcError};
use super::protocol::{
    MemoryExportParams, MemoryExportResult, MemoryFact, MemoryFactsParams, MemoryFactsResult,
    MemoryForgetParams, MemoryForgetResult, MemoryHit, MemorySearchParams, MemorySearchResult,
};
use crate::Gateway;
use exoclaw_core::{Fact, ForgetEntries, StoreError};
use exoclaw_memory::{Memory, MemoryError};
use std::collections::HashSet;
use std::sync::Arc;

/// Hits `memory.search` returns without a `limit`, and the most it returns.
const DEFAULT_HITS: u32 = 10;
const MAX_HITS: u32 = 100;

fn memory(gateway: &Gateway) -> Result<&Arc<Memory>, RpcError> {
    gateway.memory.as_ref().ok_or_else(|| {
        RpcError::new(
            Code::Unavailable,
            "this gateway has no memory: it is turned off (`[memory] enabled = false`) or the gateway \
             runs no agents; see docs/memory.md",
        )
    })
}

/// The owner named in `method`'s params, which may not be blank.
fn owner<'a>(method: &str, owner: &'a str) -> Result<&'a str, RpcError> {
    match owner.trim() {
        "" => Err(RpcError::invalid_params(
            method,
            "`owner` is empty; name a user as `CHANNEL:ACCOUNT:PEER`, or `local` for the CLI's sessions",
        )),
        _ => Ok(owner),
    }
}

fn store_failed(e: StoreError) -> RpcError {
    tracing::error!(error = %e, "the memory store failed");
    RpcError::new(Code::Unavailable, format!("the memory store failed: {e}; retry shortly"))
}

fn memory_failed(e: MemoryError) -> RpcError {
    match e {
        MemoryError::Store(e) => store_failed(e),
        // Reading and pruning memory asks no model; anything else is a fault of the gateway.
        other => RpcError::internal(other),
    }
}

fn with_current(facts: Vec<Fact>) -> Vec<MemoryFact> {
    facts.into_iter().map(|fact| MemoryFact { current: fact.is_current(), fact }).collect()
}

pub(super) async fn search(gateway: &Gateway, p: MemorySearchParams) -> Result<MemorySearchResult, RpcError> {
    let memory = memory(gateway)?;
    let owner = owner("memory.search", &p.owner)?;
    if p.query.trim().is_empty() {
        return Err(RpcError::invalid_params("memory.search", "`query` is empty; say what to look for"));
    }
    let limit = p.limit.unwrap_or(DEFAULT_HITS).clamp(1, MAX_HITS);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (hits, degraded) = memory.search(owner, &p.query, limit).await.map_err(memory_failed)?;
    let hits = hits
        .into_iter()
        .map(|hit| MemoryHit {
            entry: hit.entry,
            score: hit.score,
            text_rank: hit.text_rank,
            embedding_rank: hit.embedding_rank,
        })
        .collect();
    Ok(MemorySearchResult { owner: owner.to_owned(), hits, degraded: degraded.map(|e| e.to_string()) })
}

pub(super) async fn facts(gateway: &Gateway, p: MemoryFactsParams) -> Result<MemoryFactsResult, RpcError> {
    let memory = memory(gateway)?;
    let owner = owner("memory.facts", &p.owner)?;
    let facts = memory.facts(owner, p.superseded).await.map_err(memory_failed)?;
    Ok(MemoryFactsResult { owner: owner.to_owned(), facts: with_current(facts) })
}

pub(super) async fn forget(gateway: &Gateway, p: MemoryForgetParams) -> Result<MemoryForgetResult, RpcError> {
    let memory = memory(gateway)?;
    let owner = owner("memory.forget", &p.owner)?;
    if p.facts.is_empty() && p.entries.is_empty() && p.session.is_none() {
        return Err(RpcError::invalid_params(
            "memory.forget",
            "nothing to forget; name `facts` or `entries` by id, or a `session`",
        ));
    }
    let store = memory.store();
    let mut forgotten = MemoryForgetResult { facts: 0, entries: 0 };
    for id in p.facts {
        forgotten.facts += u64::from(store.forget_fact(owner, id).await.map_err(store_failed)?);
    }
    if !p.entries.is_empty() {
        forgotten.entries +=
            store.forget(owner, &ForgetEntries::Ids(p.entries)).await.map_err(store_failed)?;
    }
    if let Some(session) = p.session {
        forgotten.entries +=
            store.forget(owner, &ForgetEntries::Session(session)).await.map_err(store_failed)?;
    }
    tracing::info!(owner = %crate::text::Escaped(&owner), facts = forgotten.facts, entries = forgotten.entries, "memory forgotten over the WebSocket");
    Ok(forgotten)
}

pub(super) async fn export(gateway: &Gateway, p: MemoryExportParams) -> Result<MemoryExportResult, RpcError> {
    let memory = memory(gateway)?;
    let owner = owner("memory.export", &p.owner)?;
    let store = memory.store();
    let entries = store.entries(owner, usize::MAX).await.map_err(store_failed)?;
    let facts = store.facts(owner, true).await.map_err(store_failed)?;
    // Each session the owner's memories come from, in the order its entries are listed.
    let mut seen = HashSet::new();
    let sessions: Vec<_> = entries
        .iter()
        .map(|e| e.session)
        .chain(facts.iter().filter_map(|f| f.source.map(|(session, _)| session)))
        .filter(|session| seen.insert(*session))
        .collect();
    let mut summaries = Vec::new();
    for session in sessions {
        if let Some(summary) = store.summary(session).await.map_err(store_failed)? {
            summaries.push(summary);
        }
    }
    Ok(MemoryExportResult { owner: owner.to_owned(), entries, facts: with_current(facts), summaries })
}
