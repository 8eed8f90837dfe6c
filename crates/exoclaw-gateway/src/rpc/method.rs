//! The protocol's methods as a closed set. A request's method name is read into a [`Method`] once,
//! as it arrives; an unknown name is answered there with `method_not_found`, listing the methods.
//! From then on the gateway matches on the enum, exhaustively: who may call each method
//! ([`Method::access`]), its handler, its metrics label and its place in the schema are all
//! decided per variant, so a new method cannot be added without saying each of them.

use super::error::{Code, RpcError};

/// One method of the WebSocket JSON-RPC protocol (`docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `connect`: the protocol version, and the caller's token.
    Connect,
    /// `ping`: `{"pong": true}`.
    Ping,
    /// `status`: the gateway's version, agents, load and uptime.
    Status,
    /// `chat.send`: a message to an agent; answered when its turn is stored.
    ChatSend,
    /// `chat.cancel`: cancels a running `chat.send` of this connection.
    ChatCancel,
    /// `sessions.list`: the stored sessions.
    SessionsList,
    /// `sessions.history`: a session's messages.
    SessionsHistory,
    /// `sessions.reset`: removes a session's messages.
    SessionsReset,
    /// `agents.list`: the agents and their models and tools.
    AgentsList,
    /// `tools.list`: an agent's tools with their schemas.
    ToolsList,
    /// `usage.get`: usage and cost totals.
    UsageGet,
    /// `memory.search`: a user's memory searched by words (and meaning).
    MemorySearch,
    /// `memory.facts`: the facts learned about a user.
    MemoryFacts,
    /// `memory.forget`: forgets facts and entries of a user's memory.
    MemoryForget,
    /// `memory.export`: everything the memory holds about a user.
    MemoryExport,
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, before `connect` too.
    Open,
    /// Whoever `connect` let in (anyone, on a gateway that requires no token), checked again on
    /// every request (a key revoked meanwhile is refused).
    Caller,
    /// Like [`Access::Caller`], but not a virtual key: these methods show every client's
    /// conversations, memories and spending. (A key is not bound to a user — it may send
    /// `chat.send` as any peer — so there is no memory that is a key's own to read.)
    Operator,
}

impl Method {
    /// Every method, in the order the protocol's documentation and schema list them.
    pub const ALL: [Method; 15] = [
        Method::Connect,
        Method::Ping,
        Method::Status,
        Method::ChatSend,
        Method::ChatCancel,
        Method::SessionsList,
        Method::SessionsHistory,
        Method::SessionsReset,
        Method::AgentsList,
        Method::ToolsList,
        Method::UsageGet,
        Method::MemorySearch,
        Method::MemoryFacts,
        Method::MemoryForget,
        Method::MemoryExport,
    ];

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::Ping => "ping",
            Method::Status => "status",
            Method::ChatSend => "chat.send",
            Method::ChatCancel => "chat.cancel",
            Method::SessionsList => "sessions.list",
            Method::SessionsHistory => "sessions.history",
            Method::SessionsReset => "sessions.reset",
            Method::AgentsList => "agents.list",
            Method::ToolsList => "tools.list",
            Method::UsageGet => "usage.get",
            Method::MemorySearch => "memory.search",
            Method::MemoryFacts => "memory.facts",
            Method::MemoryForget => "memory.forget",
            Method::MemoryExport => "memory.export",
        }
    }

    /// Who may call it.
    pub fn access(self) -> Access {
        match self {
            Method::Connect | Method::Ping => Access::Open,
            Method::Status
            | Method::ChatSend
            | Method::ChatCancel
            | Method::AgentsList
            | Method::ToolsList => Access::Caller,
            Method::SessionsList
            | Method::SessionsHistory
            | Method::SessionsReset
            | Method::UsageGet
            | Method::MemorySearch
            | Method::MemoryFacts
            | Method::MemoryForget
            | Method::MemoryExport => Access::Operator,
        }
    }

    /// The `endpoint` label of its requests in the gateway's metrics: `ws:` and its name.
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            Method::Connect => "ws:connect",
            Method::Ping => "ws:ping",
            Method::Status => "ws:status",
            Method::ChatSend => "ws:chat.send",
            Method::ChatCancel => "ws:chat.cancel",
            Method::SessionsList => "ws:sessions.list",
            Method::SessionsHistory => "ws:sessions.history",
            Method::SessionsReset => "ws:sessions.reset",
            Method::AgentsList => "ws:agents.list",
            Method::ToolsList => "ws:tools.list",
            Method::UsageGet => "ws:usage.get",
            Method::MemorySearch => "ws:memory.search",
            Method::MemoryFacts => "ws:memory.facts",
            Method::MemoryForget => "ws:memory.forget",
            Method::MemoryExport => "ws:memory.export",
        }
    }

    /// Every method's name, in [`Method::ALL`]'s order.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|m| m.name()).collect()
    }

    /// The method called `name`, or the `method_not_found` error that lists every method (in
    /// `data.methods` as well).
    pub fn parse(name: &str) -> Result<Method, RpcError> {
        Self::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
            let names = Self::names();
            RpcError::new(
                Code::MethodNotFound,
                format!("no method `{name}`; this gateway has: {}", names.join(", ")),
            )
            .with("methods", names)
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `endpoint` label of requests whose method is not one of [`Method::ALL`].
pub(crate) const UNKNOWN_ENDPOINT: &str = "ws:unknown";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_from_its_name_and_labels_its_metrics_with_it() {
        for method in Method::ALL {
            assert_eq!(Method::parse(method.name()), Ok(method));
            assert_eq!(method.endpoint(), format!("ws:{method}"));
        }
        let mut names = Method::names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Method::ALL.len(), "names are distinct");
    }

    #[test]
    fn an_unknown_name_is_method_not_found_listing_the_methods() {
        let e = Method::parse("chat.sned").unwrap_err();
        assert_eq!(e.code, Code::MethodNotFound);
        assert!(e.message.contains("no method `chat.sned`"), "{}", e.message);
        assert!(e.message.contains("chat.send, chat.cancel"), "{}", e.message);
        assert_eq!(e.data["methods"], serde_json::json!(Method::names()));
        // Names are exact: no case folding, no prefixes.
        assert!(Method::parse("Ping").is_err() && Method::parse("sessions").is_err());
    }

    /// The methods table of `docs/protocol.md` lists every method, each with who may call it.
    #[test]
    fn the_protocol_documentation_lists_every_method_with_its_access() {
        let doc = include_str!("../../../../docs/protocol.md");
        let rows: Vec<(&str, &str)> = doc
            .lines()
            .skip_while(|l| !l.starts_with("| method |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                Some((cells.get(1)?.trim_matches('`'), *cells.get(4)?))
            })
            .collect();
        let documented: Vec<&str> = rows.iter().map(|(name, _)| *name).collect();
        assert_eq!(documented, Method::names(), "docs/protocol.md's methods table");
        for ((name, needs), method) in rows.iter().zip(Method::ALL) {
            let expected = match method.access() {
                Access::Open => "—",
                Access::Caller => "connect*",
                Access::Operator => "connect*, operator",
            };
            assert_eq!(*needs, expected, "docs/protocol.md says `{name}` needs {needs}");
        }
    }
}
