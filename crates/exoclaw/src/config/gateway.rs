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
    /// Web pages (origins, `https://app.example.com`; `*` for any) allowed to call the gateway
    /// from a browser: browsers send `Origin` with every request a page makes, and a request from
    /// any other page is refused (403), on every route. Pages on this machine may call a gateway
    /// reached on this machine. Clients that are not browsers send no `Origin` and are not
    /// affected. On a gateway that needs no token, these origins' hosts are also accepted as
    /// the `Host` a request is addressed to, besides localhost, 127.0.0.0/8 and [::1].
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
    /// Seconds a request's head (request line and headers) may take to arrive, from its first
    /// byte; a new connection must send its first byte within this too. Past it the connection
    /// is answered 408 (a silent new one is just closed).
    #[serde(deserialize_with = "positive")]
    pub header_timeout_secs: u64,
    /// Seconds a request's body may take to arrive once the gateway starts reading it; past it,
    /// 408.
    #[serde(deserialize_with = "positive")]
    pub body_timeout_secs: u64,
    /// Seconds an HTTP connection with no request running is kept open for the next request.
    #[serde(deserialize_with = "positive")]
    pub keep_alive_secs: u64,
    /// Most connections open at once, HTTP and WebSocket; past it a new connection is answered
    /// 503 with `Retry-After` and closed. Keep it below the open-file limit (`ulimit -n`).
    #[serde(deserialize_with = "positive")]
    pub max_connections: usize,
    /// Most WebSocket connections open at once that have not authenticated (no bearer header on
    /// the upgrade, no successful `connect` yet), on a gateway that requires a token; past it
    /// the upgrade is answered 503.
    #[serde(deserialize_with = "positive")]
    pub max_unauthenticated: usize,
    /// Most request-body bytes read or held at once, over all requests. A body that does not fit
    /// now is answered 503 with `Retry-After` (the OpenAI SDKs retry it); one larger than this
    /// (or than the largest body, 32 MiB), 413.
    #[serde(deserialize_with = "positive")]
    pub max_body_bytes_in_flight: usize,
    /// Whether `/mcp` serves MCP over streamable HTTP (what `exoclaw mcp serve` offers on stdio:
    /// the tools the default agent's permissions allow, and each agent as `ask_NAME`), to
    /// operator tokens only. Off by default.
    pub mcp: bool,
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
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            keep_alive_secs: 60,
            max_connections: 1024,
            max_unauthenticated: 256,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
            mcp: false,
        }
    }
}

/// A count or a number of seconds that 0 would make useless (no connection, no time to send).
fn positive<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialEq,
{
    let value = T::deserialize(d)?;
    if value == T::default() {
        return Err(D::Error::custom(
            "must be at least 1 (0 would refuse every request); remove it for the default",
        ));
    }
    Ok(value)
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
    /// The baskets its tools and skills are narrowed to (default: `[agent] baskets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baskets: Option<Vec<exoclaw_tools::baskets::Basket>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_zero_are_refused_saying_why() {
        for key in ["header_timeout_secs", "max_connections", "max_body_bytes_in_flight"] {
            let e = toml::from_str::<GatewayConfig>(&format!("{key} = 0")).unwrap_err().to_string();
            assert!(e.contains("must be at least 1") && e.contains(key), "{key}: {e}");
        }
        let set: GatewayConfig = toml::from_str("header_timeout_secs = 3\nmax_unauthenticated = 7").unwrap();
        assert_eq!((set.header_timeout_secs, set.max_unauthenticated), (3, 7));
        assert_eq!(set.keep_alive_secs, GatewayConfig::default().keep_alive_secs);
    }
}
