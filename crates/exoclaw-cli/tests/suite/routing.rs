//! The router as a user configures it: fallback chains and aliases in `[routing]`, the provider
//! that served each call in the usage ledger, `exoclaw providers status` and `exoclaw usage`, and
//! circuit breakers under random upstream failures through the real gateway.

use super::*;
use exoclaw_testkit::flaky::{ANSWER, FlakyServer};
use exoclaw_testkit::script::{Answer, serve};
use exoclaw_testkit::server::{Reply, ScriptedServer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// A gateway config routing `smart` to `primary`, falling back to `fallback`, both OpenAI-compatible
/// servers at the given URLs, with two retries and millisecond backoffs; `extra` joins `[routing]`.
fn flaky_config(primary: &FlakyServer, fallback: &FlakyServer, extra: &str) -> String {
    format!(
        "[routing]\nretries = 2\nretry_base_ms = 1\nretry_cap_ms = 4\n{extra}\n\
         aliases = {{ smart = \"primary/gpt-4o-mini\" }}\nfallbacks = {{ smart = [\"fallback/gpt-4o-mini\"] }}\n\
         [providers.primary]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\n\
         [providers.fallback]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"k\"\n",
        primary.url(),
        fallback.url()
    )
}

/// The message of request `i`: distinct, so each request meets its own scripted fate.
fn message(i: usize) -> String {
    format!("request {i}")
}

/// Sends `n` `/v1/chat/completions` requests for `model`, `concurrency` at a time; the indexes of
/// those that did not come back `200` with the upstream's answer, each with what came back.
async fn failed_requests(base: &str, model: &str, n: usize, concurrency: usize) -> Vec<(usize, String)> {
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, client) = (next.clone(), client.clone());
            let (url, model) = (format!("{base}/v1/chat/completions"), model.to_owned());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return failed;
                    }
                    let body = json!({"model": model, "messages": [{"role": "user", "content": message(i)}]});
                    let response = client.post(&url).json(&body).send().await.unwrap();
                    let status = response.status().as_u16();
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    if status != 200 || answer["choices"][0]["message"]["content"] != ANSWER {
                        failed.push((i, format!("{status} {answer}")));
                    }
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for worker in workers {
        failed.extend(worker.await.unwrap());
    }
    failed.sort();
    failed
}

/// Each provider's breaker state, from the gateway's `/metrics`.
async fn breaker_states(base: &str) -> Vec<(String, String)> {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    let mut states: Vec<(String, String)> = text
        .lines()
        .filter(|line| line.starts_with("exoclaw_gateway_breaker_state{") && line.ends_with(" 1"))
        .filter_map(|line| {
            let label = |name: &str| {
                let start = line.find(&format!("{name}=\""))? + name.len() + 2;
                Some(line[start..].split('"').next()?.to_owned())
            };
            Some((label("provider")?, label("state")?))
        })
        .collect();
    states.sort();
    states
}

/// The partial outage through the real gateway: the primary and its fallback each answer
/// `503` to 30% of attempts at random, with two retries, 1,000 requests 8 at a time. A request is
/// lost only when all six of its attempts fail (0.3^6 ≈ 0.07%); with breakers that opened on three
/// failures in a row, 2% to 38% of requests failed. The failures are drawn per request from the
/// seeds, whatever the order requests arrive in, so the test knows which requests no router could
/// have saved, and requires every other one to succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_503s_on_every_provider_of_a_route_lose_at_most_one_request_in_1000() {
    let env = Env::new();
    let primary = FlakyServer::start(0.3, 1).await;
    let fallback = FlakyServer::start(0.3, 2).await;
    env.config(&flaky_config(&primary, &fallback, ""));
    let gateway = gateway::start(&env, &[]).await;

    let failed = failed_requests(&gateway.base, "smart", 1_000, 8).await;

    let doomed = |i: usize| (0..3).all(|a| primary.fails(&message(i), a) && fallback.fails(&message(i), a));
    let unsavable: Vec<usize> = (0..1_000).filter(|i| doomed(*i)).collect();
    assert!(unsavable.len() <= 1, "these seeds doom at most one request: {unsavable:?}");
    let saveable: Vec<&(usize, String)> = failed.iter().filter(|(i, _)| !doomed(*i)).collect();
    assert!(
        saveable.is_empty(),
        "{} requests failed that retries could have saved: {saveable:?}",
        saveable.len()
    );
    assert!(failed.len() <= 1, "{} of 1000 failed: {failed:?}", failed.len());
    // About 417 of the primary's ~1,400 attempts fail, and ~11 of the fallback's ~38.
    let (p, f) = (primary.failed(), fallback.failed());
    assert!(p > 300 && f > 0 && fallback.requests() > 10, "both were failing: {p} {f}");
    let states = breaker_states(&gateway.base).await;
    for provider in ["primary", "fallback"] {
        assert!(states.contains(&(provider.to_owned(), "closed".to_owned())), "{provider}: {states:?}");
    }
}

/// A primary that is down (every attempt `503`): its breaker opens after a handful of requests and
/// the fallback serves the rest without the primary being asked first. Counted, not timed: the
/// cool-down is longer than any run, so no probe reaches the primary during the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_is_down_opens_its_breaker_and_the_fallback_serves_without_waiting_on_it() {
    let env = Env::new();
    let primary = FlakyServer::start(1.0, 3).await;
    let fallback = FlakyServer::start(0.0, 4).await;
    env.config(&flaky_config(&primary, &fallback, "breaker_cool_down_secs = 3600"));
    let gateway = gateway::start(&env, &[]).await;

    let failed = failed_requests(&gateway.base, "smart", 300, 8).await;

    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(fallback.requests(), 300, "the fallback answered every request");
    // Five failed requests open the breaker (three attempts each); up to seven more were already
    // on their way to the primary when it opened. Without a breaker: 900 attempts.
    let asked = primary.requests();
    assert!((15..=36).contains(&asked), "the primary was asked {asked} times");
    let states = breaker_states(&gateway.base).await;
    assert!(states.contains(&("primary".to_owned(), "open".to_owned())), "{states:?}");
    assert!(states.contains(&("fallback".to_owned(), "closed".to_owned())), "{states:?}");
}
