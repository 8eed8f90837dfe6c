//! Telegram by long polling, for a bot on a machine with no public URL: exoclaw removes the bot's
//! webhook (`deleteWebhook`: Telegram refuses `getUpdates` while one is set), then asks for
//! updates with `getUpdates`, which Telegram holds open until one arrives or the long poll's
//! timeout passes. Each update goes to the same [`TelegramChannel`] a webhook delivery goes to.
//!
//! An update is acknowledged by asking for the next ones with `offset` past it, and the offset
//! moves past an update only once it has been handed on; on stop one last `getUpdates` (no wait)
//! acknowledges what was handed on, so a gateway started again is not given it again. Failures:
//! 401 (the token) stops with an error naming its variable; 409 (another program reading the
//! bot's updates, or a webhook set again) and network or server errors back off with jitter from
//! 1 s to a minute; a 429's `retry_after` is waited out. Stopping cancels the long poll in flight.

use super::{TelegramChannel, TelegramConfig, Update};
use crate::approval::Approvals;
use crate::backoff::{self, Backoff};
use crate::connection::{ConnectionMonitor, Reporter, Unmonitored};
use exoclaw_core::runtime::AgentRuntime;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How much longer than the long poll a request may take before it counts as dropped.
const REQUEST_MARGIN: Duration = Duration::from_secs(15);
/// How long any other call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The updates asked for: messages, and presses of inline keyboard buttons (chat approvals).
const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];

/// Why polling stopped for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// Telegram does not know the token (401, or 404 for one that is not a token at all).
    #[error(
        "Telegram refused the bot token ({status}): set {variable} to the token @BotFather gave for the bot, then restart the gateway"
    )]
    Unauthorized {
        /// The HTTP status Telegram answered.
        status: u16,
        /// The environment variable holding the token.
        variable: String,
    },
}

/// Why one Bot API call did not work, by the status Telegram answered.
enum Failure {
    /// 401 or 404: the token is not a bot's.
    Token(u16),
    /// 409: another program reads this bot's updates, or a webhook is set.
    Conflict(String),
    /// 429: Telegram asks to wait this long.
    RetryAfter(Duration),
    /// A network or server error, or a refusal Telegram explains: try again later.
    Transient(String),
}

/// A Telegram bot reading its updates by long polling.
pub struct TelegramPoller {
    channel: TelegramChannel,
    /// The variable holding the token, named when Telegram refuses it.
    token_env: String,
    /// For the long polls: its timeout is above `long_poll`'s.
    client: reqwest::Client,
    /// How long Telegram holds a `getUpdates` open waiting for an update.
    long_poll: Duration,
    /// The `update_id` after the last update handed on; 0 before any.
    offset: AtomicI64,
    /// Where the polling's state (reading updates, or why not) is reported.
    reporter: Reporter,
}

impl TelegramPoller {
    /// The bot with `bot_token`, its messages submitted to `runtime`.
    pub fn new(config: &TelegramConfig, bot_token: &str, runtime: Arc<dyn AgentRuntime>) -> Self {
        let long_poll = Duration::from_secs(config.poll_timeout_secs);
        let client =
            reqwest::Client::builder().timeout(long_poll + REQUEST_MARGIN).build().unwrap_or_default();
        Self {
            long_poll,
            // No webhook is served, so no secret: the channel refuses any delivery.
            channel: TelegramChannel::new(config, bot_token, String::new(), runtime),
            token_env: config.bot_token_env.clone(),
            client,
            offset: AtomicI64::new(0),
            reporter: Reporter::new("telegram", Arc::new(Unmonitored)),
        }
    }

    /// Asks the user whose message started a turn to approve its gated tool calls as
    /// `approvals` says (the channel's inline keyboards; presses arrive as `callback_query`).
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.channel = self.channel.with_approvals(approvals);
        self
    }

    /// Reports whether the bot is reading its updates, and what went wrong last, to `monitor`.
    pub fn with_monitor(mut self, monitor: Arc<dyn ConnectionMonitor>) -> Self {
        self.reporter = Reporter::new("telegram", monitor);
        self
    }

    /// Whether a turn that runs tools shows a progress message while they run (the default);
    /// see [`TelegramChannel::with_progress`].
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.channel = self.channel.with_progress(progress);
        self
    }

    /// Lets a message pick one of `models` (globs such as `anthropic/*`) with a `[provider/model]`
    /// prefix; without any, a prefix is just text.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.channel = self.channel.with_models(models);
        self
    }

    /// Polls until `stop` is cancelled (`Ok`), or Telegram refuses the token (`Err`, which says
    /// which variable to fix). Run again, it goes on from the updates already handed on.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), PollError> {
        let mut backoff = Backoff::default();
        let nothing = json!({});
        loop {
            let deleted = tokio::select! {
                deleted = self.call("deleteWebhook", &nothing, CALL_TIMEOUT) => deleted,
                () = stop.cancelled() => return Ok(()),
            };
            match deleted {
                Ok(_) => break,
                Err(failure) => {
                    let doing = "remove the bot's webhook (deleteWebhook; Telegram refuses getUpdates while one is set)";
                    if !self.wait_after(failure, doing, &mut backoff, &stop).await? {
                        return Ok(());
                    }
                }
            }
        }
        tracing::info!("reading Telegram updates by long polling");
        loop {
            let body = json!({
                "offset": self.offset.load(Ordering::SeqCst),
                "timeout": self.long_poll.as_secs(),
                "allowed_updates": ALLOWED_UPDATES,
            });
            // Cancelling drops the request in flight: stopping does not wait out the long poll.
            let polled = tokio::select! {
                polled = self.call("getUpdates", &body, self.long_poll + REQUEST_MARGIN) => polled,
                () = stop.cancelled() => break,
            };
            match polled {
                Ok(updates) => {
                    self.reporter.connected();
                    backoff = Backoff::default();
                    self.hand_on(&updates);
                }
                Err(failure) => {
                    if !self.wait_after(failure, "read updates (getUpdates)", &mut backoff, &stop).await? {
                        break;
                    }
                }
            }
        }
        self.acknowledge().await;
        Ok(())
    }

    /// Hands each update to the channel, moving the offset past it once it has been.
    fn hand_on(&self, updates: &Value) {
        for update in updates.as_array().into_iter().flatten() {
            let Some(id) = update["update_id"].as_i64() else {
                tracing::warn!("Telegram sent an update without an update_id; it was skipped");
                continue;
            };
            match serde_json::from_value::<Update>(update.clone()) {
                Ok(update) => self.channel.handle_update(update),
                // Skipped for good: asking for it again would only fail again.
                Err(error) => tracing::warn!(update = id, "a Telegram update was skipped: {error}"),
            }
            self.offset.fetch_max(id + 1, Ordering::SeqCst);
        }
    }

    /// Confirms the updates handed on (a `getUpdates` past them that does not wait), so the next
    /// start is not given them again.
    async fn acknowledge(&self) {
        let offset = self.offset.load(Ordering::SeqCst);
        if offset == 0 {
            return;
        }
        let body = json!({"offset": offset, "timeout": 0, "limit": 1});
        if self.call("getUpdates", &body, Duration::from_secs(5)).await.is_err() {
            tracing::debug!("the last Telegram updates could not be acknowledged; they may come again");
        }
    }

    /// Says what failed and waits before the next try (`Ok(true)`), or until `stop`
    /// (`Ok(false)`); `Err` when trying again cannot help.
    async fn wait_after(
        &self,
        failure: Failure,
        doing: &str,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> Result<bool, PollError> {
        let wait = match failure {
            Failure::Token(status) => {
                let error = PollError::Unauthorized { status, variable: self.token_env.clone() };
                self.reporter.disconnected(error.to_string());
                return Err(error);
            }
            Failure::Conflict(said) => {
                let wait = backoff.next();
                let error = format!(
                    "Telegram would not let exoclaw {doing}: 409 Conflict ({said}) — another program is reading this bot's updates (a second exoclaw gateway?) or a webhook was set for it again"
                );
                tracing::warn!("{error}; retrying in {}s", wait.as_secs());
                self.reporter.disconnected(error);
                wait
            }
            Failure::RetryAfter(after) => {
                tracing::info!("Telegram asked to wait {}s before exoclaw may {doing}", after.as_secs());
                after
            }
            Failure::Transient(why) => {
                let wait = backoff.next();
                tracing::warn!("exoclaw could not {doing}: {why}; retrying in {}s", wait.as_secs());
                self.reporter.disconnected(format!("could not {doing}: {why}"));
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(true),
            () = stop.cancelled() => Ok(false),
        }
    }

    /// Calls the Bot API's `method` with `body`: its `result`, or why not.
    async fn call(&self, method: &str, body: &Value, timeout: Duration) -> Result<Value, Failure> {
        // The token is part of the URL, so reqwest's errors are shown without it.
        let url = format!("{}/{method}", self.channel.send.base);
        let response = self
            .client
            .post(&url)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| Failure::Transient(e.without_url().to_string()))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() && answer["ok"] == true {
            return Ok(answer["result"].clone());
        }
        let said = answer["description"].as_str().map_or_else(|| status.to_string(), str::to_owned);
        Err(match status.as_u16() {
            401 | 404 => Failure::Token(status.as_u16()),
            409 => Failure::Conflict(said),
            429 => {
                let after = answer["parameters"]["retry_after"].as_u64().unwrap_or(1);
                Failure::RetryAfter(Duration::from_secs(after).min(backoff::MAX))
            }
            _ => Failure::Transient(format!("{status}: {said}")),
        })
    }
}
