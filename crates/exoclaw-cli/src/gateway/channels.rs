//! Channel plugins on the gateway: each loaded channel plugin whose `[plugins.NAME]
//! webhook_secret_env` is set is served at `POST /webhook/NAME`. The gateway checks the delivery's
//! signature; the plugin (through the runtime) does the rest.

use axum::body::Bytes;
use axum::http::HeaderMap;
use exoclaw_core::runtime::AgentRuntime;
use exoclaw_gateway::webhook::{Webhook, Webhooks, verify_signature};
use exoclaw_wasm::ChannelPlugin;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A channel plugin as a webhook.
struct PluginWebhook {
    channel: Arc<ChannelPlugin>,
    secret: Vec<u8>,
    runtime: Arc<dyn AgentRuntime>,
}

#[async_trait::async_trait]
impl Webhook for PluginWebhook {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        verify_signature(&self.secret, headers, body)
    }

    async fn receive(&self, headers: &HeaderMap, body: Bytes) -> Result<serde_json::Value, String> {
        let headers: BTreeMap<String, String> = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        self.channel.receive(Arc::clone(&self.runtime), &headers, &body).await.map_err(|e| e.to_string())
    }
}

/// The webhooks of the runtime's channel plugins that have a signing secret.
pub fn plugin_webhooks(runtime: &exoclaw::Runtime, config: &exoclaw::config::Config) -> Webhooks {
    let mut webhooks = Webhooks::new();
    let Some(plugins) = runtime.plugins() else { return webhooks };
    let names: Vec<String> = plugins.channels.keys().cloned().collect();
    let secrets = crate::plugin::channel_secrets(config, &names);
    for (name, channel) in &plugins.channels {
        if let Some(secret) = secrets.get(name) {
            let runtime = Arc::new(runtime.clone()) as Arc<dyn AgentRuntime>;
            let hook = PluginWebhook { channel: Arc::clone(channel), secret: secret.clone(), runtime };
            webhooks = webhooks.with(name.clone(), Arc::new(hook));
            tracing::info!(channel = %name, "channel plugin served at /webhook/{name}");
        }
    }
    webhooks
}
