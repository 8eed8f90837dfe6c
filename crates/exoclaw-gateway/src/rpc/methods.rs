//! The methods that answer at once from the gateway's state and store: `status`, `sessions.*`,
//! `agents.list`, `tools.list`, `usage.get`.

use super::error::{Code, RpcError};
use super::protocol::{
    AgentInfo, AgentsListResult, ModelUsage, PROTOCOL_VERSION, SessionParams, SessionsHistoryResult,
    SessionsListParams, SessionsListResult, SessionsResetResult, SessionsStatus, StatusResult,
    ToolsListParams, ToolsListResult, UsageGetParams, UsageGetResult, UsageTotals,
};
use crate::Gateway;
use exoclaw_core::{SessionStore, UsageStore};
use exoclaw_types::UsageRecord;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Sessions `sessions.list` returns without a `limit`, and the most it returns.
const DEFAULT_SESSIONS: u32 = 100;
const MAX_SESSIONS: u32 = 1000;

/// Most records `usage.get` returns (the newest).
const MAX_RECORDS: usize = 10_000;

/// The params of `method`, or `-32602` saying what does not fit.
pub(super) fn params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(method, e))
}

fn sessions(gateway: &Gateway) -> Result<&Arc<dyn SessionStore>, RpcError> {
    gateway.sessions.as_ref().ok_or_else(|| {
        RpcError::new(Code::Unavailable, "this gateway has no session store; configure `storage.url`")
    })
}

fn usage_store(gateway: &Gateway) -> Result<&Arc<dyn UsageStore>, RpcError> {
    gateway.usage.as_ref().ok_or_else(|| {
        RpcError::new(Code::Unavailable, "this gateway has no usage store; configure `storage.url`")
    })
}

pub(super) fn status(gateway: &Gateway) -> StatusResult {
    let chat = &gateway.chat;
    StatusResult {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        agents: gateway
            .runtime
            .as_ref()
            .map(|r| r.agents().into_iter().map(|a| a.name).collect())
            .unwrap_or_default(),
        providers: gateway.source.models(),
        sessions: SessionsStatus {
            busy: gateway.runtime.as_ref().map_or(0, |r| r.queues().busy()),
            queued: gateway.runtime.as_ref().map_or(0, |r| r.queues().waiting()),
            turns: chat.turns(),
        },
        connections: chat.connections(),
        uptime_secs: gateway.uptime().as_secs(),
        shutting_down: gateway.shutdown.is_cancelled(),
    }
}

pub(super) async fn sessions_list(
    gateway: &Gateway,
    p: SessionsListParams,
) -> Result<SessionsListResult, RpcError> {
    let limit = p.limit.unwrap_or(DEFAULT_SESSIONS).clamp(1, MAX_SESSIONS);
    let filtered = p.agent.is_some() || p.channel.is_some();
    // Filters apply to the most recent `MAX_SESSIONS`, then the limit.
    let mut list = sessions(gateway)?.list_sessions(if filtered { MAX_SESSIONS } else { limit }).await?;
    list.retain(|s| {
        let key = s.key.as_ref();
        p.agent.as_ref().is_none_or(|a| key.is_some_and(|k| &k.agent == a))
            && p.channel.as_ref().is_none_or(|c| key.is_some_and(|k| &k.channel == c))
    });
    list.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(SessionsListResult { sessions: list })
}

async fn session_info(
    store: &dyn SessionStore,
    p: &SessionParams,
) -> Result<exoclaw_types::SessionInfo, RpcError> {
    store.session(p.session_id).await?.ok_or_else(|| {
        RpcError::new(Code::NotFound, format!("no session {}; `sessions.list` lists them", p.session_id))
            .with("session_id", p.session_id.to_string())
    })
}

pub(super) async fn sessions_history(
    gateway: &Gateway,
    p: SessionParams,
) -> Result<SessionsHistoryResult, RpcError> {
    let store = sessions(gateway)?;
    let session = session_info(&**store, &p).await?;
    let messages = store.messages(p.session_id).await?;
    Ok(SessionsHistoryResult { session, messages })
}

pub(super) async fn sessions_reset(
    gateway: &Gateway,
    p: SessionParams,
) -> Result<SessionsResetResult, RpcError> {
    let Some(runtime) = &gateway.runtime else {
        return Err(RpcError::new(Code::Unavailable, "this gateway runs no agents, so it holds no sessions"));
    };
    // The runtime holds the session while clearing it, so no turn reads or writes it meanwhile;
    // one running or waiting makes this `session_busy`.
    let removed = runtime.clear_session(p.session_id).await.map_err(|e| match e {
        exoclaw_core::TurnError::SessionNotFound(id) => {
            RpcError::new(Code::NotFound, format!("no session {id}; `sessions.list` lists them"))
                .with("session_id", id.to_string())
        }
        exoclaw_core::TurnError::SessionBusy(busy) => RpcError::new(
            Code::SessionBusy,
            format!("the session `{}` has a turn running; reset it once the turn is over", busy.key),
        ),
        exoclaw_core::TurnError::SessionLocked { .. } => {
            RpcError::new(Code::SessionBusy, format!("{e}; reset it once the turn is over"))
        }
        other => RpcError::new(Code::InternalError, other.to_string()),
    })?;
    Ok(SessionsResetResult { session_id: p.session_id, removed })
}

pub(super) fn agents_list(gateway: &Gateway) -> AgentsListResult {
    let default = gateway.bindings().default_agent().to_owned();
    let agents = gateway
        .runtime
        .iter()
        .flat_map(|r| r.agents())
        .map(|a| AgentInfo {
            default: a.name == default,
            name: a.name,
            description: a.description,
            model: a.model,
            tools: a.tools.iter().map(|t| t.name.clone()).collect(),
        })
        .collect();
    AgentsListResult { agents }
}

pub(super) fn tools_list(gateway: &Gateway, p: ToolsListParams) -> Result<ToolsListResult, RpcError> {
    let name = p.agent.unwrap_or_else(|| gateway.bindings().default_agent().to_owned());
    let agents = gateway.runtime.as_ref().map(|r| r.agents()).unwrap_or_default();
    let Some(agent) = agents.iter().find(|a| a.name == name) else {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        return Err(RpcError::new(
            Code::NotFound,
            format!("no agent `{name}`; `agents.list` lists them ({})", names.join(", ")),
        )
        .with("agent", name.clone()));
    };
    Ok(ToolsListResult { agent: name, tools: agent.tools.clone() })
}

fn add(totals: &mut UsageTotals, record: &UsageRecord) {
    totals.calls += 1;
    totals.input_tokens += record.usage.input_tokens.unwrap_or(0);
    totals.output_tokens += record.usage.output_tokens.unwrap_or(0);
    match record.cost_usd {
        Some(cost) => totals.cost_usd += cost,
        None => totals.unpriced_calls += 1,
    }
}

pub(super) async fn usage_get(gateway: &Gateway, p: UsageGetParams) -> Result<UsageGetResult, RpcError> {
    let since = p.since.unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::hours(24));
    let mut records = usage_store(gateway)?.usage_since(since).await?;
    let mut totals = UsageTotals::default();
    let mut by_model: BTreeMap<(String, String, String), UsageTotals> = BTreeMap::new();
    for record in &records {
        add(&mut totals, record);
        let key = (record.agent.clone(), record.provider.clone(), record.model.clone());
        add(by_model.entry(key).or_default(), record);
    }
    let by_model = by_model
        .into_iter()
        .map(|((agent, provider, model), totals)| ModelUsage { agent, provider, model, totals })
        .collect();
    let records = p.records.then(|| {
        let excess = records.len().saturating_sub(MAX_RECORDS);
        records.drain(..excess);
        records
    });
    Ok(UsageGetResult { since, totals, by_model, records })
}
