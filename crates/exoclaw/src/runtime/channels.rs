//! The chat channels a runtime serves, as webhooks for the gateway's `/webhook/NAME`: the built-in
//! ones configured in `[channels]` (Slack, Telegram, Discord's Interactions) whose secrets are
//! set, and every loaded channel plugin whose `[plugins.NAME] webhook_secret_env` names a set
//! variable; and the channels that keep a connection instead (Discord's Gateway, the KĀDI broker,
//! Slack's Socket Mode, Telegram's long polling). Each submits its messages to this runtime, so
//! the gateway only routes deliveries.

use super::Runtime;
use exoclaw_channels::telegram::TelegramMode;
use exoclaw_core::runtime::{AgentRuntime, Webhook};
use std::sync::Arc;

impl Runtime {
    /// The channels' webhooks, by channel name. A channel without its secrets is left out with a
    /// warning saying what to set.
    pub fn webhooks(&self) -> Vec<(String, Arc<dyn Webhook>)> {
        let mut webhooks: Vec<(String, Arc<dyn Webhook>)> = Vec::new();
        let runtime = Arc::new(self.clone()) as Arc<dyn AgentRuntime>;
        let config = self.config();
        for (name, channel) in self.plugins().map(|plugins| &plugins.channels).into_iter().flatten() {
            let variable = config.plugins.get(name).and_then(|s| s.webhook_secret_env.as_deref());
            match variable.map(|variable| secrets([variable])) {
                Some(Ok([secret])) => {
                    let hook = exoclaw_wasm::PluginWebhook::new(
                        Arc::clone(channel),
                        secret.into_bytes(),
                        Arc::clone(&runtime),
                    );
                    webhooks.push((name.clone(), Arc::new(hook)));
                }
                Some(Err(missing)) => tracing::warn!(
                    "the channel plugin `{name}` is not served: {missing} (named by [plugins.{name}] webhook_secret_env)"
                ),
                None => tracing::warn!(
                    "the channel plugin `{name}` is not served: set [plugins.{name}] webhook_secret_env to the variable holding its signing secret"
                ),
            }
        }
        let models = &config.channels.models;
        let progress = config.channels.progress;
        // Slack in Socket Mode and Telegram by polling take nothing here: `start_channels`.
        if let Some(slack) = config.channels.slack.as_ref().filter(|s| s.app_token_env.is_none()) {
            match secrets([&slack.signing_secret_env, &slack.bot_token_env]) {
                Ok([secret, token]) => {
                    let channel =
                        exoclaw_channels::SlackChannel::new(slack, secret, token, Arc::clone(&runtime));
                    let channel = channel
                        .with_models(models.clone())
                        .with_approvals(self.chat_approvals().clone())
                        .with_progress(progress);
                    webhooks.push(("slack".to_owned(), Arc::new(channel)));
                }
                Err(missing) => tracing::warn!("[channels.slack] is not served: {missing}"),
            }
        }
        if let Some(telegram) = config.channels.telegram.as_ref().filter(|t| t.mode == TelegramMode::Webhook)
        {
            match secrets([&telegram.bot_token_env, &telegram.webhook_secret_env]) {
                Ok([token, secret]) => {
                    let channel = exoclaw_channels::TelegramChannel::new(
                        telegram,
                        &token,
                        secret,
                        Arc::clone(&runtime),
                    );
                    let channel = channel
                        .with_models(models.clone())
                        .with_approvals(self.chat_approvals().clone())
                        .with_progress(progress);
                    webhooks.push(("telegram".to_owned(), Arc::new(channel)));
                }
                Err(missing) => tracing::warn!("[channels.telegram] is not served: {missing}"),
            }
        }
        if let Some(discord) = &config.channels.discord
            && let Ok([token, public_key]) = secrets([&discord.bot_token_env, &discord.public_key_env])
        {
            match exoclaw_channels::DiscordInteractions::new(
                discord,
                &public_key,
                &token,
                Arc::clone(&runtime),
            ) {
                Ok(endpoint) => {
                    let endpoint = endpoint
                        .with_models(models.clone())
                        .with_approvals(self.chat_approvals().clone())
                        .with_progress(progress);
                    webhooks.push(("discord".to_owned(), Arc::new(endpoint)))
                }
                Err(error) => tracing::warn!("[channels.discord] slash commands are not served: {error}"),
            }
        }
        webhooks
    }

    /// Starts the channels that keep a connection open (Discord's Gateway, the KĀDI broker, Slack's
    /// Socket Mode, Telegram's long polling), until `stop` is cancelled; how many were started. One
    /// without its token is left out with a warning. Each reports its connection's state to the
    /// store as it changes, and "the gateway stopped" when `stop` is cancelled.
    pub fn start_channels(&self, stop: &tokio_util::sync::CancellationToken) -> usize {
        let mut connected: Vec<&'static str> = Vec::new();
        let config = self.config();
        let runtime = Arc::new(self.clone()) as Arc<dyn AgentRuntime>;
        let models = config.channels.models.clone();
        let progress = config.channels.progress;
        if let Some(discord) = config.channels.discord.as_ref().filter(|d| d.gateway) {
            match secrets([&discord.bot_token_env]) {
                Ok([token]) => {
                    let gateway =
                        exoclaw_channels::DiscordGateway::new(discord, &token, Arc::clone(&runtime));
                    let gateway = gateway
                        .with_models(models.clone())
                        .with_approvals(self.chat_approvals().clone())
                        .with_progress(progress)
                        .with_monitor(self.connection_monitor());
                    tokio::spawn(Arc::new(gateway).run(stop.clone()));
                    connected.push("discord");
                }
                Err(missing) => tracing::warn!("[channels.discord] is not connected: {missing}"),
            }
        }
        if let Some(slack) = &config.channels.slack
            && let Some(app_token_env) = &slack.app_token_env
        {
            match secrets([app_token_env, &slack.bot_token_env]) {
                Ok([app_token, bot_token]) => {
                    let socket =
                        exoclaw_channels::SlackSocket::new(slack, app_token, bot_token, Arc::clone(&runtime))
                            .with_models(models.clone())
                            .with_approvals(self.chat_approvals().clone())
                            .with_progress(progress)
                            .with_monitor(self.connection_monitor());
                    spawn_connection("[channels.slack] Socket Mode", Arc::new(socket).run(stop.clone()));
                    connected.push("slack");
                }
                Err(missing) => {
                    tracing::warn!("[channels.slack] is not connected over Socket Mode: {missing}")
                }
            }
        }
        if let Some(telegram) = config.channels.telegram.as_ref().filter(|t| t.mode == TelegramMode::Polling)
        {
            match secrets([&telegram.bot_token_env]) {
                Ok([token]) => {
                    let poller =
                        exoclaw_channels::TelegramPoller::new(telegram, &token, Arc::clone(&runtime))
                            .with_models(models.clone())
                            .with_approvals(self.chat_approvals().clone())
                            .with_progress(progress)
                            .with_monitor(self.connection_monitor());
                    spawn_connection("[channels.telegram] polling", Arc::new(poller).run(stop.clone()));
                    connected.push("telegram");
                }
                Err(missing) => tracing::warn!("[channels.telegram] is not polling: {missing}"),
            }
        }
        if let Some(kadi) = &config.channels.kadi {
            let key = std::env::var(&kadi.key_env).unwrap_or_default();
            match exoclaw_channels::kadi::signing_key(&key) {
                Ok(key) => {
                    let mut client = exoclaw_channels::KadiClient::new(kadi, key, Arc::clone(&runtime))
                        .with_models(models.clone())
                        .with_monitor(self.connection_monitor());
                    if !kadi.tools.is_empty()
                        && let Some(tools) = self.exposed_tools(
                            exoclaw_channels::KADI_AUDIT_AGENT,
                            exoclaw_channels::KADI_ASK_HINT,
                        )
                    {
                        client = client.with_tools(tools);
                    }
                    tokio::spawn(Arc::new(client).run(stop.clone()));
                    connected.push("kadi");
                }
                Err(error) => tracing::warn!("[channels.kadi] is not connected: {} — {error}", kadi.key_env),
            }
        }
        let started = connected.len();
        self.report_stop(connected, stop.clone());
        started
    }
}

/// Runs a channel's connection (`what`) on its own task until it ends; one that gives up (a token
/// the platform refuses) is logged with what to fix.
fn spawn_connection<E: std::fmt::Display>(
    what: &'static str,
    run: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(error) = run.await {
            tracing::error!("{what} stopped: {error}");
        }
    });
}

/// Records each change of a connected channel's state in the store, for `exoclaw channels
/// status` in another process; the writes are the runtime's tracked background work, so the last
/// one ("the gateway stopped") lands before the store closes.
struct StoreMonitor {
    store: exoclaw_store::Store,
    tasks: tokio_util::task::TaskTracker,
}

impl exoclaw_channels::ConnectionMonitor for StoreMonitor {
    fn report(&self, state: exoclaw_core::ChannelHealth) {
        use exoclaw_core::ChannelHealthStore as _;
        let store = self.store.clone();
        self.tasks.spawn(async move {
            if let Err(error) = store.record_channel_health(&state).await {
                tracing::warn!(channel = %state.channel, %error, "could not record the channel's connection state");
            }
        });
    }
}

impl Runtime {
    /// Where the channels that keep a connection report its state: the store.
    fn connection_monitor(&self) -> Arc<dyn exoclaw_channels::ConnectionMonitor> {
        Arc::new(StoreMonitor { store: self.inner.store.clone(), tasks: self.inner.tasks.clone() })
    }

    /// Once `stop` is cancelled, records each of the `channels` as no longer connected because the
    /// gateway stopped (tracked, so [`Runtime::settle`] lets it land before the store closes).
    fn report_stop(&self, channels: Vec<&'static str>, stop: tokio_util::sync::CancellationToken) {
        if channels.is_empty() {
            return;
        }
        let monitor = self.connection_monitor();
        self.inner.tasks.spawn(async move {
            stop.cancelled().await;
            for channel in channels {
                monitor.report(exoclaw_core::ChannelHealth {
                    channel: channel.to_owned(),
                    connected: false,
                    since: chrono::Utc::now(),
                    error: Some("the gateway stopped".to_owned()),
                });
            }
        });
    }
}

/// One chat channel as `exoclaw channels status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// `slack`, `telegram`, `discord`, `kadi`, or a channel plugin's name.
    pub name: String,
    /// How messages arrive: the webhook path, or the connection it keeps.
    pub arrives: String,
    /// What is missing for it to work; `None` when it is ready.
    pub missing: Option<String>,
}

/// Every configured channel (and each installed channel plugin, named in `plugins`) and whether
/// its secrets are set. What the gateway would serve, checked without starting it.
pub fn channel_states(config: &crate::config::Config, plugins: &[String]) -> Vec<ChannelState> {
    let channels = &config.channels;
    let mut states = Vec::new();
    if let Some(slack) = &channels.slack {
        let (arrives, missing) = match &slack.app_token_env {
            Some(app_token_env) => (
                "Socket Mode (a WebSocket exoclaw opens; no public URL or signing secret needed)",
                secrets([app_token_env, &slack.bot_token_env]).err(),
            ),
            None => ("POST /webhook/slack", secrets([&slack.signing_secret_env, &slack.bot_token_env]).err()),
        };
        states.push(ChannelState { name: "slack".into(), arrives: arrives.into(), missing });
    }
    if let Some(telegram) = &channels.telegram {
        let (arrives, missing) = match telegram.mode {
            TelegramMode::Polling => (
                "long polling (getUpdates; no public URL or webhook secret needed)",
                secrets([&telegram.bot_token_env]).err(),
            ),
            TelegramMode::Webhook => (
                "POST /webhook/telegram",
                secrets([&telegram.bot_token_env, &telegram.webhook_secret_env]).err(),
            ),
        };
        states.push(ChannelState { name: "telegram".into(), arrives: arrives.into(), missing });
    }
    if let Some(discord) = &channels.discord {
        let arrives = match discord.gateway {
            true => "the Discord Gateway; slash commands at POST /webhook/discord",
            false => "slash commands at POST /webhook/discord",
        };
        let missing = secrets([&discord.bot_token_env, &discord.public_key_env]).err();
        states.push(ChannelState { name: "discord".into(), arrives: arrives.into(), missing });
    }
    if let Some(kadi) = &channels.kadi {
        states.push(ChannelState {
            name: "kadi".into(),
            arrives: match kadi.tools.is_empty() {
                true => format!("the KĀDI broker at {}", kadi.url),
                false => format!(
                    "the KĀDI broker at {}; its agents may call the tools {} (as far as exoclaw's permissions \
                     allow them without asking)",
                    kadi.url,
                    kadi.tools.join(", ")
                ),
            },
            missing: secrets([&kadi.key_env]).err(),
        });
    }
    for plugin in plugins {
        let variable = config.plugins.get(plugin).and_then(|s| s.webhook_secret_env.clone());
        states.push(ChannelState {
            name: plugin.clone(),
            arrives: format!("POST /webhook/{plugin} (a WASM plugin)"),
            missing: match variable {
                Some(variable) => secrets([&variable]).err(),
                None => Some(format!("set [plugins.{plugin}] webhook_secret_env")),
            },
        });
    }
    states
}

/// The values of the environment `variables`, or what to do: `set A and B`, naming each one unset
/// or empty.
fn secrets<const N: usize>(variables: [&str; N]) -> Result<[String; N], String> {
    let values = variables.map(|variable| std::env::var(variable).unwrap_or_default());
    let missing: Vec<&str> = variables
        .iter()
        .zip(&values)
        .filter(|(_, value)| value.is_empty())
        .map(|(variable, _)| *variable)
        .collect();
    match missing.is_empty() {
        true => Ok(values),
        false => Err(format!("set {}", missing.join(" and "))),
    }
}
