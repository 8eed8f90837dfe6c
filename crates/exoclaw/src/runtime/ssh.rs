//! The SSH tools (`ssh_exec`, `ssh_upload`, `ssh_download`) from `[ssh]`: offered when SSH is
//! enabled and at least one host is known (under `[ssh.hosts]` or a plain `Host` of
//! `~/.ssh/config`), sharing one connection pool. Host keys are trusted from the configured
//! known-hosts files and exoclaw's own `known_hosts` in its home, where `exoclaw ssh trust` writes.

use crate::config::Config;
use exoclaw_core::ToolRegistry;
use exoclaw_tools::ssh::{SshDownload, SshExec, SshPool, SshUpload};
use std::path::PathBuf;
use std::sync::Arc;

/// exoclaw's own known-hosts file, in its home (`~/.exoclaw/known_hosts`).
pub const TRUST_FILE: &str = "known_hosts";

/// exoclaw's own known-hosts file: [`TRUST_FILE`] in its home.
pub fn trust_file() -> Option<PathBuf> {
    crate::config::load::home_dir().ok().map(|home| home.join(TRUST_FILE))
}

/// Adds the SSH tools to `tools` when `[ssh]` is enabled and names at least one host.
pub(super) fn register_ssh_tools(config: &Config, tools: &mut ToolRegistry) {
    let Some(trust_file) = trust_file() else { return };
    if !config.ssh.enabled || config.ssh.aliases().is_empty() {
        return;
    }
    let pool = Arc::new(SshPool::new(config.ssh.clone(), trust_file));
    tools.register(Arc::new(SshExec::new(Arc::clone(&pool))));
    tools.register(Arc::new(SshUpload::new(Arc::clone(&pool))));
    tools.register(Arc::new(SshDownload::new(pool)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_tools::ssh::HostConfig;

    fn registered(config: &Config) -> Vec<String> {
        let mut tools = ToolRegistry::new();
        register_ssh_tools(config, &mut tools);
        tools.names()
    }

    #[test]
    fn the_ssh_tools_are_offered_once_a_host_is_configured() {
        let mut config = Config::default();
        config.ssh.use_ssh_config = false;
        assert!(registered(&config).is_empty(), "no host, no tools");
        config.ssh.hosts.insert("web".into(), HostConfig::default());
        assert_eq!(registered(&config), ["ssh_download", "ssh_exec", "ssh_upload"]);
        config.ssh.enabled = false;
        assert!(registered(&config).is_empty(), "`enabled = false` turns them off");
    }
}
