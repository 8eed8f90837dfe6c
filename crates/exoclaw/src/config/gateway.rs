//! `[gateway]`: where `exoclaw gateway` listens, whom it lets in, and the limits that keep one
//! client from hurting the others; and `[[bindings]]`, which agent answers which conversation.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The address to listen on (`--bind` overrides it). Anything but loopback needs a token.
    pub bind: String,
    /// SHA-256 hashes (64 hex digits) of the operator tokens: full access to every model and
    /// method. Make one with `printf %s TOKEN | sha256sum`. Virtual keys (`exoclaw keys create`)
    /// are kept in the database instead. Empty, and no virtual key exists: no token is needed,
    /// and the gateway listens on loopback only.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "token_hashes")]
    pub token_hashes: Vec<String>,
    /// Web pages (origins, `https://app.example.com`) allowed to open the WebSocket. Browsers
    /// always send `Origin`; a connection from any other page is refused. Clients that are not
    /// browsers send none and are not affected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// The largest WebSocket frame, and the largest whole message, in bytes.
    pub max_message_bytes: usize,
    /// Most JSON-RPC requests one connection may send per second (a burst of as many is allowed).
    pub requests_per_second: u32,
    /// Seconds a connection may stay silent (no request, no ping) before it is closed.
    pub idle_timeout_secs: u64,
    /// Messages that may wait behind a running turn in one session before `session_busy`.
    pub session_queue: usize,
    /// Seconds running turns and streams get to finish on shutdown before they are cut off.
    pub shutdown_grace_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:7878".into(),
            token_hashes: Vec::new(),
            allowed_origins: Vec::new(),
            max_message_bytes: 1024 * 1024,
            requests_per_second: 20,
            idle_timeout_secs: 300,
            session_queue: 8,
            shutdown_grace_secs: 30,
        }
    }
}

fn token_hashes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let hashes = Vec::<String>::deserialize(d)?;
    for (index, hash) in hashes.iter().enumerate() {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(D::Error::custom(format!(
                "token_hashes[{index}] is not a SHA-256 hash (64 hex digits); store the hash, not \
                 the token: `printf %s TOKEN | sha256sum`"
            )));
        }
    }
    Ok(hashes)
}

/// `[[bindings]]`, each naming an agent.
pub(crate) fn bindings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<exoclaw_types::Binding>, D::Error> {
    let bindings = Vec::<exoclaw_types::Binding>::deserialize(d)?;
    if let Some(index) = bindings.iter().position(|b| b.agent.trim().is_empty()) {
        return Err(D::Error::custom(format!("bindings[{index}] has an empty `agent`; name the agent")));
    }
    Ok(bindings)
}

/// `[agents.NAME]`: an agent the gateway serves besides `default` (which `[agent]` and the default
/// model describe). Unset fields come from `[agent]` and the default model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentProfile {
    /// What the agent is for, as `agents.list` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its model: `provider/model`, a provider name, an alias or a rule-routed model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<super::ModelChoice>,
    /// Its system prompt, after the base prompt and `[agent] system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Whether it is offered the built-in tools (default: `[agent] tools`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
}

/// The name of the agent `[agent]` describes, which answers whatever no binding routes elsewhere.
pub const DEFAULT_AGENT: &str = "default";

/// `[agents.*]`: names must be usable in a session key (`agent:channel:account:peer`).
pub(crate) fn agents<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, AgentProfile>, D::Error> {
    let agents = std::collections::BTreeMap::<String, AgentProfile>::deserialize(d)?;
    for name in agents.keys() {
        if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
            return Err(D::Error::custom(format!(
                "agent name `{name}` cannot be used in a session key (`agent:channel:account:peer`): \
                 rename the table to a name without `:` or spaces"
            )));
        }
    }
    Ok(agents)
}
