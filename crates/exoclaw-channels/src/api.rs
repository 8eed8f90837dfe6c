//! What every channel does with its platform: calling its HTTP API (JSON in, `{"ok": true, …}`
//! out, retried on 429 after the platform's `Retry-After` and on server errors), and running a
//! message as a turn whose answer is then sent back (with progress while its tools run).

use crate::breaker::Breaker;
use crate::progress::Place;
use exoclaw_core::Approver;
use exoclaw_core::runtime::{AgentRuntime, Attachments, Outbox, Target, TurnHandle, TurnInput};
use exoclaw_types::Inbound;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Tries of one API call.
const TRIES: u32 = 3;
/// The longest wait a platform may ask for before a retry; longer gives up.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a platform says a call worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Success {
    /// `{"ok": true, …}` (Slack, Telegram); `error` or `description` says why not.
    OkField,
    /// A 2xx status (Discord); `message` says why not.
    Status,
}

/// What a call sends.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    /// A JSON document.
    Json(&'a Value),
    /// `application/x-www-form-urlencoded` arguments.
    Form(&'a [(&'a str, String)]),
    /// A `multipart/form-data` form (files), built again for each try.
    Multipart(&'a (dyn Fn() -> reqwest::multipart::Form + Send + Sync)),
    /// Raw bytes.
    Bytes(&'a bytes::Bytes),
}

impl Body<'_> {
    fn put(self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Json(body) => request.json(body),
            Self::Form(pairs) => request
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()),
            Self::Multipart(form) => request.multipart(form()),
            Self::Bytes(bytes) => request.body(bytes.clone()),
        }
    }
}

/// Sends `body` to `url` with `method` (and `authorization` as the header's whole value, if any)
/// and returns the platform's answer when it says it worked; the error says what the platform
/// said. A 429 is retried after the wait the platform asks for (`Retry-After`, or `retry_after`
/// in the body as Telegram and Discord put it), a server error or a dropped connection after a
/// short backoff, 3 tries in all.
pub(crate) async fn call(
    client: &reqwest::Client,
    breaker: &Breaker,
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
    body: &Value,
    success: Success,
) -> Result<Value, String> {
    send(client, breaker, method, url, authorization, Body::Json(body), success).await
}

/// [`call`] with any [`Body`].
pub(crate) async fn send(
    client: &reqwest::Client,
    breaker: &Breaker,
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
    body: Body<'_>,
    success: Success,
) -> Result<Value, String> {
    let mut last = String::new();
    for attempt in 1..=TRIES {
        breaker.allow(std::time::Instant::now()).map_err(|open| open.to_string())?;
        let mut request = body.put(client.request(method.clone(), url));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let backoff = Duration::from_millis(500 * u64::from(attempt));
        let wait = match request.send().await {
            Ok(response) if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                let header = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok());
                let answer: Value = response.json().await.unwrap_or_default();
                let after = header
                    .or_else(|| answer["parameters"]["retry_after"].as_f64())
                    .or_else(|| answer["retry_after"].as_f64())
                    .unwrap_or(1.0)
                    .max(0.0);
                breaker.record(std::time::Instant::now(), false);
                last = format!("rate limited (retry after {after}s)");
                let after = Duration::from_secs_f64(after);
                if after > MAX_RETRY_AFTER {
                    return Err(last);
                }
                after
            }
            Ok(response) if response.status().is_server_error() => {
                breaker.record(std::time::Instant::now(), false);
                last = format!("the platform answered {}", response.status());
                backoff
            }
            Ok(response) => {
                // The platform answered: it is up, whatever it thought of the request.
                breaker.record(std::time::Instant::now(), true);
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let worked = match success {
                    Success::OkField => answer["ok"].as_bool() == Some(true),
                    Success::Status => status.is_success(),
                };
                if worked && answer.is_null() {
                    // A plain-text success (Slack's file upload answers `OK - 1234`).
                    return Ok(Value::String(text));
                }
                if worked {
                    return Ok(answer);
                }
                let said = ["error", "description", "message"].iter().find_map(|key| answer[key].as_str());
                return Err(match said {
                    Some(said) => format!("{status}: {said}"),
                    None => format!("{status}: {}", text.chars().take(200).collect::<String>()),
                });
            }
            Err(error) => {
                breaker.record(std::time::Instant::now(), false);
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

/// The model a message picks with a `[provider/model]` prefix, if `allowed` lets it (globs such as
/// `anthropic/*`), and the message without it. `Err` when it names a model not allowed (the
/// reason, for the person who asked). With no models allowed a prefix is just text.
pub(crate) fn pick_model(text: &str, allowed: &[String]) -> Result<(Option<String>, String), String> {
    let trimmed = text.trim_start();
    let picked = trimmed.strip_prefix('[').and_then(|rest| rest.split_once(']'));
    let Some((model, rest)) = picked.filter(|(model, _)| !allowed.is_empty() && is_model_name(model)) else {
        return Ok((None, text.to_owned()));
    };
    if allowed.iter().any(|pattern| exoclaw_types::glob_match(pattern, model)) {
        Ok((Some(model.to_owned()), rest.trim().to_owned()))
    } else {
        Err(format!("the model `{model}` cannot be chosen here; these can: {}", allowed.join(", ")))
    }
}

/// Whether `text` could be a model's name (`provider/model`, an alias): no spaces, short.
fn is_model_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 100
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | ':'))
}

/// Submits `text` from `inbound` as a turn of the agent the bindings pick (on the model its
/// `[model]` prefix picks, among `models`) and, on its own task, hands its answer (or what went
/// wrong, for the person who asked) to `answer`. Tool calls that need a person's approval are
/// refused (the agent's approver: nobody is asked); see [`run_turn_asking`].
pub(crate) fn run_turn<F, Fut>(
    runtime: &Arc<dyn AgentRuntime>,
    inbound: Inbound,
    text: String,
    models: &[String],
    answer: F,
) where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match submit(runtime, inbound, text, models, Extras::default(), None) {
        Ok(handle) => {
            tokio::spawn(async move { answer(handle.reply_text().await).await });
        }
        Err(refusal) => {
            tokio::spawn(answer(refusal));
        }
    }
}

/// What a chat message carries besides its text.
#[derive(Default)]
pub(crate) struct Extras {
    /// Who is asked about the turn's tool calls that need a person's approval (the asker, in
    /// the chat); `None`: the agent's approver (nobody: refused).
    pub approver: Option<Arc<dyn Approver>>,
    /// The files that came with the message.
    pub attachments: Option<Arc<dyn Attachments>>,
}

/// [`run_turn`] for a chat: asks `extras.approver` about the turn's gated tool calls, gives the
/// model the message's files, shows the turn's tool calls in a progress message at `place` when
/// `progress` is given (the shortest time between two of its edits; see [`crate::progress`]),
/// delivers the answer there, and then the files the agent sent with it (`send_file`, offered
/// when the place takes files).
pub(crate) fn run_turn_asking<P: Place>(
    runtime: &Arc<dyn AgentRuntime>,
    inbound: Inbound,
    text: String,
    models: &[String],
    extras: Extras,
    progress: Option<Duration>,
    place: P,
) {
    let outbox = (place.max_file_bytes() > 0).then(|| Outbox::new(place.max_file_bytes()));
    match submit(runtime, inbound, text, models, extras, outbox.clone()) {
        Ok(handle) => {
            tokio::spawn(crate::progress::follow(handle, place, progress, outbox));
        }
        Err(refusal) => {
            tokio::spawn(async move { place.answer(&refusal).await });
        }
    }
}

/// Submits the turn; `Err` says why it could not run, for the person who asked.
fn submit(
    runtime: &Arc<dyn AgentRuntime>,
    inbound: Inbound,
    text: String,
    models: &[String],
    extras: Extras,
    outbox: Option<Outbox>,
) -> Result<TurnHandle, String> {
    let channel = inbound.channel.clone();
    let (model, text) = pick_model(&text, models).map_err(|refusal| format!("Sorry — {refusal}"))?;
    let mut input = TurnInput::message(text);
    if let Some(model) = model {
        input = input.with_model(model);
    }
    if let Some(approver) = extras.approver {
        input = input.with_approver(approver);
    }
    if let Some(attachments) = extras.attachments {
        input = input.with_attachments(attachments);
    }
    if let Some(outbox) = outbox {
        input = input.with_outbox(outbox);
    }
    runtime.submit(Target::Inbound { inbound, agent: None }, input).map_err(|error| {
        tracing::warn!(channel = %channel, "a message could not be submitted: {error}");
        format!("Sorry — {error}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_prefix_picks_an_allowed_model_only() {
        let allowed = vec!["anthropic/*".to_owned(), "local/smollm2".to_owned()];
        assert_eq!(
            pick_model("[anthropic/claude-sonnet-4-5] why?", &allowed),
            Ok((Some("anthropic/claude-sonnet-4-5".to_owned()), "why?".to_owned()))
        );
        assert_eq!(pick_model("no prefix", &allowed), Ok((None, "no prefix".to_owned())));
        let refused = pick_model("[openai/o3] spend", &allowed).unwrap_err();
        assert!(refused.contains("`openai/o3` cannot be chosen here"), "{refused}");
        // Brackets that are not a model, and any prefix when no model may be chosen, are text.
        assert_eq!(pick_model("[see below] x", &allowed), Ok((None, "[see below] x".to_owned())));
        assert_eq!(pick_model("[openai/o3] x", &[]), Ok((None, "[openai/o3] x".to_owned())));
    }
}
