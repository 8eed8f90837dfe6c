//! exoclaw on a KĀDI broker (`exoclaw_testkit::kadi::FakeBroker`, JSON-RPC 2.0 over a WebSocket
//! on loopback): it authenticates with its Ed25519 key, offers its agents as abilities, answers
//! them and the broker's pings, answers Slack and Discord events relayed by the broker, and comes
//! back after a dropped connection, authenticated and subscribed again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use exoclaw_channels::kadi::{KadiClient, KadiConfig};
use exoclaw_testkit::kadi::FakeBroker;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Connected {
    broker: FakeBroker,
    stop: CancellationToken,
    states: Arc<States>,
}

/// Every connection state the client reported: connected, and the error.
#[derive(Default)]
struct States(std::sync::Mutex<Vec<(bool, Option<String>)>>);

impl exoclaw_channels::ConnectionMonitor for States {
    fn report(&self, state: exoclaw_core::ChannelHealth) {
        assert_eq!(state.channel, "kadi");
        self.0.lock().unwrap().push((state.connected, state.error));
    }
}

impl States {
    fn seen(&self) -> Vec<(bool, Option<String>)> {
        self.0.lock().unwrap().clone()
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen");
}

async fn connected() -> Connected {
    let broker = FakeBroker::start().await;
    let runtime = common::runtime(&common::echo_model(), Some("Answers anything")).await;
    let config = KadiConfig { url: broker.url(), bot: Some("UBOT".into()), ..KadiConfig::default() };
    let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let states = Arc::new(States::default());
    let monitor = Arc::clone(&states) as Arc<dyn exoclaw_channels::ConnectionMonitor>;
    let client = Arc::new(KadiClient::new(&config, key, runtime).with_monitor(monitor));
    let stop = CancellationToken::new();
    tokio::spawn(client.run(stop.clone()));
    until("subscribing", || !broker.requests("kadi.event.subscribe").is_empty()).await;
    Connected { broker, stop, states }
}

#[tokio::test]
async fn exoclaw_authenticates_offers_its_agents_and_subscribes() {
    let f = connected().await;
    assert_eq!(f.broker.authenticated(), 1);
    let register = f.broker.requests("kadi.agent.register").remove(0);
    assert_eq!(register["displayName"], "exoclaw");
    assert_eq!(register["tools"][0]["name"], "ask_default");
    assert_eq!(register["tools"][0]["description"], "Answers anything");
    let subscribe = f.broker.requests("kadi.event.subscribe").remove(0);
    assert_eq!(subscribe["channels"], json!(["slack.app_mention.UBOT", "discord.mention.UBOT"]));
    assert_eq!(subscribe["networkId"], "global");
}

#[tokio::test]
async fn abilities_and_pings_are_answered_on_their_ids() {
    let f = connected().await;
    let answer = f
        .broker
        .request("kadi.ability.request", json!({"toolName": "ask_default", "toolInput": {"message": "hi"}}))
        .await;
    assert_eq!(answer["result"]["text"], "you said: hi");
    let pong = f.broker.request("kadi.session.ping", json!({})).await;
    assert_eq!(pong["result"], "pong");
    let unknown =
        f.broker.request("kadi.ability.request", json!({"toolName": "rm_rf", "toolInput": {}})).await;
    assert!(unknown["error"]["message"].as_str().unwrap().contains("no ability rm_rf"), "{unknown}");
}

#[tokio::test]
async fn slack_and_discord_events_over_the_broker_are_answered_by_publishing_the_reply() {
    let f = connected().await;
    f.broker.deliver(
        "slack.app_mention.UBOT",
        json!({"user": "U1", "text": "<@UBOT> hello", "channel": "C1", "ts": "1.5", "team": "T1"}),
    );
    f.broker.deliver("discord.mention.UBOT", json!({"id": "m9", "author": {"id": "D1"}, "content": "<@UBOT> yo", "channel_id": "DC1", "guild_id": "G1"}));
    until("two replies", || f.broker.requests("kadi.event.publish").len() == 2).await;
    let published = f.broker.requests("kadi.event.publish");
    let slack = published.iter().find(|p| p["channel"] == "slack.reply.UBOT").unwrap();
    assert_eq!(slack["data"], json!({"channel": "C1", "thread_ts": "1.5", "text": "you said: hello"}));
    let discord: &Value = published.iter().find(|p| p["channel"] == "discord.reply.UBOT").unwrap();
    assert_eq!(discord["data"], json!({"channel_id": "DC1", "message_id": "m9", "text": "you said: yo"}));
}

#[tokio::test]
async fn a_dropped_connection_comes_back_authenticated_and_subscribed() {
    let f = connected().await;
    f.broker.drop_connection();
    until("re-subscribing", || f.broker.requests("kadi.event.subscribe").len() == 2).await;
    assert_eq!(f.broker.connections(), 2);
    assert_eq!(f.broker.authenticated(), 2);
    let pong = f.broker.request("kadi.session.ping", json!({})).await;
    assert_eq!(pong["result"], "pong");
    // What `exoclaw channels status` shows followed the connection.
    until("reporting the reconnection", || f.states.seen().len() == 3).await;
    let dropped = Some("the connection dropped; reconnecting".to_owned());
    assert_eq!(f.states.seen(), [(true, None), (false, dropped), (true, None)]);
}

/// A tool that "reads" or "writes" the note its `path` names, recording each call that ran.
struct Note {
    name: &'static str,
    effect: exoclaw_types::ToolEffect,
    ran: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl exoclaw_core::Tool for Note {
    fn spec(&self) -> exoclaw_types::ToolSpec {
        exoclaw_types::ToolSpec {
            name: self.name.into(),
            description: format!("{} a note", self.name),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }
    }
    fn effect(&self) -> exoclaw_types::ToolEffect {
        self.effect
    }
    fn resources(&self, args: &Value) -> Vec<exoclaw_core::Resource> {
        args["path"].as_str().map(|p| exoclaw_core::Resource::Path(p.to_owned())).into_iter().collect()
    }
    async fn call(
        &self,
        args: Value,
        _ctx: &exoclaw_core::ToolContext,
    ) -> Result<String, exoclaw_core::ToolError> {
        let path = args["path"].as_str().unwrap_or_default().to_owned();
        self.ran.lock().unwrap().push(path.clone());
        Ok(format!("the note {path}"))
    }
}

/// Keeps every audit entry.
#[derive(Default)]
struct Kept(std::sync::Mutex<Vec<exoclaw_core::AuditEntry>>);

impl exoclaw_core::AuditSink for Kept {
    fn record(&self, entry: exoclaw_core::AuditEntry) {
        self.0.lock().unwrap().push(entry);
    }
}

#[tokio::test]
async fn named_tools_are_abilities_only_as_far_as_the_permissions_allow_and_each_call_is_audited() {
    use exoclaw_core::{Permission, PermissionPolicy, Permissions, Rule, ToolRegistry};
    use exoclaw_types::ToolEffect;
    let note = |name, effect| Arc::new(Note { name, effect, ran: Default::default() });
    let (read, write, hidden) = (
        note("read_note", ToolEffect::ReadOnly),
        note("write_note", ToolEffect::Mutating),
        note("list_secrets", ToolEffect::ReadOnly),
    );
    let mut registry = ToolRegistry::new();
    for tool in [&read, &write, &hidden] {
        registry.register(Arc::clone(tool) as Arc<dyn exoclaw_core::Tool>);
    }
    let workspace = tempfile::tempdir().unwrap();
    let policy =
        PermissionPolicy::default().with_rule(Rule::new("read_note", Permission::Deny).path("private/**"));
    let audit = Arc::new(Kept::default());
    let tools = exoclaw_core::runtime::ExposedTools {
        tools: registry,
        permissions: Permissions::new(policy),
        workspace: workspace.path().canonicalize().unwrap(),
        audit: Arc::clone(&audit) as Arc<dyn exoclaw_core::AuditSink>,
        caller: exoclaw_channels::KADI_AUDIT_AGENT.into(),
        ask_hint: exoclaw_channels::KADI_ASK_HINT.into(),
    };

    let broker = FakeBroker::start().await;
    let runtime = common::runtime(&common::echo_model(), None).await;
    // Both note tools named; `write_note` asks under the default rules, so it is not offered.
    let config = KadiConfig { url: broker.url(), tools: vec!["*_note".into()], ..KadiConfig::default() };
    let key = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
    let client = Arc::new(KadiClient::new(&config, key, runtime).with_tools(tools));
    let stop = CancellationToken::new();
    tokio::spawn(client.run(stop.clone()));
    until("registering", || !broker.requests("kadi.agent.register").is_empty()).await;
    let f = Connected { broker, stop, states: Arc::default() };

    let register = f.broker.requests("kadi.agent.register").remove(0);
    let offered: Vec<&str> =
        register["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(offered, ["ask_default", "read_note"]);
    assert_eq!(register["tools"][1]["inputSchema"]["properties"]["path"]["type"], "string");

    let ask = |tool: &str, path: &str| json!({"toolName": tool, "toolInput": {"path": path}});
    let answer = f.broker.request("kadi.ability.request", ask("read_note", "todo.md")).await;
    assert_eq!(answer["result"]["text"], "the note todo.md", "{answer}");
    let denied = f.broker.request("kadi.ability.request", ask("read_note", "private/diary.md")).await;
    assert!(denied["error"]["message"].as_str().unwrap().contains("deny"), "{denied}");
    for tool in ["write_note", "list_secrets"] {
        let refused = f.broker.request("kadi.ability.request", ask(tool, "todo.md")).await;
        assert!(refused["error"]["message"].as_str().unwrap().contains(tool), "{refused}");
    }
    assert_eq!(*read.ran.lock().unwrap(), ["todo.md"]);
    assert!(write.ran.lock().unwrap().is_empty());
    assert!(hidden.ran.lock().unwrap().is_empty());

    let decided: Vec<(String, String)> =
        audit.0.lock().unwrap().iter().map(|e| (e.agent.clone(), format!("{:?}", e.resources))).collect();
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert!(decided.iter().all(|(agent, _)| agent == "kadi"));
    assert!(decided[1].1.contains("private/diary.md"), "{decided:?}");
}
