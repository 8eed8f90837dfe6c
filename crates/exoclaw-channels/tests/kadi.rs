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
    let client = Arc::new(KadiClient::new(&config, key, runtime));
    let stop = CancellationToken::new();
    tokio::spawn(client.run(stop.clone()));
    until("subscribing", || !broker.requests("kadi.event.subscribe").is_empty()).await;
    Connected { broker, stop }
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
}
