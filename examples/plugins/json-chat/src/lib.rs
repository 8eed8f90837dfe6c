//! An example exoclaw channel plugin (see docs/plugins.md): a JSON webhook chat.
//!
//! In: the platform POSTs `{"from": "alice", "text": "hi", "room": "optional"}` (or
//! `{"type": "ping"}`, answered `{"pong": true}`). Out: each reply is a POST of
//! `{"to": peer, "room": room, "text": reply}` to the configured `reply_url`.
//!
//! Built for `wasm32-unknown-unknown`: it needs no WASI (no files, no clock).

use extism_pdk::*;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
struct Outgoing {
    message: Message,
    reply: String,
}

#[derive(Deserialize)]
struct Message {
    peer: String,
    #[serde(default)]
    context: Value,
}

#[plugin_fn]
pub fn describe() -> FnResult<Json<Value>> {
    Ok(Json(json!({
        "channel": {
            "description": "A JSON webhook chat: POST {from, text} in, POST {to, text} out"
        }
    })))
}

#[plugin_fn]
pub fn parse_incoming(Json(input): Json<Incoming>) -> FnResult<Json<Value>> {
    let body: Value = serde_json::from_str(&input.body)
        .map_err(|e| Error::msg(format!("the body is not JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(Error::msg("the body must be a JSON object").into());
    };
    if body.get("type").and_then(Value::as_str) == Some("ping") {
        return Ok(Json(json!({"messages": [], "response": {"pong": true}})));
    }
    let from = match body.get("from") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) => return Err(Error::msg("`from` is empty").into()),
        Some(_) => return Err(Error::msg("`from` must be a string").into()),
        None => return Err(Error::msg("the body has no `from`").into()),
    };
    let text = match body.get("text") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(Error::msg("`text` must be a string").into()),
        None => return Err(Error::msg("the body has no `text`").into()),
    };
    let room = match body.get("room") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(_) => return Err(Error::msg("`room` must be a string").into()),
    };
    Ok(Json(json!({
        "messages": [{"peer": from, "text": text, "context": {"room": room}}]
    })))
}

#[plugin_fn]
pub fn format_outgoing(Json(input): Json<Outgoing>) -> FnResult<Json<Value>> {
    let url = match config::get("reply_url")? {
        Some(url) if !url.is_empty() => url,
        _ => {
            return Err(Error::msg(
                "no `reply_url` configured: set it under [plugins.NAME.config]",
            )
            .into())
        }
    };
    let room = input.message.context.get("room").cloned().unwrap_or(Value::Null);
    let body = json!({"to": input.message.peer, "room": room, "text": input.reply});
    Ok(Json(json!({
        "requests": [{
            "method": "POST",
            "url": url,
            "headers": {"content-type": "application/json"},
            "body": body.to_string()
        }]
    })))
}
