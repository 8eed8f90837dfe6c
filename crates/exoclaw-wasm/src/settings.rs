//! `[plugins.NAME]`: whether an installed plugin is loaded, the values of the configuration keys
//! it may read, and (for a channel plugin) where the gateway finds its webhook secret.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One plugin's settings in `config.toml`. Every field is optional: an installed plugin with no
/// table is loaded with no configuration values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Whether to load it (default true).
    pub enabled: bool,
    /// Values of the configuration keys its manifest lists (others are never passed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Configuration values taken from environment variables (key → variable), for secrets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config_env: BTreeMap<String, String>,
    /// A channel plugin: the environment variable holding the secret its webhook deliveries are
    /// signed with (`X-Exoclaw-Signature`); without it the gateway does not serve the channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<String>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self { enabled: true, config: BTreeMap::new(), config_env: BTreeMap::new(), webhook_secret_env: None }
    }
}

impl PluginSettings {
    /// The configuration values: `config`, then `config_env` read with `env` (a variable that is
    /// not set leaves its key out).
    pub fn values(&self, env: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
        let mut values = self.config.clone();
        for (key, variable) in &self.config_env {
            if let Some(value) = env(variable) {
                values.insert(key.clone(), value);
            }
        }
        values
    }
}
