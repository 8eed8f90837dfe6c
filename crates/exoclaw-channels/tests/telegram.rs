//! The Telegram channel against the Bot API's wire format (`exoclaw_testkit::telegram`): updates
//! delivered with the webhook's secret token, the Bot API played by a recording HTTP server, turns
//! answered by a runtime whose model says back what it was asked; and the same bot by long
//! polling a Bot API that serves `getUpdates` (`exoclaw_testkit::telegram::FakeBotApi`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{calls, echo_model};
use exoclaw_channels::telegram::{PollError, TelegramPoller};
use exoclaw_channels::{TelegramChannel, TelegramConfig};
use exoclaw_core::runtime::Webhook;
use exoclaw_testkit::provider::RespondingProvider;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use exoclaw_testkit::telegram::{self, FakeBotApi};
use http::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
            .with_approvals(approvals)
            // These tests are about the prompt, not the progress message.
            .with_progress(false);
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

/// A bot polling `api` with `token` until `stop`; its outcome.
fn poll(
    api: &FakeBotApi,
    token: &str,
    runtime: Arc<dyn exoclaw_core::runtime::AgentRuntime>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), PollError>> {
    let config = TelegramConfig { api_base: api.url(), ..TelegramConfig::default() };
    let poller = Arc::new(TelegramPoller::new(&config, token, runtime));
    tokio::spawn(poller.run(stop.clone()))
}

/// How long a stopped loop may take to end before the test calls it stuck: far above the
/// instant it takes, far below the 30 s long poll it must not wait out.
const STUCK: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_polled_message_is_answered_and_stopping_ends_the_loop_at_once() {
    let api = FakeBotApi::start("123:ABC").await;
    let model = echo_model();
    let stop = CancellationToken::new();
    let polling = poll(&api, "123:ABC", common::runtime(&model, None).await, &stop);
    api.push(telegram::message(1, 10, 42, "private", (42, "alice"), "hello bot"));
    let sent = api.sent(1).await;
    assert_eq!(
        sent[0],
        json!({"chat_id": 42, "text": "you said: hello bot", "reply_parameters": {"message_id": 10}})
    );
    // The webhook went first (Telegram refuses getUpdates while one is set), and the polls ask
    // for messages and button presses.
    assert_eq!(api.calls("deleteWebhook").len(), 1);
    let first = &api.calls("getUpdates")[0];
    assert_eq!(first["allowed_updates"], json!(["message", "callback_query"]));
    assert!(first["timeout"].as_u64().unwrap() >= 25, "{first}");

    exoclaw_testkit::until("a long poll held open", || api.polling().then_some(())).await;
    stop.cancel();
    let ended = tokio::time::timeout(STUCK, polling).await.expect("the loop ended on stop");
    assert!(ended.unwrap().is_ok());
}

#[tokio::test]
async fn an_update_is_given_once_across_a_failed_poll_and_a_restart() {
    let api = FakeBotApi::start("123:ABC").await;
    let model = echo_model();
    let runtime = common::runtime(&model, None).await;
    let stop = CancellationToken::new();
    let polling = poll(&api, "123:ABC", Arc::clone(&runtime), &stop);
    // The poll after the one that gives update 1 fails with a 500 (a poll already held open is
    // not failed); the loop tries again and goes on from where it was.
    api.fail_polls(Some(500));
    api.push(telegram::message(1, 10, 42, "private", (42, "alice"), "one"));
    exoclaw_testkit::until("a failed poll", || (api.failed_polls() > 0).then_some(())).await;
    api.fail_polls(None);
    api.sent(1).await;
    api.push(telegram::message(2, 11, 42, "private", (42, "alice"), "two"));
    let sent = api.sent(2).await;
    assert_eq!(sent[1]["text"], "you said: one | two");

    // Stopped and started again (a gateway restart: a new poller that remembers nothing), it is
    // not given the updates it answered.
    stop.cancel();
    tokio::time::timeout(STUCK, polling).await.unwrap().unwrap().unwrap();
    let stop = CancellationToken::new();
    let _again = poll(&api, "123:ABC", runtime, &stop);
    api.push(telegram::message(3, 12, 42, "private", (42, "alice"), "three"));
    let sent = api.sent(3).await;
    assert_eq!(sent[2]["text"], "you said: one | two | three");
    for update in 1..=3 {
        assert_eq!(api.deliveries(update), 1, "update {update} was given more than once");
    }
    assert_eq!(model.requests().len(), 3);
    stop.cancel();
}

#[tokio::test]
async fn a_token_telegram_refuses_stops_polling_with_an_error_naming_its_variable() {
    let api = FakeBotApi::start("123:ABC").await;
    let stop = CancellationToken::new();
    let polling = poll(&api, "999:WRONG", common::runtime(&echo_model(), None).await, &stop);
    let error = tokio::time::timeout(STUCK, polling).await.unwrap().unwrap().unwrap_err();
    let error = error.to_string();
    assert!(error.contains("401") && error.contains("TELEGRAM_BOT_TOKEN"), "{error}");
    assert!(!error.contains("999:WRONG"), "the token leaked: {error}");
}

#[tokio::test]
async fn a_conflicting_consumer_is_waited_out_and_polling_goes_on() {
    let api = FakeBotApi::start("123:ABC").await;
    api.fail_polls(Some(409));
    let stop = CancellationToken::new();
    let _polling = poll(&api, "123:ABC", common::runtime(&echo_model(), None).await, &stop);
    exoclaw_testkit::until("a refused poll", || (api.failed_polls() > 0).then_some(())).await;
    api.fail_polls(None);
    api.push(telegram::message(1, 10, 42, "private", (42, "alice"), "still there?"));
    assert_eq!(api.sent(1).await[0]["text"], "you said: still there?");
    stop.cancel();
}

#[tokio::test]
async fn a_polling_channel_takes_no_webhook_delivery() {
    let api = telegram::bot_api(0).await;
    let runtime = common::runtime(&echo_model(), None).await;
    let config = TelegramConfig { api_base: api.url(), ..TelegramConfig::default() };
    let channel = TelegramChannel::new(&config, "123:ABC", String::new(), runtime);
    assert!(channel.verify(&secret(""), b"{}").is_err());
}

// ---------------------------------------------------------------------------------------------
// Progress while tools run

/// A Telegram channel whose agent counts rows (a tool that runs without asking), on the Bot API
/// at `api`; progress edits an hour apart, so the calls do not depend on the machine's speed.
async fn counting(api: &ScriptedServer) -> TelegramChannel {
    let config = TelegramConfig { api_base: api.url(), ..TelegramConfig::default() };
    TelegramChannel::new(&config, "123:ABC", SECRET.into(), common::counting_runtime().await)
        .with_progress_interval(Duration::from_secs(3_600))
}

#[tokio::test]
async fn a_turn_running_a_tool_shows_progress_and_the_answer_replaces_it() {
    let api = telegram::bot_api(3).await;
    let channel = counting(&api).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "how many users?")).await;
    calls(&api, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = api.requests();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].path, "/bot123:ABC/sendMessage");
    assert_eq!(
        all[0].body,
        json!({"chat_id": 42, "text": "Working… running `count_rows`", "reply_parameters": {"message_id": 10}})
    );
    // The fake numbered the progress message 1000: it now says the answer.
    assert_eq!(all[1].path, "/bot123:ABC/editMessageText");
    assert_eq!(all[1].body, json!({"chat_id": 42, "message_id": 1000, "text": common::COUNTED}));
}

#[tokio::test]
async fn a_turn_without_tools_sends_its_answer_once_with_no_edit() {
    let api = telegram::bot_api(2).await;
    let channel = channel(&api, &echo_model()).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "hello")).await;
    calls(&api, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = api.requests();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].body["text"], "you said: hello");
}

#[tokio::test]
async fn an_edit_telegram_refuses_still_gets_the_answer_sent() {
    let api = ScriptedServer::start([
        Reply::json(200, &json!({"ok": true, "result": {"message_id": 7, "date": 1_700_000_000}})),
        Reply::json(
            400,
            &json!({"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"}),
        ),
        Reply::json(200, &json!({"ok": true, "result": {"message_id": 8, "date": 1_700_000_000}})),
    ])
    .await;
    let channel = counting(&api).await;
    deliver(&channel, &telegram::message(1, 10, 42, "private", (42, "alice"), "how many users?")).await;
    let all = calls(&api, 3).await;
    assert_eq!(all[1].path, "/bot123:ABC/editMessageText");
    assert_eq!(all[2].path, "/bot123:ABC/sendMessage");
    assert_eq!(
        all[2].body,
        json!({"chat_id": 42, "text": common::COUNTED, "reply_parameters": {"message_id": 10}})
    );
}

#[tokio::test]
async fn a_document_sent_to_the_bot_reaches_the_model_as_text_with_its_caption() {
    let api = FakeBotApi::start("123:ABC").await;
    api.add_file("BQAD1", "documents/file_7.csv", common::REPORT.as_bytes());
    let stop = CancellationToken::new();
    let _polling = poll(&api, "123:ABC", common::runtime(&common::seeing_model(), None).await, &stop);
    let document = ("BQAD1", "report.csv", "text/csv", common::REPORT.len());
    api.push(telegram::document_message(1, 10, 42, (42, "alice"), document, Some("sum it up")));
    let sent = api.sent(1).await;
    assert_eq!(
        sent[0]["text"],
        format!(
            "saw: sum it up / [Attached file: `report.csv` (text/csv, 31 bytes).]\n```\n{}\n``` + 0 image(s)",
            common::REPORT
        )
    );
    assert_eq!(api.calls("getFile"), [json!({"file_id": "BQAD1"})]);
    stop.cancel();
}

#[tokio::test]
async fn a_file_telegram_cannot_give_is_named_to_the_model_and_the_turn_goes_on() {
    let api = FakeBotApi::start("123:ABC").await;
    let stop = CancellationToken::new();
    let _polling = poll(&api, "123:ABC", common::runtime(&common::seeing_model(), None).await, &stop);
    let document = ("GONE", "old.pdf", "application/pdf", 2_000);
    api.push(telegram::document_message(1, 10, 42, (42, "alice"), document, None));
    let sent = api.sent(1).await;
    assert_eq!(
        sent[0]["text"],
        "saw: [Attached: `old.pdf` (application/pdf, 2 KB). It could not be downloaded: getFile: 400 Bad Request: Bad Request: invalid file_id.] + 0 image(s)"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_file_the_agent_sends_is_a_document_replying_to_the_question() {
    let api = FakeBotApi::start("123:ABC").await;
    let (_workspace, runtime) = common::sending_runtime().await;
    let stop = CancellationToken::new();
    let _polling = poll(&api, "123:ABC", runtime, &stop);
    api.push(telegram::message(1, 10, 42, "private", (42, "alice"), "the report please"));
    exoclaw_testkit::until("a sendDocument call", || api.calls("sendDocument").pop()).await;
    // The tool call showed progress; the answer was edited into it before the file went.
    assert_eq!(api.calls("sendMessage")[0]["text"], "Working… running `send_file`");
    assert_eq!(api.calls("editMessageText").pop().unwrap()["text"], common::SENT);
    let document = api.calls("sendDocument").remove(0);
    assert_eq!(document["chat_id"], "42");
    assert_eq!(document["caption"], "Q3 totals");
    assert_eq!(document["reply_parameters"], json!({"message_id": 10}).to_string());
    assert_eq!(document["document"], json!({"filename": "report.csv", "content": common::REPORT}));
    stop.cancel();
}

#[tokio::test]
async fn the_long_poll_lasts_what_the_configuration_says() {
    let api = FakeBotApi::start("123:ABC").await;
    let config = TelegramConfig { api_base: api.url(), poll_timeout_secs: 7, ..TelegramConfig::default() };
    let poller =
        Arc::new(TelegramPoller::new(&config, "123:ABC", common::runtime(&echo_model(), None).await));
    let stop = CancellationToken::new();
    let _polling = tokio::spawn(poller.run(stop.clone()));
    let first = exoclaw_testkit::until("a getUpdates call", || api.calls("getUpdates").pop()).await;
    assert_eq!(first["timeout"], 7);
    stop.cancel();
}
