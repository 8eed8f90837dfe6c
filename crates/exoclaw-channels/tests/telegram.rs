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

// ---------------------------------------------------------------------------------------------
// Approvals of gated tool calls, asked with an inline keyboard

/// A Telegram channel whose agent asks to deploy (a call that needs a person's approval),
/// prompts waiting `timeout`, on a Bot API accepting `calls` calls.
async fn deploying(
    calls: usize,
    timeout: Duration,
) -> (TelegramChannel, ScriptedServer, Arc<common::Deploy>) {
    let api = telegram::bot_api(calls).await;
    let deploy = Arc::new(common::Deploy::default());
    let config = TelegramConfig {
        api_base: api.url(),
        bot_username: Some("ExoBot".into()),
        ..TelegramConfig::default()
    };
    let approvals = exoclaw_channels::Approvals::new(exoclaw_channels::ApprovalMode::Ask, timeout);
    let channel =
        TelegramChannel::new(&config, "123:ABC", SECRET.into(), common::deploying_runtime(&deploy).await)
            .with_approvals(approvals);
    (channel, api, deploy)
}

fn method<'a>(
    calls: &'a [exoclaw_testkit::server::Recorded],
    name: &str,
) -> Vec<&'a exoclaw_testkit::server::Recorded> {
    calls.iter().filter(|c| c.path == format!("/bot123:ABC/{name}")).collect()
}

/// The callback data of the prompt's button labelled `label`.
fn button(prompt: &exoclaw_testkit::server::Recorded, label: &str) -> String {
    telegram::buttons(&prompt.body).into_iter().find(|(l, _)| l == label).unwrap().1
}

#[tokio::test]
async fn a_gated_call_is_asked_with_a_keyboard_and_runs_once_the_asker_approves() {
    let (channel, api, deploy) = deploying(4, Duration::from_secs(60)).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "ship it")).await;
    let prompt = calls(&api, 1).await.remove(0);
    assert_eq!(prompt.path, "/bot123:ABC/sendMessage");
    assert_eq!(prompt.body["parse_mode"], "HTML");
    assert_eq!(prompt.body["reply_parameters"], json!({"message_id": 10}));
    let labels: Vec<String> = telegram::buttons(&prompt.body).into_iter().map(|(label, _)| label).collect();
    assert_eq!(labels, ["Approve", "Approve for this session", "Deny"]);
    assert!(telegram::buttons(&prompt.body).iter().all(|(_, data)| data.len() <= 64));
    let text = prompt.body["text"].as_str().unwrap();
    assert!(text.contains("<code>deploy</code>"), "{text}");
    assert!(text.contains("&lt;prod&gt;"), "the arguments, escaped: {text}");
    assert!(text.contains("Only @alice can answer."), "{text}");

    deliver(&channel, &telegram::callback_query(2, (42, "alice"), 42, 1000, &button(&prompt, "Approve")))
        .await;
    let all = calls(&api, 4).await;
    let answered = method(&all, "answerCallbackQuery");
    assert_eq!(answered[0].body, json!({"callback_query_id": "cq2", "text": "Approved"}));
    let edit = method(&all, "editMessageText")[0];
    assert_eq!((edit.body["chat_id"].clone(), edit.body["message_id"].clone()), (json!(42), json!(1000)));
    assert!(edit.body["text"].as_str().unwrap().ends_with("✅ Approved by @alice."), "{:?}", edit.body);
    assert!(edit.body.get("reply_markup").is_none(), "the keyboard is gone");
    let answer = method(&all, "sendMessage")[1];
    assert_eq!(answer.body["text"], "the tool said: deployed to <prod>");
    assert_eq!(deploy.deployed(), ["<prod>"]);
}

#[tokio::test]
async fn a_denied_call_does_not_run_and_the_model_is_told() {
    let (channel, api, deploy) = deploying(4, Duration::from_secs(60)).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "ship it")).await;
    let prompt = calls(&api, 1).await.remove(0);
    deliver(&channel, &telegram::callback_query(2, (42, "alice"), 42, 1000, &button(&prompt, "Deny"))).await;
    let all = calls(&api, 4).await;
    assert!(
        method(&all, "editMessageText")[0].body["text"].as_str().unwrap().ends_with("⛔ Denied by @alice.")
    );
    assert!(method(&all, "sendMessage")[1].body["text"].as_str().unwrap().starts_with(common::DENIED));
    assert!(deploy.deployed().is_empty());
}

#[tokio::test]
async fn another_users_press_in_a_group_is_refused_to_them_and_changes_nothing() {
    let (channel, api, deploy) = deploying(5, Duration::from_secs(60)).await;
    // Anyone in the group may see the prompt; only alice asked.
    let question = telegram::message(1, 10, -100, "supergroup", (42, "alice"), "@exobot ship it");
    deliver(&channel, &question).await;
    let prompt = calls(&api, 1).await.remove(0);
    deliver(
        &channel,
        &telegram::callback_query(2, (666, "mallory"), -100, 1000, &button(&prompt, "Approve")),
    )
    .await;
    let refused = calls(&api, 2).await.remove(1);
    assert_eq!(refused.path, "/bot123:ABC/answerCallbackQuery");
    assert_eq!(refused.body["show_alert"], true, "only mallory sees it");
    assert!(refused.body["text"].as_str().unwrap().starts_with("Only the person who asked"));
    assert!(deploy.deployed().is_empty());

    deliver(&channel, &telegram::callback_query(3, (42, "alice"), -100, 1000, &button(&prompt, "Deny")))
        .await;
    let all = calls(&api, 5).await;
    assert_eq!(method(&all, "editMessageText").len(), 1);
    assert!(
        method(&all, "editMessageText")[0].body["text"].as_str().unwrap().ends_with("⛔ Denied by @alice.")
    );
    assert!(deploy.deployed().is_empty());
}

#[tokio::test]
async fn a_prompt_nobody_answers_denies_the_call_and_says_so() {
    let (channel, api, deploy) = deploying(3, Duration::from_millis(300)).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "ship it")).await;
    let all = calls(&api, 3).await;
    let edit = method(&all, "editMessageText")[0];
    assert!(edit.body["text"].as_str().unwrap().ends_with("⌛ Nobody answered within 300 ms: denied."));
    assert!(method(&all, "sendMessage")[1].body["text"].as_str().unwrap().starts_with(common::DENIED));
    assert!(deploy.deployed().is_empty());
}
