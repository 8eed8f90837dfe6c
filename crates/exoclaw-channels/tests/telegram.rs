//! The Telegram channel against the Bot API's wire format (`exoclaw_testkit::telegram`): updates
//! delivered with the webhook's secret token, the Bot API played by a recording HTTP server, turns
//! answered by a runtime whose model says back what it was asked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{calls, echo_model};
use exoclaw_channels::{TelegramChannel, TelegramConfig};
use exoclaw_core::runtime::Webhook;
use exoclaw_testkit::provider::RespondingProvider;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use exoclaw_testkit::telegram;
use http::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "webhook-secret-123";

async fn channel(api: &ScriptedServer, model: &Arc<RespondingProvider>) -> TelegramChannel {
    let runtime = common::runtime(model, None).await;
    let config = TelegramConfig {
        api_base: api.url(),
        bot_username: Some("ExoBot".into()),
        ..TelegramConfig::default()
    };
    TelegramChannel::new(&config, "123:ABC", SECRET.into(), runtime)
}

fn secret(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(exoclaw_channels::telegram::SECRET_HEADER, value.parse().unwrap());
    headers
}

async fn deliver(channel: &TelegramChannel, update: &Value) {
    let body = update.to_string();
    channel.verify(&secret(SECRET), body.as_bytes()).unwrap();
    assert_eq!(channel.receive(&secret(SECRET), Bytes::from(body)).await.unwrap(), json!({"ok": true}));
}

#[tokio::test]
async fn a_private_message_is_answered_as_a_reply() {
    let api = telegram::bot_api(1).await;
    let channel = channel(&api, &echo_model()).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "hello bot")).await;
    let request = calls(&api, 1).await.remove(0);
    // The token is in the path, as the Bot API wants it.
    assert_eq!(request.path, "/bot123:ABC/sendMessage");
    assert_eq!(
        request.body,
        json!({"chat_id": 42, "text": "you said: hello bot", "reply_parameters": {"message_id": 10}})
    );
}

#[tokio::test]
async fn a_delivery_without_the_secret_token_is_refused() {
    let api = telegram::bot_api(0).await;
    let channel = channel(&api, &echo_model()).await;
    assert!(channel.verify(&secret("guess"), b"{}").unwrap_err().contains("does not match"));
    assert!(
        channel.verify(&HeaderMap::new(), b"{}").unwrap_err().contains("no X-Telegram-Bot-Api-Secret-Token")
    );
}

#[tokio::test]
async fn in_a_group_only_messages_naming_the_bot_are_questions_and_redeliveries_are_answered_once() {
    let api = telegram::bot_api(2).await;
    let model = echo_model();
    let channel = channel(&api, &model).await;
    deliver(&channel, &telegram::message(1, 10, -100, "supergroup", (42, "alice"), "just chatting")).await;
    let named = telegram::message(2, 11, -100, "supergroup", (42, "alice"), "@exobot what now?");
    deliver(&channel, &named).await;
    deliver(&channel, &named).await;
    let requests = calls(&api, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.requests().len(), 1);
    assert_eq!(requests[0].body["text"], "you said: what now?");
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn a_rate_limited_send_waits_the_retry_after_telegram_gives() {
    let api = ScriptedServer::start([
        telegram::too_many_requests(1),
        Reply::json(200, &json!({"ok": true, "result": {"message_id": 1}})),
    ])
    .await;
    let channel = channel(&api, &echo_model()).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "hi")).await;
    let requests = calls(&api, 2).await;
    assert_eq!(requests[0].body, requests[1].body);
}
