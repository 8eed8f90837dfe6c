//! The Discord channel against Discord's wire format (`exoclaw_testkit::discord`): a Gateway on
//! loopback speaking the published protocol (Hello, Identify, READY, heartbeats, Resume), the REST
//! API played by a recording HTTP server, interactions signed with an Ed25519 key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{calls, echo_model};
use exoclaw_channels::{DiscordConfig, DiscordGateway, DiscordInteractions};
use exoclaw_core::runtime::Webhook;
use exoclaw_testkit::discord::{self, BOT_ID, FakeGateway};
use exoclaw_testkit::provider::RespondingProvider;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use http::HeaderMap;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A REST API accepting `count` calls.
async fn rest(count: usize) -> ScriptedServer {
    ScriptedServer::start((0..count).map(|i| Reply::json(200, &json!({"id": format!("5000{i}"), "type": 0}))))
        .await
}

struct Connected {
    gateway: FakeGateway,
    api: ScriptedServer,
    model: Arc<RespondingProvider>,
    stop: CancellationToken,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A bot connected to a fake Gateway, answering through a REST API that accepts `calls` calls.
async fn connected(calls: usize) -> Connected {
    let gateway = FakeGateway::start(200).await;
    let api = rest(calls).await;
    let model = echo_model();
    let config =
        DiscordConfig { gateway_url: gateway.url(), api_base: api.url(), ..DiscordConfig::default() };
    let bot = Arc::new(DiscordGateway::new(&config, "bot-token", common::runtime(&model, None).await));
    let stop = CancellationToken::new();
    tokio::spawn(bot.run(stop.clone()));
    for _ in 0..100 {
        if gateway.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gateway.connected(), "the bot never identified");
    Connected { gateway, api, model, stop }
}

#[tokio::test]
async fn a_mention_is_answered_as_a_reply_and_other_guild_messages_are_not_questions() {
    let f = connected(2).await;
    let identify = f.gateway.received().into_iter().find(|p| p["op"] == 2).unwrap();
    assert_eq!(identify["d"]["token"], "bot-token");
    assert_eq!(identify["d"]["intents"], json!((1 << 9) | (1 << 12) | (1 << 15)));

    f.gateway.dispatch(
        "MESSAGE_CREATE",
        discord::message_create("m1", "C1", Some("G1"), "U1", "just talking", false),
    );
    f.gateway.dispatch(
        "MESSAGE_CREATE",
        discord::message_create("m2", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> hello"), true),
    );
    f.gateway.dispatch("MESSAGE_CREATE", discord::message_create("m3", "D9", None, "U2", "a secret", false));
    let posted = calls(&f.api, 2).await;
    let reply = posted.iter().find(|p| p.path == "/channels/C1/messages").unwrap();
    assert_eq!(reply.header("authorization"), Some("Bot bot-token"));
    assert_eq!(reply.body["content"], "you said: hello");
    assert_eq!(reply.body["message_reference"], json!({"message_id": "m2"}));
    let dm = posted.iter().find(|p| p.path == "/channels/D9/messages").unwrap();
    assert_eq!(dm.body["content"], "you said: a secret");
    assert_eq!(f.model.requests().len(), 2);
    // Heartbeats go out at the interval Hello gave.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(f.gateway.received().iter().any(|p| p["op"] == 1));
}

#[tokio::test]
async fn a_dropped_connection_resumes_and_the_message_sent_meanwhile_is_answered_once() {
    let f = connected(2).await;
    f.gateway.drop_connection();
    f.gateway.dispatch(
        "MESSAGE_CREATE",
        discord::message_create("m1", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> still there?"), true),
    );
    let posted = calls(&f.api, 1).await;
    assert_eq!(posted[0].body["content"], "you said: still there?");
    let resume = f.gateway.received().into_iter().find(|p| p["op"] == 6).expect("a Resume");
    assert_eq!(resume["d"]["session_id"], "fake-session");
    assert_eq!(resume["d"]["seq"], 1);
    assert_eq!(f.gateway.connections(), 2);
    // Resumed, the same message replayed again would not be answered twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.api.requests().len(), 1);
}

fn signed(key: &ed25519_dalek::SigningKey, body: &str) -> HeaderMap {
    discord::sign_interaction(key, "1700000000", body.as_bytes())
        .into_iter()
        .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
        .collect()
}

#[tokio::test]
async fn interactions_are_verified_pinged_and_a_command_is_answered_after_a_deferral() {
    let api = rest(1).await;
    let (public, key) = discord::interaction_keys();
    let config = DiscordConfig { api_base: api.url(), ..DiscordConfig::default() };
    let model = echo_model();
    let endpoint =
        DiscordInteractions::new(&config, &public, "bot-token", common::runtime(&model, None).await).unwrap();

    let ping =
        json!({"type": 1, "id": "1", "application_id": "800000000000000001", "token": "t", "version": 1})
            .to_string();
    endpoint.verify(&signed(&key, &ping), ping.as_bytes()).unwrap();
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    assert!(endpoint.verify(&signed(&other_key, &ping), ping.as_bytes()).is_err());
    assert!(endpoint.verify(&signed(&key, &ping), b"{\"type\":2}").is_err());
    assert_eq!(endpoint.receive(&HeaderMap::new(), Bytes::from(ping)).await.unwrap(), json!({"type": 1}));

    let command = discord::command("ask", "what is new?", "U1", "C1", "G1").to_string();
    endpoint.verify(&signed(&key, &command), command.as_bytes()).unwrap();
    assert_eq!(endpoint.receive(&HeaderMap::new(), Bytes::from(command)).await.unwrap(), json!({"type": 5}));
    let filled = calls(&api, 1).await.remove(0);
    assert_eq!(filled.method, "PATCH");
    assert_eq!(filled.path, "/webhooks/800000000000000001/interaction-token-abc/messages/@original");
    assert_eq!(filled.body["content"], "you said: what is new?");
    assert!(DiscordInteractions::new(&config, "not-hex", "t", common::runtime(&model, None).await).is_err());
}
