//! exoclaw's WebAssembly plugin host, on Extism.
//!
//! A plugin is a `.wasm` module and a `plugin.toml` [`Manifest`]: its name, its [`Kind`] (tools
//! or a chat channel's adapter) and the [`Capabilities`] it asks for — hosts, folders, memory,
//! time, fuel, configuration keys. The user sees them in plain words and grants them
//! ([`PluginDir::install`]); a plugin that asks for more than its grant is not loaded. Each call runs in
//! an instance limited to exactly that, and a trap, a runaway loop, an allocation past the cap or
//! malformed output is an error for that call only ([`PluginError`]).
//!
//! - [`PluginDir`]: the installed plugins (`~/.exoclaw/plugins/NAME/`) and their grants;
//! - [`PluginHost`]: compiles (cached on disk) and instantiates them ([`LoadedPlugin`]);
//! - [`PluginTool`]: a tool plugin's tools as `exoclaw_core::Tool`s;
//! - [`ChannelPlugin`]: a channel plugin, turning webhook deliveries into turns and answers into
//!   the platform's requests;
//! - [`Plugins`]: every installed plugin loaded at once, for the runtime.
//!
//! The interface a plugin implements is in `docs/plugins.md`.

pub mod channel;
mod error;
mod host;
pub mod installed;
pub mod manifest;
mod settings;
mod tool;

pub use channel::{ChannelPlugin, Incoming, IncomingMessage, OutgoingRequest, PluginWebhook};
pub use error::{CallFailure, PluginError};
pub use host::{LoadedPlugin, PluginHost};
pub use installed::{Installed, PluginDir};
pub use manifest::{Capabilities, Excess, Kind, Manifest, PathGrant};
pub use settings::PluginSettings;
pub use tool::{PluginTool, plugin_tools, tool_name};

use std::collections::BTreeMap;
use std::sync::Arc;
// Only for its `anyhow` feature, which extism's error conversions need (see Cargo.toml).
use wasmtime as _;

/// The installed plugins, loaded: tool plugins' tools, channel plugins, and those that could not
/// be loaded with the reason.
#[derive(Debug, Default)]
pub struct Plugins {
    /// Each tool plugin's tools, by plugin name.
    pub tools: BTreeMap<String, Vec<Arc<PluginTool>>>,
    /// The channel plugins, by name.
    pub channels: BTreeMap<String, Arc<ChannelPlugin>>,
    /// The plugins left out, and why.
    pub failed: Vec<(String, PluginError)>,
}

impl Plugins {
    /// Loads every plugin installed in `dir` (compiling on this thread: call it where blocking is
    /// fine), each with the values of `config[NAME]` its manifest may read. A plugin that fails is
    /// left out and listed in [`Plugins::failed`]; the others load.
    pub fn load(
        dir: &PluginDir,
        host: &PluginHost,
        config: &BTreeMap<String, BTreeMap<String, String>>,
        enabled: impl Fn(&str) -> bool,
    ) -> Self {
        let mut plugins = Self::default();
        let empty = BTreeMap::new();
        for (name, installed) in dir.list() {
            if !enabled(&name) {
                continue;
            }
            let loaded = installed.and_then(|installed| {
                let plugin = Arc::new(host.load(&installed, config.get(&name).unwrap_or(&empty))?);
                Ok((installed, plugin))
            });
            let outcome = loaded.and_then(|(installed, plugin)| match installed.manifest.kind {
                Kind::Tool => {
                    let confinement =
                        format!("WASM sandbox: {}", installed.manifest.capabilities.describe().join("; "));
                    let tools = plugin_tools(&plugin, &confinement)?;
                    plugins.tools.insert(name.clone(), tools.into_iter().map(Arc::new).collect());
                    Ok(())
                }
                Kind::Channel => {
                    check_channel_description(&plugin)?;
                    let hosts = installed.manifest.capabilities.hosts.clone();
                    plugins.channels.insert(name.clone(), Arc::new(ChannelPlugin::new(plugin, hosts)));
                    Ok(())
                }
            });
            if let Err(error) = outcome {
                tracing::warn!(plugin = %name, "plugin not loaded: {error}");
                plugins.failed.push((name, error));
            }
        }
        plugins
    }
}

/// A channel plugin's `describe` must answer `{"channel": {…}}`.
fn check_channel_description(plugin: &LoadedPlugin) -> Result<(), PluginError> {
    let described: serde_json::Value = serde_json::from_slice(plugin.description()).unwrap_or_default();
    match described.get("channel").is_some_and(serde_json::Value::is_object) {
        true => Ok(()),
        false => Err(PluginError::Interface {
            plugin: plugin.name().to_owned(),
            function: "describe".to_owned(),
            problem: "it should be {\"channel\": {\"description\": …}}".to_owned(),
        }),
    }
}
