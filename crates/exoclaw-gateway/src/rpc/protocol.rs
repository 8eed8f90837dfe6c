//! The protocol's params and results, one type per method, and the JSON schema generated from them
//! (`docs/protocol.schema.json`, checked by a test).

use super::method::Method;
use chrono::{DateTime, Utc};
use exoclaw_core::{Fact, MemoryEntry, Summary};
use exoclaw_types::{AgentEvent, Message, SessionId, SessionInfo, ToolSpec, TurnOutcome, Usage, UsageRecord};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The protocol version this gateway speaks best; `connect` answers with it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Every protocol version this gateway speaks.
pub const SUPPORTED_PROTOCOLS: &[u32] = &[1];

/// A JSON-RPC request id: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RequestId {
    /// A number.
    Number(i64),
    /// A string.
    String(String),
}

/// `connect` params.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectParams {
    /// The protocol version the client speaks (`1`).
    pub protocol: u32,
    /// One of the gateway's operator tokens, or a virtual key. Needed when the gateway requires
    /// authentication; ignored otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Who is connecting, for the gateway's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

// By hand, so the token never reaches a log line.
impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectParams")
            .field("protocol", &self.protocol)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("client", &self.client)
            .finish()
    }
}

/// A client's name and version.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct ClientInfo {
    /// The client's name.
    pub name: String,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `connect` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConnectResult {
    /// The protocol version the connection speaks from now on.
    pub protocol: u32,
    /// The server.
    pub server: ServerInfo,
    /// This connection.
    pub session: ConnectionInfo,
}

/// The server's name and version.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerInfo {
    /// `exoclaw`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// What the server knows of this connection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionInfo {
    /// The connection's id, as the gateway's logs name it.
    pub id: String,
    /// Who the gateway takes the client for: `operator`, `anyone` (no token required), or
    /// `key:NAME` (a virtual key).
    pub caller: String,
    /// The limits in force on this connection.
    pub limits: LimitsInfo,
}

/// The per-connection limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LimitsInfo {
    /// The largest message (and frame) accepted, in bytes.
    pub max_message_bytes: usize,
    /// Requests per second (a burst of as many is allowed).
    pub requests_per_second: u32,
    /// Seconds of silence (with no request running) after which the connection is closed.
    pub idle_timeout_secs: u64,
    /// Turns that may wait behind a running one in one session.
    pub session_queue: usize,
}

/// `ping` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PingResult {
    /// Always `true`.
    pub pong: bool,
}

/// `status` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// The gateway's version.
    pub version: String,
    /// The protocol version.
    pub protocol: u32,
    /// The agents' names.
    pub agents: Vec<String>,
    /// The model names `/v1` serves.
    pub providers: Vec<String>,
    /// Sessions with turns running or waiting.
    pub sessions: SessionsStatus,
    /// Open WebSocket connections.
    pub connections: usize,
    /// Seconds since the gateway started.
    pub uptime_secs: u64,
    /// Whether the gateway is shutting down.
    pub shutting_down: bool,
}

/// How busy the sessions are.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionsStatus {
    /// Sessions with a turn running.
    pub busy: usize,
    /// Turns waiting behind a running one.
    pub queued: usize,
    /// Turns running or waiting, over all sessions.
    pub turns: usize,
}

/// `chat.send` params: a message, where it comes from, and optionally which agent should answer.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatSendParams {
    /// The agent to answer; without it the bindings decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The channel the conversation happens on (`ws`, `web`, `slack`, …).
    pub channel: String,
    /// The account on that channel.
    pub account: String,
    /// The other side: a user, a DM or a room.
    pub peer: String,
    /// The Discord guild, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild: Option<String>,
    /// The team, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The user's message.
    pub content: String,
}

/// `chat.send` result: the turn is over and stored.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChatResult {
    /// The session the turn belongs to (created by the first turn of a session key).
    pub session_id: SessionId,
    /// The session key, `agent:channel:account:peer`.
    pub session_key: String,
    /// The agent that answered.
    pub agent: String,
    /// The binding that chose the agent (its index in `[[bindings]]`, from 0); absent when the
    /// request named the agent or the default agent answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<usize>,
    /// How the turn ended: `completed`, `max_iterations` or `cancelled` (a failed turn is answered
    /// with an error instead).
    pub outcome: TurnOutcome,
    /// The answer: the text of the turn's last assistant message.
    pub text: String,
    /// Tokens over every model call of the turn.
    pub usage: Usage,
}

/// `chat.event` notification params: one [`AgentEvent`] of a running `chat.send`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChatEventParams {
    /// The `id` of the `chat.send` request the event belongs to.
    #[schemars(with = "RequestId")]
    pub request_id: Value,
    /// The event.
    pub event: AgentEvent,
}

/// `chat.cancel` params.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCancelParams {
    /// The `id` of a `chat.send` sent on this connection.
    pub request_id: RequestId,
}

/// `chat.cancel` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChatCancelResult {
    /// Always `true`: the turn is being cancelled; its `chat.send` answers with outcome
    /// `cancelled` (its partial answer stored) or, when it had not begun, a `cancelled` error.
    pub cancelled: bool,
}

/// `sessions.list` params.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsListParams {
    /// Only sessions of this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Only sessions on this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// At most this many (default 100, at most 1000), most recently updated first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `sessions.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionsListResult {
    /// The sessions, most recently updated first.
    pub sessions: Vec<SessionInfo>,
}

/// `sessions.history` and `sessions.reset` params.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    /// The session's id.
    pub session_id: SessionId,
}

/// `sessions.history` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionsHistoryResult {
    /// The session.
    pub session: SessionInfo,
    /// Its messages, oldest first.
    pub messages: Vec<Message>,
}

/// `sessions.reset` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionsResetResult {
    /// The session, now without messages.
    pub session_id: SessionId,
    /// How many messages were removed.
    pub removed: u64,
}

/// `agents.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentsListResult {
    /// The agents, by name.
    pub agents: Vec<AgentInfo>,
}

/// One agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentInfo {
    /// Its name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The `provider/model` answering.
    pub model: String,
    /// The names of the tools it may call.
    pub tools: Vec<String>,
    /// Whether it answers what no binding matches.
    pub default: bool,
}

/// `tools.list` params.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolsListParams {
    /// The agent whose tools to list; the default agent when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// `tools.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToolsListResult {
    /// The agent.
    pub agent: String,
    /// Its tools, with their JSON schemas, as the model sees them.
    pub tools: Vec<ToolSpec>,
}

/// `usage.get` params.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageGetParams {
    /// From when (RFC 3339); the last 24 hours when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Whether to include every record, not only the totals (at most 10,000, the newest).
    #[serde(default)]
    pub records: bool,
}

/// `usage.get` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UsageGetResult {
    /// From when.
    pub since: DateTime<Utc>,
    /// Over everything.
    pub totals: UsageTotals,
    /// By agent, provider and model.
    pub by_model: Vec<ModelUsage>,
    /// The records, oldest first, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<UsageRecord>>,
}

/// Sums over usage records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageTotals {
    /// Model calls.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// US dollars, over the calls with a known price.
    pub cost_usd: f64,
    /// Calls without a known price (not in `cost_usd`).
    pub unpriced_calls: u64,
}

/// Usage of one agent on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelUsage {
    /// The agent (`api:NAME` for `/v1` callers).
    pub agent: String,
    /// The provider instance.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The sums.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// `memory.search` params.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySearchParams {
    /// Whose memory: a gateway conversation's user as `CHANNEL:ACCOUNT:PEER` (its session key's
    /// channel, account and peer), or `local` for the CLI's sessions.
    pub owner: String,
    /// What to look for, in plain words.
    pub query: String,
    /// At most this many hits (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `memory.search` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemorySearchResult {
    /// Whose memory was searched.
    pub owner: String,
    /// The entries found, best first.
    pub hits: Vec<MemoryHit>,
    /// Why the search went by words alone, when the memory's embedder failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// One entry `memory.search` found.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryHit {
    /// The entry: a message, a session's summary or a note.
    #[serde(flatten)]
    pub entry: MemoryEntry,
    /// Its fused score; higher is better.
    pub score: f32,
    /// Its rank among the matches by words (0 first), when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_rank: Option<usize>,
    /// Its rank among the matches by meaning (embeddings), when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_rank: Option<usize>,
}

/// `memory.facts` params.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryFactsParams {
    /// Whose facts (see [`MemorySearchParams::owner`]).
    pub owner: String,
    /// Superseded facts too, each with the fact that replaced it.
    #[serde(default)]
    pub superseded: bool,
}

/// `memory.facts` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryFactsResult {
    /// Whose facts.
    pub owner: String,
    /// The facts, newest first.
    pub facts: Vec<MemoryFact>,
}

/// A fact, and whether it is current.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryFact {
    /// The fact.
    #[serde(flatten)]
    pub fact: Fact,
    /// Whether nothing has replaced it.
    pub current: bool,
}

/// `memory.forget` params: what to forget of the owner's memory; at least one of `facts`,
/// `entries` and `session`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryForgetParams {
    /// Whose memory (see [`MemorySearchParams::owner`]).
    pub owner: String,
    /// Facts, by id (as `memory.facts` gives them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<i64>,
    /// Entries, by id (as `memory.search` and `memory.export` give them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<i64>,
    /// Every entry of this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
}

/// `memory.forget` result: how much went (ids that were not the owner's, or were gone
/// already, count for nothing).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryForgetResult {
    /// Facts forgotten.
    pub facts: u64,
    /// Entries forgotten.
    pub entries: u64,
}

/// `memory.export` params.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryExportParams {
    /// Whose memory (see [`MemorySearchParams::owner`]).
    pub owner: String,
}

/// `memory.export` result: everything the memory holds about the owner.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryExportResult {
    /// Whose memory.
    pub owner: String,
    /// Every indexed message, summary and note, newest first.
    pub entries: Vec<MemoryEntry>,
    /// Every fact, superseded ones included, newest first.
    pub facts: Vec<MemoryFact>,
    /// The current summary of each session the entries and facts come from.
    pub summaries: Vec<Summary>,
}

/// `gateway.shutdown` notification params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShutdownParams {
    /// Why the connection is about to close.
    pub reason: String,
}

/// The protocol's JSON schema: every method's params and result, the notifications, under
/// `$defs`. What `docs/protocol.schema.json` holds.
pub fn schema() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let refer = |schema: schemars::Schema| schema.to_value();
    // Exhaustive over the methods: a new one cannot be left out of the schema.
    let mut methods = Map::new();
    for method in Method::ALL {
        let no_params = || json!({"type": "object"});
        let (params, result) = match method {
            Method::Connect => (
                refer(generator.subschema_for::<ConnectParams>()),
                refer(generator.subschema_for::<ConnectResult>()),
            ),
            Method::Ping => (no_params(), refer(generator.subschema_for::<PingResult>())),
            Method::Status => (no_params(), refer(generator.subschema_for::<StatusResult>())),
            Method::ChatSend => (
                refer(generator.subschema_for::<ChatSendParams>()),
                refer(generator.subschema_for::<ChatResult>()),
            ),
            Method::ChatCancel => (
                refer(generator.subschema_for::<ChatCancelParams>()),
                refer(generator.subschema_for::<ChatCancelResult>()),
            ),
            Method::SessionsList => (
                refer(generator.subschema_for::<SessionsListParams>()),
                refer(generator.subschema_for::<SessionsListResult>()),
            ),
            Method::SessionsHistory => (
                refer(generator.subschema_for::<SessionParams>()),
                refer(generator.subschema_for::<SessionsHistoryResult>()),
            ),
            Method::SessionsReset => (
                refer(generator.subschema_for::<SessionParams>()),
                refer(generator.subschema_for::<SessionsResetResult>()),
            ),
            Method::AgentsList => (no_params(), refer(generator.subschema_for::<AgentsListResult>())),
            Method::ToolsList => (
                refer(generator.subschema_for::<ToolsListParams>()),
                refer(generator.subschema_for::<ToolsListResult>()),
            ),
            Method::UsageGet => (
                refer(generator.subschema_for::<UsageGetParams>()),
                refer(generator.subschema_for::<UsageGetResult>()),
            ),
            Method::MemorySearch => (
                refer(generator.subschema_for::<MemorySearchParams>()),
                refer(generator.subschema_for::<MemorySearchResult>()),
            ),
            Method::MemoryFacts => (
                refer(generator.subschema_for::<MemoryFactsParams>()),
                refer(generator.subschema_for::<MemoryFactsResult>()),
            ),
            Method::MemoryForget => (
                refer(generator.subschema_for::<MemoryForgetParams>()),
                refer(generator.subschema_for::<MemoryForgetResult>()),
            ),
            Method::MemoryExport => (
                refer(generator.subschema_for::<MemoryExportParams>()),
                refer(generator.subschema_for::<MemoryExportResult>()),
            ),
        };
        methods.insert(method.name().to_owned(), json!({"params": params, "result": result}));
    }
    let notifications = json!({
        "chat.event": {"params": refer(generator.subschema_for::<ChatEventParams>())},
        "gateway.shutdown": {"params": refer(generator.subschema_for::<ShutdownParams>())},
    });
    let error = json!({
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "data": {
                "type": "object",
                "required": ["code"],
                "properties": {"code": {"enum": super::error::Code::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()}},
            },
        },
    });
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "exoclaw gateway WebSocket JSON-RPC protocol",
        "description": "Generated from the Rust types by exoclaw-gateway (rpc::protocol::schema); see docs/protocol.md. `methods` and `notifications` map each name to the schemas of its params and result; the types are under `$defs`.",
        "x-protocol-version": PROTOCOL_VERSION,
        "methods": methods,
        "notifications": notifications,
        "$defs": {"Error": error},
    });
    let defs = generator.take_definitions(true);
    if let Some(slot) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        slot.extend(defs);
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/protocol.schema.json` is what the types say; regenerate it with
    /// `EXOCLAW_UPDATE_SCHEMA=1 cargo test -p exoclaw-gateway protocol_schema`.
    #[test]
    fn protocol_schema_matches_the_committed_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.schema.json");
        let generated = format!("{}\n", serde_json::to_string_pretty(&schema()).unwrap());
        if std::env::var_os("EXOCLAW_UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/protocol.schema.json is out of date with the protocol types; regenerate it with \
             `EXOCLAW_UPDATE_SCHEMA=1 cargo test -p exoclaw-gateway protocol_schema` and commit it"
        );
    }

    #[test]
    fn the_schema_names_every_method_and_its_types() {
        let schema = schema();
        for method in ["connect", "chat.send", "sessions.history", "usage.get"] {
            let params = &schema["methods"][method]["params"]["$ref"];
            assert!(params.as_str().is_some_and(|r| r.starts_with("#/$defs/")), "{method}: {params}");
        }
        assert!(schema["$defs"]["AgentEvent"].is_object());
        assert!(schema["$defs"]["ChatSendParams"]["properties"]["content"].is_object());
    }
}
