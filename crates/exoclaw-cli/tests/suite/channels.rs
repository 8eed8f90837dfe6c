//! The built-in chat channels through `exoclaw gateway`: a signed Slack mention delivered to
//! `/webhook/slack` is answered in its thread through the (recorded) Slack Web API.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use exoclaw_testkit::slack;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_mention_is_answered_in_its_thread_through_the_gateway() {
    let env = Env::new();
    let web_api = slack::web_api(2).await;
    let model = serve([Answer::text("Hi from exoclaw"), Answer::text("Thought harder")]).await;
    let channels =
        format!("[channels]\nmodels = [\"script/*\"]\n[channels.slack]\napi_base = \"{}\"\n", web_api.url());
    env.scripted(&model, &channels);
    let vars = [("SLACK_SIGNING_SECRET", "s3cret"), ("SLACK_BOT_TOKEN", "xoxb-1")];
    let gateway = super::gateway::start_with_env(&env, &[], &vars).await;
    let url = format!("{}/webhook/slack", gateway.base);
    let client = reqwest::Client::new();
    let send = |body: String, timestamp: i64, secret: &str| {
        let mut request = client.post(&url).body(body.clone());
        for (name, value) in slack::headers(secret, timestamp, body.as_bytes()) {
            request = request.header(name, value);
        }
        request.send()
    };
    let now = chrono::Utc::now().timestamp();

    let challenge = slack::url_verification("abc").to_string();
    let answer = send(challenge, now, "s3cret").await.unwrap();
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap(), json!({"challenge": "abc"}));

    let mention = slack::mention("Ev1", "T1", "C1", "U1", "hello?", "1700000000.000100").to_string();
    assert_eq!(send(mention.clone(), now, "wrong").await.unwrap().status(), 401);
    assert_eq!(send(mention.clone(), now - 3600, "s3cret").await.unwrap().status(), 401);
    assert_eq!(send(mention, now, "s3cret").await.unwrap().status(), 200);

    let mut posted = Vec::new();
    for _ in 0..100 {
        posted = web_api.requests();
        if !posted.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(posted.len(), 1, "Slack got no answer");
    assert_eq!(posted[0].header("authorization"), Some("Bearer xoxb-1"));
    assert_eq!(
        posted[0].body,
        json!({"channel": "C1", "thread_ts": "1700000000.000100", "text": "Hi from exoclaw"})
    );
}

#[tokio::test]
async fn channels_status_says_which_channel_is_missing_what() {
    let env = Env::new();
    env.config("[channels.slack]\n[channels.telegram]\nmode = \"webhook\"\n");
    let mut cmd = env.std_cmd();
    cmd.args(["channels", "status"]).env("SLACK_SIGNING_SECRET", "s").env("SLACK_BOT_TOKEN", "t");
    cmd.env_remove("TELEGRAM_BOT_TOKEN").env_remove("TELEGRAM_WEBHOOK_SECRET");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let shown = stdout(&out);
    assert!(shown.contains("slack     ready"), "{shown}");
    assert!(shown.contains("NOT SERVED: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET"), "{shown}");
    assert!(shown.contains("POST /webhook/telegram"), "{shown}");

    // Without a public URL: Slack over Socket Mode, Telegram polling (its default) — neither
    // needs a signing or webhook secret.
    let env = Env::new();
    env.config("[channels.slack]\napp_token_env = \"SLACK_APP_TOKEN\"\n[channels.telegram]\n");
    let mut cmd = env.std_cmd();
    cmd.args(["channels", "status"]).env("SLACK_BOT_TOKEN", "t").env("TELEGRAM_BOT_TOKEN", "1:A");
    cmd.env_remove("SLACK_APP_TOKEN")
        .env_remove("SLACK_SIGNING_SECRET")
        .env_remove("TELEGRAM_WEBHOOK_SECRET");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let shown = stdout(&out);
    assert!(shown.contains("slack     NOT SERVED: set SLACK_APP_TOKEN\n"), "{shown}");
    assert!(shown.contains("Socket Mode"), "{shown}");
    assert!(shown.contains("telegram  ready") && shown.contains("long polling"), "{shown}");
    assert!(!shown.contains("/webhook/"), "{shown}");

    let none = Env::new();
    let out = none.run(&["channels", "status"]).await;
    ok(&out);
    assert!(stdout(&out).contains("no chat channels configured"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_status_shows_whether_the_gateways_broker_connection_is_up() {
    let env = Env::new();
    let broker = exoclaw_testkit::kadi::FakeBroker::start().await;
    let model = serve([Answer::text("unused")]).await;
    env.scripted(&model, &format!("[channels.kadi]\nurl = \"{}\"\ntools = [\"read_file\"]\n", broker.url()));
    // exoclaw's Ed25519 key on the broker: a 32-byte seed (all 7s), in base64.
    let vars = [("KADI_PRIVATE_KEY", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")];
    let status = || {
        let mut cmd = env.std_cmd();
        cmd.args(["channels", "status"]).envs(vars);
        async move { stdout(&tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()) }
    };
    let before = status().await;
    assert!(before.contains("kadi  ready") && !before.contains("connected"), "{before}");
    assert!(before.contains("its agents may call the tools read_file"), "{before}");

    let mut gateway = super::gateway::start_with_env(&env, &[], &vars).await;
    let mut shown = String::new();
    for _ in 0..100 {
        shown = status().await;
        if shown.contains("connected (since") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shown.contains("connected (since") && shown.contains("as the gateway last reported"), "{shown}");
    assert_eq!(broker.authenticated(), 1);

    // A gateway that stops says so before it goes.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let child = &mut gateway.child;
    tokio::task::block_in_place(|| child.wait()).unwrap();
    let after = status().await;
    assert!(after.contains("NOT CONNECTED (since") && after.contains("the gateway stopped"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_telegram_bot_reads_a_sent_file_and_sends_one_back_through_the_gateway() {
    let env = Env::new();
    std::fs::write(env.workspace.path().join("totals.csv"), "region,total\nnorth,12\n").unwrap();
    let bot = exoclaw_testkit::telegram::FakeBotApi::start("123:ABC").await;
    bot.add_file("BQAD1", "documents/file_1.txt", b"the launch is on Friday");
    let model = serve([
        Answer::tool("c1", "send_file", json!({"path": "totals.csv", "caption": "the totals"})),
        Answer::text("Sent you the totals."),
        Answer::text("spare"),
        Answer::text("spare"),
    ])
    .await;
    env.scripted(
        &model,
        &format!("[channels.telegram]\napi_base = \"{}\"\npoll_timeout_secs = 5\n", bot.url()),
    );
    let _gateway = super::gateway::start_with_env(&env, &[], &[("TELEGRAM_BOT_TOKEN", "123:ABC")]).await;
    let document = ("BQAD1", "notes.txt", "text/plain", 23);
    bot.push(exoclaw_testkit::telegram::document_message(1, 10, 42, (42, "alice"), document, Some("when?")));

    let document = exoclaw_testkit::until("a sendDocument", || bot.calls("sendDocument").pop()).await;
    // The tool call showed progress, which the answer then replaced.
    assert_eq!(bot.calls("sendMessage")[0]["text"], "Working… running `send_file`");
    assert_eq!(bot.calls("editMessageText").pop().unwrap()["text"], "Sent you the totals.");
    assert_eq!(
        document["document"],
        json!({"filename": "totals.csv", "content": "region,total\nnorth,12\n"})
    );
    assert_eq!(document["caption"], "the totals");
    // The model was given the file's text with the caption.
    let first = &model.requests()[0].body;
    let user =
        exoclaw_testkit::script::request_messages(first).iter().rev().find(|m| m["role"] == "user").unwrap();
    let said = user["content"].to_string();
    assert!(said.contains("when?") && said.contains("the launch is on Friday"), "{said}");
    assert!(said.contains("`notes.txt` (text/plain, 23 bytes)"), "{said}");
    assert_eq!(bot.calls("getUpdates")[0]["timeout"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_app_in_socket_mode_answers_a_mention_through_the_gateway() {
    let env = Env::new();
    let slack = slack::FakeSocketMode::start().await;
    let model = serve([Answer::text("Hi over the socket"), Answer::text("spare")]).await;
    env.scripted(
        &model,
        &format!(
            "[channels.slack]\napi_base = \"{}\"\napp_token_env = \"SLACK_APP_TOKEN\"\n",
            slack.api_url()
        ),
    );
    let vars = [("SLACK_APP_TOKEN", slack::APP_TOKEN), ("SLACK_BOT_TOKEN", "xoxb-1")];
    let _gateway = super::gateway::start_with_env(&env, &[], &vars).await;
    slack.connected(1).await;
    let envelope =
        slack.push("events_api", slack::mention("Ev1", "T1", "C1", "U1", "hello?", "1700000000.000100"));
    slack.acknowledged(&envelope).await;
    let posted = slack.posts(1).await;
    assert_eq!(posted[0].header("authorization"), Some("Bearer xoxb-1"));
    assert_eq!(
        posted[0].body,
        json!({"channel": "C1", "thread_ts": "1700000000.000100", "text": "Hi over the socket"})
    );
}
