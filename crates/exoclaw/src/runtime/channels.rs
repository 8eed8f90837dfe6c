//! The chat channels a runtime serves, as webhooks for the gateway's `/webhook/NAME`: the built-in
//! ones configured in `[channels]` (Slack, Telegram, Discord's Interactions) whose secrets are set, and every loaded channel plugin
//! whose `[plugins.NAME] webhook_secret_env` names a set variable. Each submits its messages to
//! this runtime, so the gateway only routes deliveries.

use super::Runtime;
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
            let variable = config.plugins.get(name).and_then(|s| s.webhook_secret_env.clone());
            match variable.as_deref().map(|v| (v, std::env::var(v))) {
                Some((_, Ok(secret))) if !secret.is_empty() => {
                    let hook = exoclaw_wasm::PluginWebhook::new(
                        Arc::clone(channel),
                        secret.into_bytes(),
                        Arc::clone(&runtime),
                    );
                    webhooks.push((name.clone(), Arc::new(hook)));
                }
                Some((variable, _)) => tracing::warn!(
                    "the channel plugin `{name}` is not served: the variable {variable} named by [plugins.{name}] webhook_secret_env is not set"
                ),
                None => tracing::warn!(
                    "the channel plugin `{name}` is not served: set [plugins.{name}] webhook_secret_env to the variable holding its signing secret"
                ),
            }
        }
        if let Some(slack) = &config.channels.slack {
            let secret = std::env::var(&slack.signing_secret_env).unwrap_or_default();
            let token = std::env::var(&slack.bot_token_env).unwrap_or_default();
            match (secret.is_empty(), token.is_empty()) {
                (false, false) => {
                    let channel =
                        exoclaw_channels::SlackChannel::new(slack, secret, token, Arc::clone(&runtime))
                            .with_models(config.channels.models.clone());
                    webhooks.push(("slack".to_owned(), Arc::new(channel)));
                }
                _ => tracing::warn!(
                    "[channels.slack] is not served: set {} (the app's signing secret) and {} (its bot token)",
                    slack.signing_secret_env,
                    slack.bot_token_env
                ),
            }
        }
        if let Some(telegram) = &config.channels.telegram {
            let token = std::env::var(&telegram.bot_token_env).unwrap_or_default();
            let secret = std::env::var(&telegram.webhook_secret_env).unwrap_or_default();
            match (token.is_empty(), secret.is_empty()) {
                (false, false) => {
                    let channel = exoclaw_channels::TelegramChannel::new(
                        telegram,
                        &token,
                        secret,
                        Arc::clone(&runtime),
                    )
                    .with_models(config.channels.models.clone());
                    webhooks.push(("telegram".to_owned(), Arc::new(channel)));
                }
                _ => tracing::warn!(
                    "[channels.telegram] is not served: set {} (the bot's token) and {} (the webhook's secret_token)",
                    telegram.bot_token_env,
                    telegram.webhook_secret_env
                ),
            }
        }
        if let Some(discord) = &config.channels.discord {
            let token = std::env::var(&discord.bot_token_env).unwrap_or_default();
            let public_key = std::env::var(&discord.public_key_env).unwrap_or_default();
            if !token.is_empty() && !public_key.is_empty() {
                match exoclaw_channels::DiscordInteractions::new(
                    discord,
                    &public_key,
                    &token,
                    Arc::clone(&runtime),
                ) {
                    Ok(endpoint) => {
                        let endpoint = endpoint.with_models(config.channels.models.clone());
                        webhooks.push(("discord".to_owned(), Arc::new(endpoint)));
                    }
                    Err(error) => tracing::warn!("[channels.discord] slash commands are not served: {error}"),
                }
            }
        }
        webhooks
    }

    /// Starts the channels that keep a connection open (Discord's Gateway, the KĀDI broker), until `stop` is
    /// cancelled; how many were started. One without its token is left out with a warning.
    pub fn start_channels(&self, stop: &tokio_util::sync::CancellationToken) -> usize {
        let mut started = 0;
        if let Some(discord) = self.config().channels.discord.as_ref().filter(|d| d.gateway) {
            let token = std::env::var(&discord.bot_token_env).unwrap_or_default();
            if token.is_empty() {
                tracing::warn!(
                    "[channels.discord] is not connected: set {} (the bot's token)",
                    discord.bot_token_env
                );
            } else {
                let runtime = Arc::new(self.clone()) as Arc<dyn AgentRuntime>;
                let models = self.config().channels.models.clone();
                let gateway = Arc::new(
                    exoclaw_channels::DiscordGateway::new(discord, &token, runtime).with_models(models),
                );
                tokio::spawn(gateway.run(stop.clone()));
                started += 1;
            }
        }
        if let Some(kadi) = &self.config().channels.kadi {
            let key = std::env::var(&kadi.key_env).unwrap_or_default();
            match exoclaw_channels::kadi::signing_key(&key) {
                Ok(key) => {
                    let runtime = Arc::new(self.clone()) as Arc<dyn AgentRuntime>;
                    let models = self.config().channels.models.clone();
                    let client =
                        Arc::new(exoclaw_channels::KadiClient::new(kadi, key, runtime).with_models(models));
                    tokio::spawn(client.run(stop.clone()));
                    started += 1;
                }
                Err(error) => tracing::warn!("[channels.kadi] is not connected: {} — {error}", kadi.key_env),
            }
        }
        started
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
    let unset = |variables: &[&str]| {
        let missing: Vec<&str> = variables
            .iter()
            .copied()
            .filter(|v| std::env::var(v).map_or(true, |value| value.is_empty()))
            .collect();
        (!missing.is_empty()).then(|| format!("set {}", missing.join(" and ")))
    };
    let channels = &config.channels;
    let mut states = Vec::new();
    if let Some(slack) = &channels.slack {
        states.push(ChannelState {
            name: "slack".into(),
            arrives: "POST /webhook/slack".into(),
            missing: unset(&[&slack.signing_secret_env, &slack.bot_token_env]),
        });
    }
    if let Some(telegram) = &channels.telegram {
        states.push(ChannelState {
            name: "telegram".into(),
            arrives: "POST /webhook/telegram".into(),
            missing: unset(&[&telegram.bot_token_env, &telegram.webhook_secret_env]),
        });
    }
    if let Some(discord) = &channels.discord {
        let arrives = match discord.gateway {
            true => "the Discord Gateway; slash commands at POST /webhook/discord",
            false => "slash commands at POST /webhook/discord",
        };
        let needed = [discord.bot_token_env.as_str(), discord.public_key_env.as_str()];
        states.push(ChannelState {
            name: "discord".into(),
            arrives: arrives.into(),
            missing: unset(&needed),
        });
    }
    if let Some(kadi) = &channels.kadi {
        states.push(ChannelState {
            name: "kadi".into(),
            arrives: format!("the KĀDI broker at {}", kadi.url),
            missing: unset(&[&kadi.key_env]),
        });
    }
    for plugin in plugins {
        let variable = config.plugins.get(plugin).and_then(|s| s.webhook_secret_env.clone());
        states.push(ChannelState {
            name: plugin.clone(),
            arrives: format!("POST /webhook/{plugin} (a WASM plugin)"),
            missing: match variable {
                Some(variable) => unset(&[&variable]),
                None => Some(format!("set [plugins.{plugin}] webhook_secret_env")),
            },
        });
    }
    states
}
