//! WASM plugins in the runtime: the plugins installed in exoclaw's home (`plugins/`), loaded
//! under their grants with their `[plugins.NAME]` settings. Tool plugins' tools join the registry
//! every agent with tools draws from (so every front end offers them, under the same permission
//! rules, hooks and audit); channel plugins are handed to the gateway by
//! [`Runtime::plugins`](super::Runtime::plugins).

use crate::config::Config;
use crate::config::load::{process_env, user_home};
use exoclaw_wasm::{PluginDir, PluginHost, Plugins};
use std::collections::BTreeMap;
use std::path::Path;

/// The folder under exoclaw's home plugins are installed in.
pub const PLUGINS_DIR: &str = "plugins";

/// The installed plugins of `home`.
pub fn plugin_dir(home: &Path) -> PluginDir {
    PluginDir::new(home.join(PLUGINS_DIR))
}

/// A host caching compiled modules in the plugins folder, resolving `~/` to the user's home.
pub fn plugin_host(dir: &PluginDir) -> PluginHost {
    let host = PluginHost::cached(&dir.cache_dir()).unwrap_or_else(|error| {
        tracing::warn!("compiled plugins cannot be cached ({error}); each start compiles them again");
        PluginHost::uncached()
    });
    host.with_home(user_home(&process_env))
}

/// Loads the plugins installed in `home`, or `None` when there are none (no engine is made then).
/// Compiles on this thread: call it where blocking is fine.
pub fn load_plugins(config: &Config, home: &Path) -> Option<Plugins> {
    let dir = plugin_dir(home);
    if dir.names().is_empty() {
        return None;
    }
    let host = plugin_host(&dir);
    let values: BTreeMap<String, BTreeMap<String, String>> = config
        .plugins
        .iter()
        .map(|(name, settings)| (name.clone(), settings.values(|variable| std::env::var(variable).ok())))
        .collect();
    let enabled = |name: &str| config.plugins.get(name).is_none_or(|settings| settings.enabled);
    Some(Plugins::load(&dir, &host, &values, enabled))
}
