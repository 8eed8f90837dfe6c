//! The Slack channel against Slack's wire format (`exoclaw_testkit::slack`): deliveries signed as
//! Slack signs them, the Web API played by a recording HTTP server, turns answered by a runtime
//! whose model says back what it was asked; and the same app over Socket Mode
//! (`exoclaw_testkit::slack::FakeSocketMode`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{calls, echo_model};
use exoclaw_channels::slack::{SlackSocket, SocketError};
use exoclaw_channels::{SlackChannel, SlackConfig};
use exoclaw_core::runtime::Webhook;
use exoclaw_testkit::provider::RespondingProvider;
use exoclaw_testkit::server::ScriptedServer;
use exoclaw_testkit::slack::{self, FakeSocketMode};
use http::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

struct Fixture {
    channel: SlackChannel,
    api: ScriptedServer,
    model: Arc<RespondingProvider>,
}

/// The Slack channel on the Web API at `api`, its turns answered by `model`.
async fn channel(
    api: &ScriptedServer,
    model: &Arc<RespondingProvider>,
    configure: impl FnOnce(&mut SlackConfig),
) -> SlackChannel {
    let runtime = common::runtime(model, None).await;
    let mut config = SlackConfig { api_base: api.url(), ..SlackConfig::default() };
    configure(&mut config);
    SlackChannel::new(&config, SECRET.into(), "xoxb-test-token".into(), runtime)
}

/// A Slack channel whose Web API accepts `posts` calls, answering with [`echo_model`].
async fn fixture(posts: usize, configure: impl FnOnce(&mut SlackConfig)) -> Fixture {
    let api = slack::web_api(posts).await;
    let model = echo_model();
    let channel = channel(&api, &model, configure).await;
    Fixture { channel, api, model }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn headers(pairs: Vec<(&'static str, String)>) -> HeaderMap {
    pairs.into_iter().map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap())).collect()
}

/// Delivers `payload` as Slack does: verified, then taken.
async fn deliver(channel: &SlackChannel, payload: &Value) -> Value {
    let body = payload.to_string();
    let headers = headers(slack::headers(SECRET, now(), body.as_bytes()));
    channel.verify(&headers, body.as_bytes()).unwrap();
    channel.receive(&headers, Bytes::from(body)).await.unwrap()
}

#[tokio::test]
async fn the_url_verification_handshake_is_answered_with_its_challenge() {
    let f = fixture(0, |_| {}).await;
    let answer =
        deliver(&f.channel, &slack::url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"))
            .await;
    assert_eq!(answer, json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}));
}

#[tokio::test]
async fn a_mention_is_answered_in_its_thread_through_the_web_api() {
    let f = fixture(1, |_| {}).await;
    let answer =
        deliver(&f.channel, &slack::mention("Ev1", "T1", "C1", "U1", "what is up?", "1700000000.000100"))
            .await;
    assert_eq!(answer, json!({"ok": true}));
    let post = calls(&f.api, 1).await.remove(0);
    assert_eq!(post.path, "/chat.postMessage");
    assert_eq!(post.header("authorization"), Some("Bearer xoxb-test-token"));
    assert_eq!(
        post.body,
        json!({"channel": "C1", "thread_ts": "1700000000.000100", "text": "you said: what is up?"})
    );
}

#[tokio::test]
async fn a_forged_or_replayed_delivery_is_refused() {
    let f = fixture(0, |_| {}).await;
    let body = slack::mention("Ev1", "T1", "C1", "U1", "hi", "1.1").to_string();
    let forged = headers(slack::headers("not-the-secret", now(), body.as_bytes()));
    let error = f.channel.verify(&forged, body.as_bytes()).unwrap_err();
    assert!(error.contains("signature does not match"), "{error}");

    // A genuine delivery captured and sent again ten minutes later.
    let replayed = headers(slack::headers(SECRET, now() - 600, body.as_bytes()));
    let error = f.channel.verify(&replayed, body.as_bytes()).unwrap_err();
    assert!(error.contains("more than 5 minutes"), "{error}");

    // The right signature on another body.
    let genuine = headers(slack::headers(SECRET, now(), body.as_bytes()));
    assert!(f.channel.verify(&genuine, b"{\"type\":\"event_callback\"}").is_err());
    assert!(f.channel.verify(&HeaderMap::new(), body.as_bytes()).is_err());
}

#[tokio::test]
async fn a_slack_retry_of_the_same_event_is_not_answered_twice() {
    let f = fixture(2, |_| {}).await;
    let event = slack::mention("Ev42", "T1", "C1", "U1", "once", "2.2");
    deliver(&f.channel, &event).await;
    deliver(&f.channel, &event).await;
    calls(&f.api, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.api.requests().len(), 1);
    assert_eq!(f.model.requests().len(), 1);
}

#[tokio::test]
async fn two_conversations_are_two_sessions_each_in_order() {
    let f = fixture(3, |_| {}).await;
    deliver(&f.channel, &slack::mention("Ev1", "T1", "C1", "U1", "one", "1.1")).await;
    deliver(&f.channel, &slack::mention("Ev2", "T1", "C1", "U1", "two", "1.2")).await;
    deliver(&f.channel, &slack::direct_message("Ev3", "T1", "U2", "three", "1.3")).await;
    let posted = calls(&f.api, 3).await;
    assert_eq!(posted.len(), 3);
    let texts: Vec<&str> = posted.iter().map(|p| p.body["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"you said: one"), "{texts:?}");
    assert!(texts.contains(&"you said: one | two"), "{texts:?}");
    assert!(texts.contains(&"you said: three"), "{texts:?}");
    // A direct message is answered in the DM itself, not in a thread.
    let dm = posted.iter().find(|p| p.body["text"] == "you said: three").unwrap();
    assert_eq!(dm.body["channel"], "DU2");
    assert!(dm.body.get("thread_ts").is_none());
}

#[tokio::test]
async fn messages_from_outside_the_allow_lists_are_ignored() {
    let f = fixture(1, |config| config.allow_users = vec!["U1".into()]).await;
    deliver(&f.channel, &slack::mention("Ev1", "T1", "C1", "U666", "let me in", "1.1")).await;
    deliver(&f.channel, &slack::mention("Ev2", "T1", "C1", "U1", "hello", "1.2")).await;
    let posted = calls(&f.api, 1).await;
    assert_eq!(posted[0].body["text"], "you said: hello");
    assert_eq!(f.model.requests().len(), 1);
}

#[tokio::test]
async fn the_bots_own_messages_and_edits_are_not_questions() {
    let f = fixture(0, |_| {}).await;
    let own = slack::event_callback(
        "Ev1",
        "T1",
        json!({"type": "message", "channel_type": "im", "bot_id": "B1", "user": "U0BOT", "text": "an answer", "ts": "1.1", "channel": "D1"}),
    );
    deliver(&f.channel, &own).await;
    let edit = slack::event_callback(
        "Ev2",
        "T1",
        json!({"type": "message", "channel_type": "im", "subtype": "message_changed", "user": "U1", "text": "x", "ts": "1.2", "channel": "D1"}),
    );
    deliver(&f.channel, &edit).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.model.requests().is_empty());
}

#[tokio::test]
async fn a_rate_limited_post_is_retried_after_retry_after() {
    use exoclaw_testkit::server::Reply;
    let api = ScriptedServer::start([
        Reply::json(429, &json!({"ok": false, "error": "ratelimited"})).header("retry-after", "1"),
        Reply::json(200, &json!({"ok": true, "ts": "1.1"})),
    ])
    .await;
    let channel = channel(&api, &echo_model(), |_| {}).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "hi", "1.1")).await;
    let posted = calls(&api, 2).await;
    assert_eq!(posted[0].body, posted[1].body);
}

#[tokio::test]
async fn a_long_answer_is_posted_in_pieces_within_slacks_limit() {
    let f = fixture(4, |_| {}).await;
    let question = vec!["lorem ipsum dolor sit amet ".repeat(40); 10].join("\n\n");
    deliver(&f.channel, &slack::mention("Ev1", "T1", "C1", "U1", &question, "1.1")).await;
    let posted = calls(&f.api, 3).await;
    assert_eq!(posted.len(), 3);
    for post in &posted {
        let text = post.body["text"].as_str().unwrap();
        assert!(text.chars().count() <= exoclaw_channels::slack::MESSAGE_LIMIT);
        assert_eq!(post.body["thread_ts"], "1.1");
    }
}

#[tokio::test]
async fn a_failing_web_api_opens_the_breaker_and_answers_stop_hammering_it() {
    use exoclaw_testkit::server::Reply;
    let api = ScriptedServer::start((0..10).map(|_| Reply::json(500, &json!({"ok": false})))).await;
    let model = echo_model();
    let channel = channel(&api, &model, |_| {}).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "one", "1.1")).await;
    calls(&api, 3).await;
    deliver(&channel, &slack::mention("Ev2", "T1", "C2", "U1", "two", "1.2")).await;
    calls(&api, 5).await;
    // Five failures within the minute: the breaker is open, the next answers are not attempted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    deliver(&channel, &slack::mention("Ev3", "T1", "C3", "U1", "three", "1.3")).await;
    for _ in 0..50 {
        if model.requests().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(model.requests().len(), 3, "every message still got its turn");
    assert_eq!(api.requests().len(), 5, "the open breaker let a call through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_conversations_at_once_each_get_exactly_their_answer() {
    const CONVERSATIONS: usize = 1_000;
    let f = fixture(CONVERSATIONS + 10, |_| {}).await;
    let channel = Arc::new(f.channel);
    let mut deliveries = Vec::new();
    for i in 0..CONVERSATIONS {
        let channel = Arc::clone(&channel);
        deliveries.push(tokio::spawn(async move {
            let event = slack::mention(
                &format!("Ev{i}"),
                "T1",
                &format!("C{i}"),
                "U1",
                &format!("question {i}"),
                "1.1",
            );
            deliver(&channel, &event).await;
        }));
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    calls(&f.api, CONVERSATIONS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posted = f.api.requests();
    assert_eq!(posted.len(), CONVERSATIONS, "lost or duplicated answers");
    let mut answered: Vec<(String, String)> = posted
        .iter()
        .map(|p| {
            (p.body["channel"].as_str().unwrap().to_owned(), p.body["text"].as_str().unwrap().to_owned())
        })
        .collect();
    answered.sort();
    answered.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(answered.len(), CONVERSATIONS, "a conversation was answered twice");
    for (channel, text) in &answered {
        let i = channel.trim_start_matches('C');
        assert_eq!(text, &format!("you said: question {i}"), "{channel} got another conversation's answer");
    }
}

#[tokio::test]
async fn a_model_prefix_picks_an_allowed_model_for_that_turn_and_others_are_refused() {
    let api = slack::web_api(2).await;
    let model = echo_model();
    let channel = channel(&api, &model, |_| {}).await.with_models(vec!["echo/*".into()]);
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "[echo/bigger] think hard", "1.1")).await;
    let first = calls(&api, 1).await.remove(0);
    assert_eq!(first.body["text"], "you said: think hard");
    assert_eq!(model.requests()[0].model.to_string(), "echo/bigger");

    deliver(&channel, &slack::mention("Ev2", "T1", "C2", "U1", "[openai/o3] spend it all", "1.2")).await;
    let refused = calls(&api, 2).await.remove(1);
    let text = refused.body["text"].as_str().unwrap();
    assert!(text.contains("`openai/o3` cannot be chosen here"), "{text}");
    assert_eq!(model.requests().len(), 1, "a refused model must not be asked");
}

// ---------------------------------------------------------------------------------------------
// Approvals of gated tool calls, asked in the thread

/// A Slack channel whose agent asks to deploy (a call that needs a person's approval), prompts
/// waiting `timeout`, on a Web API accepting `calls` calls.
async fn deploying(calls: usize, timeout: Duration) -> (SlackChannel, ScriptedServer, Arc<common::Deploy>) {
    let api = slack::web_api(calls).await;
    let deploy = Arc::new(common::Deploy::default());
    let config = SlackConfig { api_base: api.url(), ..SlackConfig::default() };
    let approvals = exoclaw_channels::Approvals::new(exoclaw_channels::ApprovalMode::Ask, timeout);
    let channel = SlackChannel::new(
        &config,
        SECRET.into(),
        "xoxb-test-token".into(),
        common::deploying_runtime(&deploy).await,
    )
    .with_approvals(approvals)
    // These tests are about the prompt; progress with approvals has its own test.
    .with_progress(false);
    (channel, api, deploy)
}

/// Presses the button `value` of the prompt posted at `ts` in `C1`, as `user`, through
/// `/webhook/slack` as Slack's interactivity request.
async fn press(channel: &SlackChannel, user: &str, ts: &str, value: &str) {
    let body = slack::interaction_body(&slack::block_actions("T1", user, "C1", ts, value));
    let headers = headers(slack::interaction_headers(SECRET, now(), body.as_bytes()));
    channel.verify(&headers, body.as_bytes()).unwrap();
    channel.receive(&headers, Bytes::from(body)).await.unwrap();
}

/// The button labelled `label` of the prompt `posted`.
fn button(posted: &exoclaw_testkit::server::Recorded, label: &str) -> String {
    slack::buttons(&posted.body).into_iter().find(|(l, _)| l == label).unwrap().1
}

fn find<'a>(
    calls: &'a [exoclaw_testkit::server::Recorded],
    path: &str,
) -> &'a exoclaw_testkit::server::Recorded {
    calls.iter().find(|c| c.path == path).unwrap_or_else(|| panic!("no {path} in {calls:#?}"))
}

#[tokio::test]
async fn a_gated_call_is_asked_in_the_thread_and_runs_once_the_asker_approves() {
    let (channel, api, deploy) = deploying(3, Duration::from_secs(60)).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1700000000.000100")).await;
    let prompt = calls(&api, 1).await.remove(0);
    assert_eq!(prompt.path, "/chat.postMessage");
    assert_eq!(prompt.body["thread_ts"], "1700000000.000100");
    let labels: Vec<String> = slack::buttons(&prompt.body).into_iter().map(|(label, _)| label).collect();
    assert_eq!(labels, ["Approve", "Approve for this session", "Deny"]);
    let text = prompt.body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.contains("`deploy`"), "{text}");
    assert!(text.contains("\"target\": \"&lt;prod&gt;\""), "the arguments, escaped: {text}");
    assert!(text.contains("Touches: command `deploy &lt;prod&gt;`"), "{text}");
    assert!(text.contains("Only <@U1> can answer (a button, or react ✅ or ❌)."), "{text}");
    assert!(deploy.deployed().is_empty(), "nothing runs before the answer");

    press(&channel, "U1", "1700000000.000000", &button(&prompt, "Approve")).await;
    let all = calls(&api, 3).await;
    let update = find(&all, "/chat.update");
    assert_eq!(update.body["ts"], "1700000000.000000");
    assert!(update.body["text"].as_str().unwrap().ends_with("✅ Approved by <@U1>."), "{:?}", update.body);
    assert!(slack::buttons(&update.body).is_empty(), "the buttons are gone");
    let answer = all.iter().filter(|c| c.path == "/chat.postMessage").nth(1).unwrap();
    assert_eq!(answer.body["text"], "the tool said: deployed to <prod>");
    assert_eq!(deploy.deployed(), ["<prod>"]);
}

#[tokio::test]
async fn a_denied_call_does_not_run_and_the_model_is_told() {
    let (channel, api, deploy) = deploying(3, Duration::from_secs(60)).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1.1")).await;
    let prompt = calls(&api, 1).await.remove(0);
    press(&channel, "U1", "1700000000.000000", &button(&prompt, "Deny")).await;
    let all = calls(&api, 3).await;
    assert!(find(&all, "/chat.update").body["text"].as_str().unwrap().ends_with("⛔ Denied by <@U1>."));
    let answer = all.iter().filter(|c| c.path == "/chat.postMessage").nth(1).unwrap();
    assert!(answer.body["text"].as_str().unwrap().starts_with(common::DENIED), "{:?}", answer.body);
    assert!(deploy.deployed().is_empty());
}

#[tokio::test]
async fn another_users_press_is_refused_to_them_alone_and_changes_nothing() {
    let (channel, api, deploy) = deploying(5, Duration::from_secs(60)).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1.1")).await;
    let prompt = calls(&api, 1).await.remove(0);
    press(&channel, "U666", "1700000000.000000", &button(&prompt, "Approve")).await;
    let refusal = calls(&api, 2).await.remove(1);
    assert_eq!(refusal.path, "/chat.postEphemeral");
    assert_eq!(refusal.body["user"], "U666");
    assert!(refusal.body["text"].as_str().unwrap().starts_with("Only <@U1>"), "{:?}", refusal.body);
    assert!(deploy.deployed().is_empty(), "the stranger's approval did not run it");

    // The asker's answer still counts; a second press after it is ignored.
    press(&channel, "U1", "1700000000.000000", &button(&prompt, "Deny")).await;
    press(&channel, "U1", "1700000000.000000", &button(&prompt, "Approve")).await;
    let all = calls(&api, 4).await;
    assert!(find(&all, "/chat.update").body["text"].as_str().unwrap().ends_with("⛔ Denied by <@U1>."));
    let answer = all.iter().filter(|c| c.path == "/chat.postMessage").nth(1).unwrap();
    assert!(answer.body["text"].as_str().unwrap().starts_with(common::DENIED));
    assert!(deploy.deployed().is_empty());
    assert_eq!(all.iter().filter(|c| c.path == "/chat.update").count(), 1);
}

#[tokio::test]
async fn a_prompt_nobody_answers_denies_the_call_and_says_so() {
    let (channel, api, deploy) = deploying(3, Duration::from_millis(300)).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1.1")).await;
    let all = calls(&api, 3).await;
    let update = find(&all, "/chat.update");
    assert!(
        update.body["text"].as_str().unwrap().ends_with("⌛ Nobody answered within 300 ms: denied."),
        "{:?}",
        update.body
    );
    let answer = all.iter().filter(|c| c.path == "/chat.postMessage").nth(1).unwrap();
    assert!(answer.body["text"].as_str().unwrap().starts_with(common::DENIED));
    assert!(deploy.deployed().is_empty());
}

#[tokio::test]
async fn with_approvals_refused_nobody_is_asked() {
    let api = slack::web_api(1).await;
    let deploy = Arc::new(common::Deploy::default());
    let config = SlackConfig { api_base: api.url(), ..SlackConfig::default() };
    let refuse =
        exoclaw_channels::Approvals::new(exoclaw_channels::ApprovalMode::Refuse, Duration::from_secs(60));
    let channel =
        SlackChannel::new(&config, SECRET.into(), "t".into(), common::deploying_runtime(&deploy).await)
            .with_approvals(refuse)
            .with_progress(false);
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1.1")).await;
    let answer = calls(&api, 1).await.remove(0);
    assert!(slack::buttons(&answer.body).is_empty());
    assert!(answer.body["text"].as_str().unwrap().contains("was not run"), "{:?}", answer.body);
    assert!(deploy.deployed().is_empty());
}

/// An app connected over Socket Mode to `slack` (its app token from the fake), answering with
/// [`echo_model`]; stops when the test ends.
struct Socket {
    slack: FakeSocketMode,
    model: Arc<RespondingProvider>,
    stop: CancellationToken,
    running: tokio::task::JoinHandle<Result<(), SocketError>>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn socket_mode(app_token: &str) -> Socket {
    let slack = FakeSocketMode::start().await;
    let model = echo_model();
    let config = SlackConfig {
        api_base: slack.api_url(),
        app_token_env: Some("SLACK_APP_TOKEN".into()),
        ..SlackConfig::default()
    };
    let app = SlackSocket::new(
        &config,
        app_token.into(),
        "xoxb-test-token".into(),
        common::runtime(&model, None).await,
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(Arc::new(app).run(stop.clone()));
    Socket { slack, model, stop, running }
}

#[tokio::test]
async fn a_socket_mode_mention_is_acknowledged_and_answered_in_its_thread() {
    let f = socket_mode(slack::APP_TOKEN).await;
    f.slack.connected(1).await;
    assert_eq!(f.slack.opens(), [format!("Bearer {}", slack::APP_TOKEN)]);
    let envelope = f
        .slack
        .push("events_api", slack::mention("Ev1", "T1", "C1", "U1", "what is up?", "1700000000.000100"));
    f.slack.acknowledged(&envelope).await;
    let posted = f.slack.posts(1).await;
    assert_eq!(posted[0].header("authorization"), Some("Bearer xoxb-test-token"));
    assert_eq!(
        posted[0].body,
        json!({"channel": "C1", "thread_ts": "1700000000.000100", "text": "you said: what is up?"})
    );
}

#[tokio::test]
async fn a_refresh_requested_disconnect_opens_a_new_connection_that_answers_the_next_message() {
    let f = socket_mode(slack::APP_TOKEN).await;
    f.slack.connected(1).await;
    f.slack.disconnect("refresh_requested");
    f.slack.connected(2).await;
    assert_eq!(f.slack.opens().len(), 2, "a new URL is asked for");
    let envelope = f.slack.push("events_api", slack::direct_message("Ev2", "T1", "U1", "hi again", "1.2"));
    f.slack.acknowledged(&envelope).await;
    let posted = f.slack.posts(1).await;
    assert_eq!(posted[0].body, json!({"channel": "DU1", "text": "you said: hi again"}));
}

#[tokio::test]
async fn an_event_redelivered_over_socket_mode_is_answered_once() {
    let f = socket_mode(slack::APP_TOKEN).await;
    f.slack.connected(1).await;
    let mention = slack::mention("Ev1", "T1", "C1", "U1", "once?", "1700000000.000100");
    let first = f.slack.push("events_api", mention.clone());
    let again = f.slack.push("events_api", mention);
    // A later event, taken after both on the same connection, marks the point where a second
    // answer to the first would already have been started.
    let later = f.slack.push("events_api", slack::mention("Ev2", "T1", "C2", "U1", "later", "2.0"));
    for envelope in [&first, &again, &later] {
        f.slack.acknowledged(envelope).await;
    }
    let posted = f.slack.posts(2).await;
    let texts: Vec<&Value> = posted.iter().map(|p| &p.body["text"]).collect();
    assert!(texts.contains(&&json!("you said: once?")) && texts.contains(&&json!("you said: later")));
    assert_eq!(f.model.requests().len(), 2, "the redelivered event was taken again");
}

#[tokio::test]
async fn an_app_token_slack_refuses_stops_with_an_error_naming_its_variable() {
    let mut f = socket_mode("xapp-wrong").await;
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut f.running).await;
    let error = ended.expect("stopped").unwrap().unwrap_err().to_string();
    assert!(error.contains("invalid_auth") && error.contains("SLACK_APP_TOKEN"), "{error}");
    assert!(!error.contains("xapp-wrong"), "the token leaked: {error}");
}

#[tokio::test]
async fn interactions_and_slash_commands_are_acknowledged_without_a_turn() {
    let f = socket_mode(slack::APP_TOKEN).await;
    f.slack.connected(1).await;
    let press = f.slack.push("interactive", json!({"type": "block_actions", "actions": []}));
    let command = f.slack.push("slash_commands", json!({"command": "/ask", "text": "hi"}));
    f.slack.acknowledged(&press).await;
    f.slack.acknowledged(&command).await;
    assert!(f.model.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Progress while tools run

/// A Slack channel whose agent counts rows (a tool that runs without asking) and says how many,
/// on the Web API at `api`. Progress edits are spaced an hour apart, so what the Web API sees
/// does not depend on how fast the machine is: the progress post, then the answer edited in.
async fn counting(api: &ScriptedServer) -> SlackChannel {
    let config = SlackConfig { api_base: api.url(), ..SlackConfig::default() };
    SlackChannel::new(&config, SECRET.into(), "xoxb-test-token".into(), common::counting_runtime().await)
        .with_progress_interval(Duration::from_secs(3_600))
}

/// The calls that carry `text`.
fn carrying<'a>(
    all: &'a [exoclaw_testkit::server::Recorded],
    text: &str,
) -> Vec<&'a exoclaw_testkit::server::Recorded> {
    all.iter().filter(|c| c.body["text"].as_str().is_some_and(|t| t.contains(text))).collect()
}

#[tokio::test]
async fn a_turn_running_a_tool_shows_progress_and_the_answer_replaces_it() {
    let api = slack::web_api(3).await;
    let channel = counting(&api).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "how many users?", "1700000000.000100")).await;
    calls(&api, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = api.requests();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].path, "/chat.postMessage");
    assert_eq!(all[0].body["text"], "Working… running `count_rows`");
    assert_eq!(all[0].body["thread_ts"], "1700000000.000100");
    // The progress message (the fake gave it ts …000000) now says the answer.
    assert_eq!(all[1].path, "/chat.update");
    assert_eq!(all[1].body, json!({"channel": "C1", "ts": "1700000000.000000", "text": common::COUNTED}));
    assert_eq!(carrying(&all, common::COUNTED).len(), 1, "the answer is shown once");
}

#[tokio::test]
async fn a_turn_without_tools_posts_its_answer_once_with_no_progress() {
    let f = fixture(2, |_| {}).await;
    deliver(&f.channel, &slack::mention("Ev1", "T1", "C1", "U1", "hello", "1.1")).await;
    calls(&f.api, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = f.api.requests();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].path, "/chat.postMessage");
    assert_eq!(all[0].body["text"], "you said: hello");
}

#[tokio::test]
async fn an_edit_slack_refuses_still_gets_the_answer_posted() {
    let api = ScriptedServer::start([
        exoclaw_testkit::server::Reply::json(200, &json!({"ok": true, "channel": "C1", "ts": "5.5"})),
        exoclaw_testkit::server::Reply::json(200, &json!({"ok": false, "error": "message_not_found"})),
        exoclaw_testkit::server::Reply::json(200, &json!({"ok": true, "channel": "C1", "ts": "6.6"})),
    ])
    .await;
    let channel = counting(&api).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "how many users?", "1.1")).await;
    let all = calls(&api, 3).await;
    assert_eq!(all[1].path, "/chat.update");
    assert_eq!(all[2].path, "/chat.postMessage");
    assert_eq!(all[2].body, json!({"channel": "C1", "thread_ts": "1.1", "text": common::COUNTED}));
}

#[tokio::test]
async fn with_progress_off_a_turn_running_a_tool_posts_only_its_answer() {
    let api = slack::web_api(2).await;
    let channel = counting(&api).await.with_progress(false);
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "how many users?", "1.1")).await;
    calls(&api, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = api.requests();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].body["text"], common::COUNTED);
}

#[tokio::test]
async fn after_an_approval_prompt_the_answer_is_posted_below_it_and_the_progress_lists_what_ran() {
    let (channel, api, deploy) = deploying(5, Duration::from_secs(60)).await;
    let channel = channel.with_progress(true).with_progress_interval(Duration::from_secs(3_600));
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1700000000.000100")).await;
    // The progress message and the prompt are posted at the same time, in either order; the fake
    // numbers the messages it is sent.
    let first = calls(&api, 2).await;
    let ts = |i: usize| format!("1700000000.{i:06}");
    let progress = first.iter().position(|c| c.body["text"] == "Working… running `deploy`").unwrap();
    let prompt = 1 - progress;
    press(&channel, "U1", &ts(prompt), &button(&first[prompt], "Approve")).await;
    let all = calls(&api, 5).await;
    assert_eq!(deploy.deployed(), vec!["<prod>"]);
    let answers = carrying(&all, "the tool said: deployed to <prod>");
    assert_eq!(answers.len(), 1, "{all:#?}");
    assert_eq!(answers[0].path, "/chat.postMessage", "below the prompt, where the asker looks");
    let edited = all.iter().find(|c| c.path == "/chat.update" && c.body["ts"] == ts(progress)).unwrap();
    assert_eq!(edited.body["text"], "Ran `deploy`.");
}

/// A mention in `C1` sharing a file served by `files` at `/files/T1/NAME`.
fn mention_with_file(files: &ScriptedServer, name: &str, mimetype: &str, size: usize) -> Value {
    let mut event = slack::mention("Ev1", "T1", "C1", "U1", "what is in it?", "1700000000.000100");
    event["event"]["files"] = json!([{
        "id": "F1", "name": name, "mimetype": mimetype, "size": size,
        "url_private_download": format!("{}/files/T1/{name}", files.url()),
        "permalink": "https://example.slack.com/files/U1/F1",
    }]);
    event
}

#[tokio::test]
async fn a_shared_image_reaches_the_model_as_an_image_fetched_with_the_bot_token() {
    let files =
        ScriptedServer::start([exoclaw_testkit::server::Reply::bytes(200, "image/png", common::PNG)]).await;
    let api = slack::web_api(1).await;
    let channel = channel(&api, &common::seeing_model(), |_| {}).await;
    deliver(&channel, &mention_with_file(&files, "chart.png", "image/png", common::PNG.len())).await;
    let answer = calls(&api, 1).await.remove(0);
    assert_eq!(
        answer.body["text"],
        "saw: what is in it? / [Attached image: `chart.png` (image/png, 16 bytes).] + 1 image(s)"
    );
    let download = files.request();
    assert_eq!(download.path, "/files/T1/chart.png");
    assert_eq!(download.header("authorization"), Some("Bearer xoxb-test-token"));
}

#[tokio::test]
async fn a_file_on_another_host_is_not_fetched_with_the_token_and_the_model_is_told() {
    let api = slack::web_api(1).await;
    let channel = channel(&api, &common::seeing_model(), |_| {}).await;
    let mut event = slack::direct_message("Ev1", "T1", "U1", "", "1700000000.000100");
    event["event"]["subtype"] = json!("file_share");
    event["event"]["files"] = json!([{"name": "notes.txt", "mimetype": "text/plain",
        "url_private_download": "http://files.example.net/notes.txt"}]);
    deliver(&channel, &event).await;
    let answer = calls(&api, 1).await.remove(0);
    assert_eq!(
        answer.body["text"],
        "saw: [Attached: `notes.txt` (text/plain). It could not be downloaded: its URL is not on Slack, so it was not fetched with the bot's token.] + 0 image(s)",
        "a file sent without a word is still a message"
    );
}

#[tokio::test]
async fn a_file_the_agent_sends_is_uploaded_into_the_thread_after_the_answer() {
    let upload = ScriptedServer::start([exoclaw_testkit::server::Reply::text(200, "OK - 31")]).await;
    let api = ScriptedServer::start([
        exoclaw_testkit::server::Reply::json(200, &json!({"ok": true, "ts": "1700000001.000001"})),
        exoclaw_testkit::server::Reply::json(
            200,
            &json!({"ok": true, "upload_url": format!("{}/upload/v1/abc", upload.url()), "file_id": "F77"}),
        ),
        exoclaw_testkit::server::Reply::json(200, &json!({"ok": true, "files": [{"id": "F77"}]})),
    ])
    .await;
    let (_workspace, runtime) = common::sending_runtime().await;
    let config = SlackConfig { api_base: api.url(), ..SlackConfig::default() };
    let channel =
        SlackChannel::new(&config, SECRET.into(), "xoxb-test-token".into(), runtime).with_progress(false);
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "the report please", "1700000000.000100"))
        .await;
    let all = calls(&api, 3).await;
    assert_eq!(all[0].path, "/chat.postMessage");
    assert_eq!(all[0].body["text"], common::SENT);
    assert_eq!(all[1].path, "/files.getUploadURLExternal");
    assert_eq!(all[1].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(all[1].form_field("filename").as_deref(), Some("report.csv"));
    assert_eq!(all[1].form_field("length").as_deref(), Some("31"));
    assert_eq!(all[1].header("authorization"), Some("Bearer xoxb-test-token"));
    let sent = upload.request();
    assert_eq!(sent.raw, common::REPORT.as_bytes());
    assert_eq!(sent.header("authorization"), None, "the upload URL carries its own authority");
    assert_eq!(all[2].path, "/files.completeUploadExternal");
    assert_eq!(
        all[2].body,
        json!({"files": [{"id": "F77", "title": "report.csv"}], "channel_id": "C1",
            "thread_ts": "1700000000.000100", "initial_comment": "Q3 totals"})
    );
}

#[tokio::test]
async fn the_askers_reaction_to_a_prompt_answers_it_and_anothers_changes_nothing() {
    let (channel, api, deploy) = deploying(3, Duration::from_secs(60)).await;
    deliver(&channel, &slack::mention("Ev1", "T1", "C1", "U1", "ship it", "1700000000.000100")).await;
    calls(&api, 1).await;
    let reaction = |id: &str, user: &str, emoji: &str| {
        slack::event_callback(
            id,
            "T1",
            json!({"type": "reaction_added", "user": user, "reaction": emoji,
            "item": {"type": "message", "channel": "C1", "ts": "1700000000.000000"},
            "item_user": "UBOT", "event_ts": "1700000002.000000"}),
        )
    };
    deliver(&channel, &reaction("Ev2", "U2", "white_check_mark")).await;
    deliver(&channel, &reaction("Ev3", "U1", "eyes")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(deploy.deployed().is_empty(), "another user's reaction, or another emoji, answers nothing");
    assert_eq!(api.requests().len(), 1);

    deliver(&channel, &reaction("Ev4", "U1", "+1::skin-tone-2")).await;
    let all = calls(&api, 3).await;
    let update = find(&all, "/chat.update");
    assert!(update.body["text"].as_str().unwrap().ends_with("✅ Approved by <@U1>."), "{:?}", update.body);
    assert_eq!(deploy.deployed(), ["<prod>"]);
}
