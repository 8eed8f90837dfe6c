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
    assert_eq!(identify["d"]["intents"], json!((1 << 9) | (1 << 10) | (1 << 12) | (1 << 13) | (1 << 15)));

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

// ---------------------------------------------------------------------------------------------
// Approvals of gated tool calls, asked with buttons

/// A bot on the Gateway and an Interactions endpoint sharing one set of approvals (prompts
/// waiting `timeout`), whose agent asks to deploy; the REST API accepts `calls` calls.
struct Deploying {
    gateway: FakeGateway,
    endpoint: DiscordInteractions,
    key: ed25519_dalek::SigningKey,
    api: ScriptedServer,
    deploy: Arc<common::Deploy>,
    stop: CancellationToken,
}

impl Drop for Deploying {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn deploying(calls: usize, timeout: Duration) -> Deploying {
    let gateway = FakeGateway::start(200).await;
    let api = rest(calls).await;
    let deploy = Arc::new(common::Deploy::default());
    let runtime = common::deploying_runtime(&deploy).await;
    let config =
        DiscordConfig { gateway_url: gateway.url(), api_base: api.url(), ..DiscordConfig::default() };
    let approvals = exoclaw_channels::Approvals::new(exoclaw_channels::ApprovalMode::Ask, timeout);
    // These tests are about the prompt, not the progress message.
    let bot = DiscordGateway::new(&config, "bot-token", Arc::clone(&runtime))
        .with_approvals(approvals.clone())
        .with_progress(false);
    let (public, key) = discord::interaction_keys();
    let endpoint = DiscordInteractions::new(&config, &public, "bot-token", runtime)
        .unwrap()
        .with_approvals(approvals)
        .with_progress(false);
    let stop = CancellationToken::new();
    tokio::spawn(Arc::new(bot).run(stop.clone()));
    for _ in 0..100 {
        if gateway.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gateway.connected(), "the bot never identified");
    Deploying { gateway, endpoint, key, api, deploy, stop }
}

impl Deploying {
    /// `U1` asks the bot to ship it in `C1`; the prompt it posts.
    async fn asked(&self) -> exoclaw_testkit::server::Recorded {
        let question =
            discord::message_create("m1", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> ship it"), true);
        self.gateway.dispatch("MESSAGE_CREATE", question);
        calls(&self.api, 1).await.remove(0)
    }

    /// `user` presses the prompt's button `label` at the Interactions endpoint; its response.
    async fn press(
        &self,
        prompt: &exoclaw_testkit::server::Recorded,
        user: &str,
        label: &str,
    ) -> serde_json::Value {
        let custom_id = discord::buttons(&prompt.body).into_iter().find(|(l, _)| l == label).unwrap().1;
        let body = discord::component_press("910", user, "C1", Some("G1"), "50000", &custom_id).to_string();
        self.endpoint.verify(&signed(&self.key, &body), body.as_bytes()).unwrap();
        self.endpoint.receive(&HeaderMap::new(), Bytes::from(body)).await.unwrap()
    }
}

#[tokio::test]
async fn a_gated_call_is_asked_with_buttons_and_runs_once_the_asker_approves_at_the_endpoint() {
    let f = deploying(2, Duration::from_secs(60)).await;
    let prompt = f.asked().await;
    assert_eq!(prompt.path, "/channels/C1/messages");
    assert_eq!(prompt.body["message_reference"], json!({"message_id": "m1"}));
    assert_eq!(prompt.body["allowed_mentions"], json!({"parse": []}));
    let labels: Vec<String> = discord::buttons(&prompt.body).into_iter().map(|(label, _)| label).collect();
    assert_eq!(labels, ["Approve", "Approve for this session", "Deny"]);
    let content = prompt.body["content"].as_str().unwrap();
    assert!(content.contains("`deploy`") && content.contains("\"target\": \"<prod>\""), "{content}");
    assert!(content.contains("Only <@U1> can answer (a button, or react ✅ or ❌)."), "{content}");

    // The prompt was posted by the Gateway connection; its press reaches the endpoint.
    let response = f.press(&prompt, "U1", "Approve").await;
    assert_eq!(response["type"], 7, "the prompt is updated in place");
    assert!(response["data"]["content"].as_str().unwrap().ends_with("✅ Approved by <@U1>."), "{response}");
    assert_eq!(response["data"]["components"], json!([]));
    let answer = calls(&f.api, 2).await.remove(1);
    assert_eq!(answer.body["content"], "the tool said: deployed to <prod>");
    assert_eq!(f.deploy.deployed(), ["<prod>"]);
}

#[tokio::test]
async fn a_press_over_the_gateway_is_answered_at_the_interactions_callback() {
    let f = deploying(3, Duration::from_secs(60)).await;
    let prompt = f.asked().await;
    let custom_id = discord::buttons(&prompt.body).into_iter().find(|(l, _)| l == "Deny").unwrap().1;
    f.gateway.dispatch(
        "INTERACTION_CREATE",
        discord::component_press("920", "U1", "C1", Some("G1"), "50000", &custom_id),
    );
    let all = calls(&f.api, 3).await;
    let callback = all.iter().find(|c| c.path == "/interactions/920/component-token-920/callback").unwrap();
    assert_eq!(callback.header("authorization"), None, "the interaction's token authorises it");
    assert_eq!(callback.body["type"], 7);
    assert!(callback.body["data"]["content"].as_str().unwrap().ends_with("⛔ Denied by <@U1>."));
    let answer = all.iter().filter(|c| c.path == "/channels/C1/messages").nth(1).unwrap();
    assert!(answer.body["content"].as_str().unwrap().starts_with(common::DENIED), "{:?}", answer.body);
    assert!(f.deploy.deployed().is_empty());
}

#[tokio::test]
async fn another_users_press_is_refused_ephemerally_and_a_press_after_the_answer_is_ignored() {
    let f = deploying(2, Duration::from_secs(60)).await;
    let prompt = f.asked().await;
    let refused = f.press(&prompt, "U666", "Approve").await;
    assert_eq!(refused["type"], 4);
    assert_eq!(refused["data"]["flags"], 64, "only the presser sees it");
    assert!(refused["data"]["content"].as_str().unwrap().starts_with("Only <@U1>"), "{refused}");
    assert!(f.deploy.deployed().is_empty());

    let denied = f.press(&prompt, "U1", "Deny").await;
    assert_eq!(denied["type"], 7);
    let again = f.press(&prompt, "U1", "Approve").await;
    assert_eq!(again, json!({"type": 6}), "acknowledged, nothing changed");
    let answer = calls(&f.api, 2).await.remove(1);
    assert!(answer.body["content"].as_str().unwrap().starts_with(common::DENIED));
    assert!(f.deploy.deployed().is_empty());
}

#[tokio::test]
async fn a_prompt_nobody_answers_denies_the_call_and_says_so() {
    let f = deploying(3, Duration::from_millis(300)).await;
    f.asked().await;
    let all = calls(&f.api, 3).await;
    let edit = all.iter().find(|c| c.method == "PATCH").unwrap();
    assert_eq!(edit.path, "/channels/C1/messages/50000");
    assert!(edit.body["content"].as_str().unwrap().ends_with("⌛ Nobody answered within 300 ms: denied."));
    assert_eq!(edit.body["components"], json!([]));
    let answer = all.iter().filter(|c| c.method == "POST").nth(1).unwrap();
    assert!(answer.body["content"].as_str().unwrap().starts_with(common::DENIED));
    assert!(f.deploy.deployed().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Progress while tools run

/// A bot on a fake Gateway whose agent counts rows (a tool that runs without asking), answering
/// through `api`; progress edits an hour apart, so the calls do not depend on the machine's speed.
async fn counting(api: &ScriptedServer) -> (FakeGateway, CancellationToken) {
    let gateway = FakeGateway::start(200).await;
    let config =
        DiscordConfig { gateway_url: gateway.url(), api_base: api.url(), ..DiscordConfig::default() };
    let bot = DiscordGateway::new(&config, "bot-token", common::counting_runtime().await)
        .with_progress_interval(Duration::from_secs(3_600));
    let stop = CancellationToken::new();
    tokio::spawn(Arc::new(bot).run(stop.clone()));
    for _ in 0..100 {
        if gateway.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gateway.connected(), "the bot never identified");
    (gateway, stop)
}

fn ask(gateway: &FakeGateway) {
    let question =
        discord::message_create("m1", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> how many users?"), true);
    gateway.dispatch("MESSAGE_CREATE", question);
}

#[tokio::test]
async fn a_turn_running_a_tool_shows_progress_and_the_answer_replaces_it() {
    let api = rest(3).await;
    let (gateway, stop) = counting(&api).await;
    ask(&gateway);
    calls(&api, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = api.requests();
    stop.cancel();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!((all[0].method.as_str(), all[0].path.as_str()), ("POST", "/channels/C1/messages"));
    assert_eq!(all[0].body["content"], "Working… running `count_rows`");
    assert_eq!(all[0].body["message_reference"]["message_id"], "m1");
    // The fake gave the progress message the id 50000: it now says the answer.
    assert_eq!((all[1].method.as_str(), all[1].path.as_str()), ("PATCH", "/channels/C1/messages/50000"));
    assert_eq!(all[1].body["content"], common::COUNTED);
}

#[tokio::test]
async fn a_turn_without_tools_posts_its_answer_once_with_no_edit() {
    let bot = connected(2).await;
    let question = discord::message_create("m1", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> hello"), true);
    bot.gateway.dispatch("MESSAGE_CREATE", question);
    calls(&bot.api, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = bot.api.requests();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].method, "POST");
    assert_eq!(all[0].body["content"], "you said: hello");
}

#[tokio::test]
async fn an_edit_discord_refuses_still_gets_the_answer_posted() {
    let api = ScriptedServer::start([
        Reply::json(200, &json!({"id": "900", "type": 0})),
        Reply::json(404, &json!({"message": "Unknown Message", "code": 10008})),
        Reply::json(200, &json!({"id": "901", "type": 0})),
    ])
    .await;
    let (gateway, stop) = counting(&api).await;
    ask(&gateway);
    let all = calls(&api, 3).await;
    stop.cancel();
    assert_eq!((all[1].method.as_str(), all[1].path.as_str()), ("PATCH", "/channels/C1/messages/900"));
    assert_eq!((all[2].method.as_str(), all[2].path.as_str()), ("POST", "/channels/C1/messages"));
    assert_eq!(all[2].body["content"], common::COUNTED);
    assert_eq!(all[2].body["message_reference"]["message_id"], "m1");
}

// ---------------------------------------------------------------------------------------------
// Files, and approvals by reaction

/// A bot on a fake Gateway whose turns `runtime` answers through `api`, without progress.
async fn bot_on(
    api: &ScriptedServer,
    runtime: Arc<dyn exoclaw_core::runtime::AgentRuntime>,
) -> (FakeGateway, CancellationToken) {
    let gateway = FakeGateway::start(200).await;
    let config =
        DiscordConfig { gateway_url: gateway.url(), api_base: api.url(), ..DiscordConfig::default() };
    let bot = DiscordGateway::new(&config, "bot-token", runtime).with_progress(false);
    let stop = CancellationToken::new();
    tokio::spawn(Arc::new(bot).run(stop.clone()));
    exoclaw_testkit::until("the bot identified", || gateway.connected().then_some(())).await;
    (gateway, stop)
}

#[tokio::test]
async fn an_attached_image_reaches_the_model_as_an_image_from_the_cdn() {
    let cdn = ScriptedServer::start([Reply::bytes(200, "image/png", common::PNG)]).await;
    let api = rest(1).await;
    let (gateway, stop) = bot_on(&api, common::runtime(&common::seeing_model(), None).await).await;
    let mut question =
        discord::message_create("m1", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> what is this?"), true);
    question["attachments"] = json!([{"id": "a1", "filename": "cat.png", "content_type": "image/png",
        "size": common::PNG.len(), "url": format!("{}/attachments/1/2/cat.png?ex=1&is=2&hm=3", cdn.url())}]);
    gateway.dispatch("MESSAGE_CREATE", question);
    let answer = calls(&api, 1).await.remove(0);
    stop.cancel();
    assert_eq!(
        answer.body["content"],
        "saw: what is this? / [Attached image: `cat.png` (image/png, 16 bytes).] + 1 image(s)"
    );
    let download = cdn.request();
    assert_eq!(download.path, "/attachments/1/2/cat.png");
    assert_eq!(download.header("authorization"), None, "the bot's token goes only to the API");
}

#[tokio::test]
async fn a_file_the_agent_sends_is_attached_to_a_reply() {
    let api = rest(2).await;
    let (_workspace, runtime) = common::sending_runtime().await;
    let (gateway, stop) = bot_on(&api, runtime).await;
    gateway.dispatch(
        "MESSAGE_CREATE",
        discord::message_create("m1", "C1", Some("G1"), "U1", &format!("<@{BOT_ID}> the report"), true),
    );
    let all = calls(&api, 2).await;
    stop.cancel();
    assert_eq!(all[0].body["content"], common::SENT);
    assert_eq!((all[1].method.as_str(), all[1].path.as_str()), ("POST", "/channels/C1/messages"));
    assert_eq!(all[1].header("authorization"), Some("Bot bot-token"));
    let fields = all[1].form_data();
    let payload: serde_json::Value = serde_json::from_str(&fields[0].text()).unwrap();
    assert_eq!(fields[0].name, "payload_json");
    assert_eq!(payload["content"], "Q3 totals");
    assert_eq!(payload["message_reference"], json!({"message_id": "m1"}));
    assert_eq!(payload["attachments"], json!([{"id": 0, "filename": "report.csv"}]));
    assert_eq!((fields[1].name.as_str(), fields[1].filename.as_deref()), ("files[0]", Some("report.csv")));
    assert_eq!(fields[1].text(), common::REPORT);
}

#[tokio::test]
async fn the_askers_reaction_answers_a_prompt_and_the_bots_or_anothers_changes_nothing() {
    let f = deploying(3, Duration::from_secs(60)).await;
    f.asked().await;
    // The fake gave the prompt the id 50000.
    f.gateway.dispatch("MESSAGE_REACTION_ADD", discord::reaction_add(BOT_ID, "C1", "50000", "✅"));
    f.gateway.dispatch("MESSAGE_REACTION_ADD", discord::reaction_add("U2", "C1", "50000", "✅"));
    f.gateway.dispatch("MESSAGE_REACTION_ADD", discord::reaction_add("U1", "C1", "50000", "🎉"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.deploy.deployed().is_empty(), "nothing answered the prompt");
    assert_eq!(f.api.requests().len(), 1);

    f.gateway.dispatch("MESSAGE_REACTION_ADD", discord::reaction_add("U1", "C1", "50000", "👍"));
    let all = calls(&f.api, 3).await;
    let edit = all.iter().find(|c| c.method == "PATCH").unwrap();
    assert_eq!(edit.path, "/channels/C1/messages/50000");
    assert!(edit.body["content"].as_str().unwrap().ends_with("✅ Approved by <@U1>."), "{:?}", edit.body);
    assert_eq!(edit.body["components"], json!([]));
    assert_eq!(f.deploy.deployed(), ["<prod>"]);
}
