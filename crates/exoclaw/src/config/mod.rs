//! exoclaw's configuration: the [`Config`] read from `config.toml` (every section optional), the
//! environment variables that override it, and the commented template `exoclaw config init` writes.
//!
//! - [`load`](self::load): finding the file, `.env`, environment overrides, and parse errors with
//!   `file:line:column`;
//! - [`provider`](self::provider): `[providers.NAME]` instances and the built-in ones;
//! - [`permissions`](self::permissions): the permission files besides `[permissions]` (answers kept
//!   in exoclaw's home, a workspace's own rules) and every scope put together for an agent;
//! - [`trust`](self::trust): which variables a folder's `.env` may set only once the user trusts
//!   the folder, and the trusted folders;
//! - [`ConfigError`]: what can be wrong, each message saying how to fix it.

mod error;
mod gateway;
mod hooks;
pub mod load;
mod memory;
mod metering;
pub mod permissions;
pub mod provider;
pub mod routing;
mod sections;
pub mod trust;

pub use error::ConfigError;
pub use gateway::{AgentProfile, DEFAULT_AGENT, GatewayConfig};
pub use hooks::HooksConfig;
pub use load::{DotEnvReport, LoadedConfig};
pub use memory::{EmbeddingsSetting, FactsSetting, MemoryConfig};
pub use metering::{BudgetConfig, PriceConfig};
pub use permissions::PermissionScopes;
pub use provider::{ProviderConfig, ProviderKind};
pub use routing::{RouteRule, RoutingConfig};
pub use sections::{AgentConfig, LocalConfig, ModelChoice, StorageConfig};

use exoclaw_core::PermissionPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The whole configuration. Every section has defaults, so an empty file (or none) is a working
/// configuration: the embedded model, an SQLite file under exoclaw's home, tools asking before
/// they change anything.
///
/// Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The default model, `provider/model` (or only `provider`, meaning its default model). Unset:
    /// the first cloud provider with a key, else `local/smollm2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelChoice>,
    /// The agent loop's settings.
    pub agent: AgentConfig,
    /// Where sessions and usage are stored.
    pub storage: StorageConfig,
    /// Which tool calls run, ask or are refused.
    #[serde(deserialize_with = "sections::strict_permissions")]
    pub permissions: PermissionPolicy,
    /// `[hooks]`: redaction of tool output and tools no agent may run ([`Config::hooks`]).
    #[serde(skip_serializing_if = "HooksConfig::is_empty")]
    pub hooks: HooksConfig,
    /// The embedded model's settings.
    pub local: LocalConfig,
    /// `[memory]`: context within a budget, archival, long-term search, facts, souls.
    pub memory: MemoryConfig,
    /// Aliases, routing rules, fallback chains; retries and circuit breakers.
    pub routing: RoutingConfig,
    /// Provider instances by name; each entry's `name` is its key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "sections::named_providers")]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[prices]`: USD per million tokens by `provider/model` pattern, over the shipped defaults.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "metering::prices")]
    pub prices: BTreeMap<String, PriceConfig>,
    /// `[[budgets]]`: limits in tokens and/or dollars on model calls.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "metering::budgets")]
    pub budgets: Vec<BudgetConfig>,
    /// `[gateway]`: `exoclaw gateway`'s address, tokens and limits.
    pub gateway: GatewayConfig,
    /// `[agents.NAME]`: the agents the gateway serves besides `default`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "gateway::agents")]
    pub agents: BTreeMap<String, AgentProfile>,
    /// `[[bindings]]`: which agent answers which channel, account, peer, guild or team.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "gateway::bindings")]
    pub bindings: Vec<exoclaw_types::Binding>,
    /// `[mcp.NAME]`: MCP servers whose tools agents with tools are offered (`NAME__tool`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mcp: BTreeMap<String, exoclaw_mcp::ServerConfig>,
    /// `[sandbox]`: what the shell tool's commands and stdio MCP servers may read, write and
    /// reach (exoclaw's home is always hidden from them).
    pub sandbox: exoclaw_tools::sandbox::SandboxPolicy,
    /// `[ssh]`: the hosts the SSH tools may reach, by alias, and the files host keys are trusted
    /// from.
    pub ssh: exoclaw_tools::ssh::SshConfig,
    /// `[plugins.NAME]`: an installed WASM plugin's settings (loaded or not, its configuration
    /// values, a channel plugin's webhook secret). Plugins are installed with `exoclaw plugin`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, exoclaw_wasm::PluginSettings>,
    /// `[channels]`: the built-in chat channels the gateway serves at `/webhook/NAME` (Slack).
    #[serde(skip_serializing_if = "exoclaw_channels::ChannelsConfig::is_empty")]
    pub channels: exoclaw_channels::ChannelsConfig,
}

/// The SQLite file, inside exoclaw's home, used when `storage.url` is unset.
pub const DEFAULT_DB_FILE: &str = "exoclaw.db";

impl Config {
    /// A fully commented `config.toml` documenting every setting, with every setting commented out:
    /// what `exoclaw config init` writes. Parsed as it is, it gives the defaults.
    pub fn template() -> &'static str {
        include_str!("template.toml")
    }

    /// The configuration as TOML, as `exoclaw config show` prints it: every `api_key` is
    /// `"<redacted>"` and a storage URL's password is masked. Keys that come from the environment
    /// are not part of the configuration and so never appear.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        // `api_key` already serialises as `<redacted>`; URLs may carry a password.
        shown.storage.url = shown.storage.url.as_deref().map(sections::redact_url);
        for provider in shown.providers.values_mut() {
            provider.base_url = provider.base_url.as_deref().map(sections::redact_url);
        }
        // An MCP server's headers and environment may carry keys.
        for server in shown.mcp.values_mut() {
            server.headers.values_mut().chain(server.env.values_mut()).for_each(|v| *v = "<redacted>".into());
            server.url = server.url.as_deref().map(sections::redact_url);
        }
        // A plugin's configuration values may be tokens.
        for plugin in shown.plugins.values_mut() {
            plugin.config.values_mut().for_each(|v| *v = "<redacted>".into());
        }
        toml::to_string(&shown)
            .unwrap_or_else(|e| format!("# the configuration cannot be shown as TOML: {e}\n"))
    }

    /// The storage URL to open: `storage.url` with a leading `~` expanded to the user's home, or
    /// by default the SQLite file `exoclaw.db` in exoclaw's `home`.
    pub fn storage_url(&self, home: &Path) -> String {
        self.storage_url_in(home, load::user_home(&load::process_env).as_deref())
    }

    pub(crate) fn storage_url_in(&self, home: &Path, user_home: Option<&Path>) -> String {
        match &self.storage.url {
            Some(url) => sections::expand_url(url, user_home),
            None => format!("sqlite://{}", home.join(DEFAULT_DB_FILE).display()),
        }
    }

    /// The provider instance called `name`: the configured `[providers.NAME]`, else the built-in
    /// instance of the kind with that name.
    pub fn provider(&self, name: &str) -> Option<ProviderConfig> {
        if let Some(configured) = self.providers.get(name) {
            let mut configured = configured.clone();
            // A `Config` built in code may have left it empty; the map key is the truth.
            configured.name = name.to_owned();
            return Some(configured);
        }
        ProviderKind::ALL.into_iter().find(|kind| kind.as_str() == name).map(ProviderConfig::builtin)
    }

    /// Every provider name a model may use: the built-in ones, then the other configured ones.
    pub fn provider_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ProviderKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
        let extra: Vec<String> =
            self.providers.keys().filter(|name| !names.contains(name)).cloned().collect();
        names.extend(extra);
        names
    }
}

#[cfg(test)]
mod tests;
