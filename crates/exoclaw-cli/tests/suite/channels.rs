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
