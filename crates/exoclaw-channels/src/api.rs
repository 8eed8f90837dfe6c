//! What every channel does with its platform: calling its HTTP API (JSON in, `{"ok": true, …}`
//! out, retried on 429 after the platform's `Retry-After` and on server errors), and running a
//! message as a turn whose answer is then sent back.

use exoclaw_core::runtime::{AgentRuntime, Target, TurnInput};
use exoclaw_types::Inbound;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Tries of one API call.
const TRIES: u32 = 3;
/// The longest wait a platform may ask for before a retry; longer gives up.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// POSTs `body` to `url` (with `bearer` as the token, if any) and returns the platform's answer
/// when it says `"ok": true`; the error says what the platform said (`error`, `description`).
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &Value,
) -> Result<Value, String> {
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let mut request = client.post(url).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let backoff = Duration::from_millis(500 * u64::from(attempt));
        let wait = match request.send().await {
            Ok(response) if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                let header = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
                let answer: Value = response.json().await.unwrap_or_default();
                // Telegram says it in the body: {"parameters": {"retry_after": 5}}.
                let after = header.or_else(|| answer["parameters"]["retry_after"].as_u64()).unwrap_or(1);
                last = format!("rate limited (retry after {after}s)");
                let after = Duration::from_secs(after);
                if after > MAX_RETRY_AFTER {
                    return Err(last);
                }
                after
            }
            Ok(response) if response.status().is_server_error() => {
                last = format!("the platform answered {}", response.status());
                backoff
            }
            Ok(response) => {
                let status = response.status();
                let answer: Value =
                    response.json().await.map_err(|e| format!("the platform answered {status}: {e}"))?;
                return match answer["ok"].as_bool() {
                    Some(true) => Ok(answer),
                    _ => Err(answer["error"].as_str().or(answer["description"].as_str()).map_or_else(
                        || format!("the platform answered {status} without \"ok\""),
                        str::to_owned,
                    )),
                };
            }
            Err(error) => {
                last = error.without_url().to_string();
                backoff
            }
        };
        if attempt < TRIES {
            tokio::time::sleep(wait).await;
        }
    }
    Err(format!("failed {TRIES} times: {last}"))
}

/// Submits `text` from `inbound` as a turn of the agent the bindings pick and, on its own task,
/// hands its answer (or what went wrong, for the person who asked) to `answer`.
pub(crate) fn run_turn<F, Fut>(runtime: &Arc<dyn AgentRuntime>, inbound: Inbound, text: String, answer: F)
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let channel = inbound.channel.clone();
    match runtime.submit(Target::Inbound { inbound, agent: None }, TurnInput::message(text)) {
        Ok(handle) => {
            tokio::spawn(async move {
                let reply = match handle.report().await {
                    Ok(report) => match &report.error {
                        Some(failure) => format!("Sorry — that failed: {}", failure.message),
                        None => report.text(),
                    },
                    Err(error) => format!("Sorry — that failed: {error}"),
                };
                answer(reply).await;
            });
        }
        Err(error) => {
            tracing::warn!(channel = %channel, "a message could not be submitted: {error}");
            tokio::spawn(answer(format!("Sorry — {error}")));
        }
    }
}
