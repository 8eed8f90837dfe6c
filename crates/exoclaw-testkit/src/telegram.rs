//! Telegram's Bot API wire format, for testing the Telegram channel without Telegram: updates as
//! the Bot API delivers them to a webhook, and its answers (`sendMessage`), served by a
//! [`ScriptedServer`]; and a bot's Bot API for long polling ([`FakeBotApi`]: `getUpdates`,
//! `deleteWebhook`, `sendMessage`, `editMessageText`, and files: `getFile`, the file download, `sendDocument`).

use crate::server::{Reply, ScriptedServer};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A text message update from `user` (id and username) in the chat `chat` of `kind` (`private`,
/// `group`, `supergroup`).
pub fn message(
    update_id: i64,
    message_id: i64,
    chat: i64,
    kind: &str,
    user: (i64, &str),
    text: &str,
) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": user.0, "is_bot": false, "first_name": user.1, "username": user.1},
            "chat": {"id": chat, "type": kind},
            "date": 1_700_000_000,
            "text": text,
        }
    })
}

/// A document (`file_id`, `file_name`, `mime_type`, size) sent by `user` in the private chat
/// `chat`, with `caption` if any.
pub fn document_message(
    update_id: i64,
    message_id: i64,
    chat: i64,
    user: (i64, &str),
    document: (&str, &str, &str, usize),
    caption: Option<&str>,
) -> Value {
    let mut update = message(update_id, message_id, chat, "private", user, "");
    let message = &mut update["message"];
    message.as_object_mut().map(|m| m.remove("text"));
    let (file_id, file_name, mime_type, size) = document;
    message["document"] = json!({"file_id": file_id, "file_unique_id": format!("u{file_id}"),
        "file_name": file_name, "mime_type": mime_type, "file_size": size});
    if let Some(caption) = caption {
        message["caption"] = json!(caption);
    }
    update
}

/// A press of the inline keyboard button carrying `data`, by `user` (id and username), on the
/// message `message_id` in `chat`: a `callback_query` update.
pub fn callback_query(update_id: i64, user: (i64, &str), chat: i64, message_id: i64, data: &str) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("cq{update_id}"),
            "from": {"id": user.0, "is_bot": false, "first_name": user.1, "username": user.1},
            "message": {
                "message_id": message_id, "date": 1_700_000_000, "text": "Approval needed",
                "from": {"id": 999, "is_bot": true, "first_name": "ExoBot", "username": "ExoBot"},
                "chat": {"id": chat, "type": if chat < 0 { "supergroup" } else { "private" }},
            },
            "chat_instance": "-4242",
            "data": data,
        }
    })
}

/// The inline keyboard of a `sendMessage` body: each button's text and callback data, in order.
pub fn buttons(body: &Value) -> Vec<(String, String)> {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .map(|button| {
            let text = button["text"].as_str().unwrap_or_default().to_owned();
            (text, button["callback_data"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A Bot API that accepts `count` calls (`{"ok": true, "result": {…}}`), recording them.
pub async fn bot_api(count: usize) -> ScriptedServer {
    ScriptedServer::start((0..count).map(|i| {
        Reply::json(200, &json!({"ok": true, "result": {"message_id": 1000 + i, "date": 1_700_000_000}}))
    }))
    .await
}

/// The Bot API's answer when a bot sends too fast.
pub fn too_many_requests(retry_after: u64) -> Reply {
    Reply::json(
        429,
        &json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": {"retry_after": retry_after}}),
    )
}

/// The Bot API of one bot, for long polling: `getUpdates` serves the updates a test pushes
/// ([`FakeBotApi::push`]), honouring `offset` (updates before it are confirmed and never given
/// again) and `timeout` (the request is held until an update arrives or the timeout passes);
/// `deleteWebhook` and `sendMessage` are recorded and answered; a token other than the bot's is
/// refused with a 401; polls can be made to fail ([`FakeBotApi::fail_polls`]) with a 409 or a 500
/// as Telegram words them. From <https://core.telegram.org/bots/api#getupdates>.
pub struct FakeBotApi {
    server: crate::server::Loopback,
    state: Arc<BotState>,
}

#[derive(Default)]
struct BotState {
    inner: Mutex<Bot>,
    /// Woken when an update is pushed.
    pushed: Notify,
}

#[derive(Default)]
struct Bot {
    token: String,
    /// Updates not yet confirmed, in order.
    queue: Vec<Value>,
    /// How many times each update id was given out.
    deliveries: HashMap<i64, usize>,
    /// Every call: the method and its parameters.
    calls: Vec<(String, Value)>,
    /// The status every `getUpdates` fails with, while set.
    fail: Option<u16>,
    /// How many polls failed.
    failed: usize,
    /// How many `getUpdates` are being held open now.
    held: usize,
    /// Files a bot may download: `file_id` → (`file_path`, content).
    files: HashMap<String, (String, Vec<u8>)>,
}

impl FakeBotApi {
    /// A Bot API on a free loopback port for the bot with `token`.
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(BotState::default());
        state.inner.lock().expect("the fake's state").token = token.to_owned();
        let shared = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = Arc::clone(&shared);
            async move { bot_call(state, request).await }
        });
        Self { server: crate::server::Loopback::serve(app).await, state }
    }

    /// `http://127.0.0.1:PORT`, the `api_base`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Queues `update` for `getUpdates`, waking a poll being held.
    pub fn push(&self, update: Value) {
        self.lock().queue.push(update);
        self.state.pushed.notify_waiters();
    }

    /// Keeps a file users sent, for `getFile` (by `file_id`) and the download from
    /// `/file/bot<token>/<file_path>`.
    pub fn add_file(&self, file_id: &str, file_path: &str, content: &[u8]) {
        self.lock().files.insert(file_id.to_owned(), (file_path.to_owned(), content.to_vec()));
    }

    /// Makes every `getUpdates` from now on fail with `status` (409: another consumer; 500: a
    /// server error), or succeed again with `None`.
    pub fn fail_polls(&self, status: Option<u16>) {
        self.lock().fail = status;
    }

    /// How many polls have failed.
    pub fn failed_polls(&self) -> usize {
        self.lock().failed
    }

    /// How many times the update `update_id` was given out by `getUpdates`.
    pub fn deliveries(&self, update_id: i64) -> usize {
        self.lock().deliveries.get(&update_id).copied().unwrap_or(0)
    }

    /// Whether a `getUpdates` is being held open now.
    pub fn polling(&self) -> bool {
        self.lock().held > 0
    }

    /// The parameters of every call of `method`, in order.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.lock().calls.iter().filter(|(m, _)| m == method).map(|(_, params)| params.clone()).collect()
    }

    /// The `sendMessage` calls, once at least `count` have been made (panics after 30 s).
    pub async fn sent(&self, count: usize) -> Vec<Value> {
        crate::until(&format!("{count} sendMessage calls"), || {
            let sent = self.calls("sendMessage");
            (sent.len() >= count).then_some(sent)
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bot> {
        self.state.inner.lock().expect("the fake's state")
    }
}

/// Counts a held poll for as long as it is held, even when the client goes away.
struct Held(Arc<BotState>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.inner.lock().expect("the fake's state").held -= 1;
    }
}

/// Telegram's error body.
fn refusal(status: u16, description: &str) -> axum::response::Response {
    let body = json!({"ok": false, "error_code": status, "description": description});
    let status = axum::http::StatusCode::from_u16(status).expect("a status");
    (status, axum::Json(body)).into_response()
}

fn result(result: Value) -> axum::response::Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

async fn bot_call(state: Arc<BotState>, request: axum::extract::Request) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    let content_type =
        request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap_or_default();
    if let Some(file) = path.strip_prefix("/file/") {
        return download(&state, file);
    }
    let params: Value = match content_type.starts_with("multipart/form-data") {
        // A file upload: its fields as strings, a file as {"filename", "content"}.
        true => {
            let recorded = crate::server::Recorded {
                method: "POST".into(),
                path: path.clone(),
                query: None,
                headers: [("content-type".to_owned(), content_type)].into(),
                body: Value::Null,
                raw: bytes,
            };
            let fields = recorded.form_data().into_iter().map(|field| {
                let value = match &field.filename {
                    Some(filename) => json!({"filename": filename, "content": field.text()}),
                    None => json!(field.text()),
                };
                (field.name, value)
            });
            Value::Object(fields.collect())
        }
        false => serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({})),
    };
    let Some((bot, method)) = path.trim_start_matches('/').split_once('/') else {
        return refusal(404, "Not Found");
    };
    let method = method.to_owned();
    {
        let mut inner = state.inner.lock().expect("the fake's state");
        if bot != format!("bot{}", inner.token) {
            return refusal(401, "Unauthorized");
        }
        inner.calls.push((method.clone(), params.clone()));
    }
    match method.as_str() {
        "deleteWebhook" => result(json!(true)),
        "sendMessage" => {
            result(json!({"message_id": 5000, "date": 1_700_000_000, "chat": {"id": params["chat_id"]}}))
        }
        "getUpdates" => get_updates(state, &params).await,
        "editMessageText" => result(json!({"message_id": params["message_id"], "date": 1_700_000_000,
            "chat": {"id": params["chat_id"]}, "text": params["text"]})),
        "sendDocument" => result(json!({"message_id": 6000, "date": 1_700_000_000,
            "document": {"file_id": "BQACAgQ", "file_name": params["document"]["filename"]}})),
        "getFile" => {
            let file_id = params["file_id"].as_str().unwrap_or_default();
            let found = state.inner.lock().expect("the fake's state").files.get(file_id).cloned();
            match found {
                Some((file_path, content)) => result(json!({
                    "file_id": file_id, "file_unique_id": "u1", "file_size": content.len(), "file_path": file_path,
                })),
                None => refusal(400, "Bad Request: invalid file_id"),
            }
        }
        _ => refusal(404, "Not Found: method not found"),
    }
}

/// `GET /file/bot<token>/<file_path>`: a file's content.
fn download(state: &BotState, file: &str) -> axum::response::Response {
    let inner = state.inner.lock().expect("the fake's state");
    let Some(path) = file.strip_prefix(&format!("bot{}/", inner.token)) else {
        return refusal(401, "Unauthorized");
    };
    match inner.files.values().find(|(file_path, _)| file_path == path) {
        Some((_, content)) => content.clone().into_response(),
        None => refusal(404, "Not Found"),
    }
}

async fn get_updates(state: Arc<BotState>, params: &Value) -> axum::response::Response {
    {
        let mut inner = state.inner.lock().expect("the fake's state");
        match inner.fail {
            Some(409) => {
                inner.failed += 1;
                return refusal(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                );
            }
            Some(status) => {
                inner.failed += 1;
                return refusal(status, "Internal Server Error");
            }
            None => {}
        }
        inner.held += 1;
    }
    let _held = Held(Arc::clone(&state));
    let offset = params["offset"].as_i64().unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(100) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(params["timeout"].as_u64().unwrap_or(0));
    loop {
        let pushed = state.pushed.notified();
        tokio::pin!(pushed);
        pushed.as_mut().enable();
        {
            let mut inner = state.inner.lock().expect("the fake's state");
            // Asking from `offset` confirms every update before it.
            inner.queue.retain(|update| update["update_id"].as_i64().unwrap_or(0) >= offset);
            let given: Vec<Value> = inner.queue.iter().take(limit).cloned().collect();
            if !given.is_empty() || tokio::time::Instant::now() >= deadline {
                for update in &given {
                    *inner.deliveries.entry(update["update_id"].as_i64().unwrap_or(0)).or_default() += 1;
                }
                return result(Value::Array(given));
            }
        }
        tokio::select! {
            () = &mut pushed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
