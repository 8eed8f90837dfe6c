//! The router as a user configures it: fallback chains and aliases in `[routing]`, the provider
//! that served each call in the usage ledger, `exoclaw providers status` and `exoclaw usage`.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use exoclaw_testkit::server::{Reply, ScriptedServer};

/// A config with `down` (always 500) routed as `smart`, falling back to `up`.
fn config(down: &ScriptedServer, up: &ScriptedServer) -> String {
    format!(
        "model = \"smart\"\n\
         [routing]\nretries = 1\nretry_base_ms = 1\naliases = {{ smart = \"down/big\" }}\nfallbacks = {{ smart = [\"up/small\"] }}\n\
         [providers.down]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [providers.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\n",
        down.url(),
        up.url()
    )
}

fn failing(n: usize) -> Vec<Reply> {
    (0..n)
        .map(|_| Reply::json(500, &serde_json::json!({"error": {"message": "boom", "type": "server_error"}})))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_primary_falls_over_and_the_ledger_names_who_served() {
    let env = Env::new();
    let down = ScriptedServer::start(failing(4)).await;
    let up = serve([Answer::text("Served by the fallback.")]).await;
    env.config(&config(&down, &up));
    let out = env.run(&["chat", "hello"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "Served by the fallback.\n");
    assert_eq!(down.requests().len(), 2, "one attempt and one retry");
    assert_eq!(up.request().body["model"], "small", "the fallback gets its own model name");

    let usage = env.run(&["usage", "--json"]).await;
    ok(&usage);
    let report: serde_json::Value = serde_json::from_str(&stdout(&usage)).unwrap();
    assert_eq!(report["total"]["calls"], 1);
    assert_eq!(report["by_model"][0]["key"], "up/small", "{report}");
    let text = env.run(&["usage"]).await;
    assert!(stdout(&text).contains("up/small"), "{}", stdout(&text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_to_an_unknown_provider_is_a_config_error() {
    let env = Env::new();
    env.config("[routing]\nfallbacks = { fast = [\"nowhere/x\"] }\n");
    let out = env.run(&["chat", "-m", "fast", "hi"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`nowhere`"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_status_shows_which_provider_fails() {
    let env = Env::new();
    let down = ScriptedServer::start(failing(1)).await;
    let up = ScriptedServer::start([Reply::json(
        200,
        &serde_json::json!({"object": "list", "data": [{"id": "small", "object": "model"}]}),
    )])
    .await;
    env.config(&config(&down, &up));
    let out = env.run(&["providers", "status", "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "a failing provider makes the check fail");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let row = |name: &str| {
        rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {rows:?}")).clone()
    };
    assert_eq!(row("up")["state"], "closed");
    assert_eq!(row("down")["state"], "open");
    assert!(row("down")["last_error"].as_str().unwrap().contains("boom"), "{rows:?}");
    assert_eq!(row("local")["state"], "embedded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_cover_the_call_refuses_it_before_the_provider_is_called() {
    let env = Env::new();
    let server = serve([Answer::text("never")]).await;
    env.scripted(&server, "[[budgets]]\nname = \"tiny\"\nwindow = \"daily\"\nmax_tokens = 50\n");
    let out = env.run(&["chat", "--max-tokens", "100", "hello"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("budget_exceeded") && err.contains("tiny"), "{err}");
    assert!(server.requests().is_empty(), "the provider was not called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_prices_cost_each_call() {
    let env = Env::new();
    let server = serve([Answer::text("priced")]).await;
    env.scripted(&server, "[prices]\n\"script/*\" = { input = 1000000.0, output = 2000000.0 }\n");
    ok(&env.run(&["chat", "hi"]).await);
    let usage = env.run(&["usage", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&stdout(&usage)).unwrap();
    // The scripted answer reports 20 input and 7 output tokens: $20 + $14.
    assert_eq!(report["total"]["cost_usd"], 34.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_spend_survives_a_restart() {
    let env = Env::new();
    let server = serve([Answer::text("ok"), Answer::text("never")]).await;
    // The scripted answer reports 27 tokens; each call's estimate here is a handful.
    env.scripted(
        &server,
        "[agent]\nbase_prompt = \"Be brief.\"\n[[budgets]]\nname = \"small\"\nwindow = \"daily\"\nmax_tokens = 30\n",
    );
    ok(&env.run(&["chat", "--no-tools", "--max-tokens", "1", "hi"]).await);
    // A new process: the 27 tokens spent come back from the usage ledger.
    let out = env.run(&["chat", "--no-tools", "--max-tokens", "1", "-c", "again"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("small"), "{}", stderr(&out));
    assert_eq!(server.requests().len(), 1, "the second call was refused before the provider");
}
