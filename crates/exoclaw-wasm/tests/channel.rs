//! The example channel plugin (`examples/plugins/json-chat`, built by
//! `scripts/peers/wasm-plugins.sh`) through the host: deliveries parsed, replies formatted, and
//! requests sent only to the hosts it was granted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_testkit::server::{Reply, ScriptedServer};
use exoclaw_wasm::{ChannelPlugin, IncomingMessage, PluginDir, PluginError, PluginHost};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

fn channel(reply_url: &str) -> (tempfile::TempDir, Arc<ChannelPlugin>) {
    let home = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(home.path());
    let manifest = exoclaw_testkit::peers::example_plugin("json-chat").join("plugin.toml");
    let asked = exoclaw_wasm::Manifest::load(&manifest).unwrap().capabilities;
    let installed = plugins.install(&manifest, asked.clone()).unwrap();
    let config = BTreeMap::from([("reply_url".to_owned(), reply_url.to_owned())]);
    let loaded = Arc::new(PluginHost::uncached().load(&installed, &config).unwrap());
    (home, Arc::new(ChannelPlugin::new(loaded, asked.hosts)))
}

fn alice() -> IncomingMessage {
    IncomingMessage {
        peer: "alice".into(),
        text: "hi".into(),
        account: None,
        context: json!({"room": "lobby"}),
    }
}

#[tokio::test]
async fn a_delivery_becomes_messages_and_a_reply_goes_to_the_granted_host() {
    let platform = ScriptedServer::start([Reply::json(200, &json!({"ok": true}))]).await;
    let (_home, chat) = channel(&format!("{}/messages", platform.url()));
    let incoming = chat
        .parse_incoming(&BTreeMap::new(), br#"{"from": "alice", "text": "hi", "room": "lobby"}"#)
        .await
        .unwrap();
    assert_eq!(incoming.messages, [alice()]);
    assert_eq!(incoming.response, None);

    chat.answer(&incoming.messages[0], "Hello!").await.unwrap();
    let sent = platform.request();
    assert_eq!(sent.path, "/messages");
    assert_eq!(sent.body, json!({"to": "alice", "room": "lobby", "text": "Hello!"}));
}

#[tokio::test]
async fn a_reply_to_a_host_not_granted_is_refused_and_nothing_is_sent() {
    let (_home, chat) = channel("http://api.example.org/messages");
    let error = chat.answer(&alice(), "Hello!").await.unwrap_err();
    assert!(matches!(error, PluginError::HostNotGranted { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("asked to send a request to api.example.org"), "{message}");
    assert!(message.contains("exoclaw plugin grant json-chat --host api.example.org"), "{message}");
}

#[tokio::test]
async fn a_malformed_delivery_fails_with_the_plugins_reason() {
    let (_home, chat) = channel("http://127.0.0.1:9/messages");
    let error = chat.parse_incoming(&BTreeMap::new(), b"not json").await.unwrap_err().to_string();
    assert!(error.contains("the plugin `json-chat` failed in `parse_incoming`"), "{error}");
    // The plugin goes on: the next delivery parses.
    let incoming = chat.parse_incoming(&BTreeMap::new(), br#"{"type": "ping"}"#).await.unwrap();
    assert_eq!(incoming.response, Some(json!({"pong": true})));
}
