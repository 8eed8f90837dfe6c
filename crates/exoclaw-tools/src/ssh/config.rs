//! Which hosts the SSH tools may reach and how: the `[ssh]` settings (hosts by alias, their
//! address, user, keys, password variable and pinned host key) and the lookup of an alias in
//! `~/.ssh/config`.
//!
//! `~/.ssh/config` is read with a small parser of our own rather than `russh-config`: that crate
//! splits `Key Value` on one space only (a tab, or `Key=Value`, is silently ignored) and refuses a
//! file with global options above the first `Host` line, both common in real files. We read only
//! what the tools use: `Host` (patterns with `*`, `?` and `!`), `HostName`, `User`, `Port`,
//! `IdentityFile`; as OpenSSH does, the first value found for a key wins.

use super::SshError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[ssh]` section: the hosts the SSH tools may reach and the files they trust host keys from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfig {
    /// Whether the SSH tools are offered at all (default `true`; they are only registered when at
    /// least one host is known).
    pub enabled: bool,
    /// Also offer the hosts named in `~/.ssh/config` (its `Host` lines without wildcards), with the
    /// settings found there (default `true`).
    pub use_ssh_config: bool,
    /// Also try the keys of ssh-agent (`$SSH_AUTH_SOCK`), after the key files (default `true`).
    pub use_agent: bool,
    /// `~/.ssh/config`, or another file read the same way.
    pub ssh_config_file: Option<PathBuf>,
    /// Known-hosts files read (never written) for host keys; default `~/.ssh/known_hosts`.
    pub known_hosts: Option<Vec<PathBuf>>,
    /// Seconds before `ssh_exec` gives up on a command when the call names none (default 120).
    pub timeout_secs: u64,
    /// The most seconds a call may ask for (default 600).
    pub max_timeout_secs: u64,
    /// Seconds allowed to connect and authenticate (default 20).
    pub connect_timeout_secs: u64,
    /// Bytes of command output kept, head and tail (default 30 KiB, as `shell`).
    pub output_limit: usize,
    /// Hosts by the alias the model uses.
    pub hosts: BTreeMap<String, HostConfig>,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            use_ssh_config: true,
            ssh_config_file: None,
            use_agent: true,
            known_hosts: None,
            timeout_secs: 120,
            max_timeout_secs: 600,
            connect_timeout_secs: 20,
            output_limit: 30 * 1024,
            hosts: BTreeMap::new(),
        }
    }
}

/// One `[ssh.hosts.ALIAS]` table. Anything left out comes from `~/.ssh/config` (when it names
/// the alias), then from the defaults (the alias as the address, port 22, the current user, the
/// usual key files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// The address (name or IP) to connect to; default: the alias.
    pub host: Option<String>,
    /// The port; default 22.
    pub port: Option<u16>,
    /// The user to log in as; default: the current user.
    pub user: Option<String>,
    /// Private key files to try, in order (`~` is expanded).
    pub identity_files: Vec<PathBuf>,
    /// The name of an environment variable holding the password, tried after the keys. The
    /// password itself never goes in the configuration, a log line or an error.
    pub password_env: Option<String>,
    /// The host's public key, pinned (`ssh-ed25519 AAAA…`): when set, it is the only key
    /// accepted for this host, whatever the known-hosts files say.
    pub host_key: Option<String>,
}

/// Everything needed to reach one host, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The alias the model named.
    pub alias: String,
    /// The address connected to.
    pub hostname: String,
    /// The port connected to.
    pub port: u16,
    /// The user logged in as.
    pub user: String,
    /// Key files to try, in order; missing ones are skipped.
    pub identity_files: Vec<PathBuf>,
    /// The environment variable holding the password, if any.
    pub password_env: Option<String>,
    /// The pinned host key, if any.
    pub host_key: Option<String>,
}

impl Target {
    /// `host` for port 22, `[host]:port` otherwise, as known-hosts files write it.
    pub fn known_hosts_name(&self) -> String {
        known_hosts_name(&self.hostname, self.port)
    }
}

/// `host` for port 22, `[host]:port` otherwise, as known-hosts files write it.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

impl SshConfig {
    /// The command timeout when a call names none.
    pub fn default_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// The longest timeout a call may ask for.
    pub fn max_timeout(&self) -> Duration {
        Duration::from_secs(self.max_timeout_secs.max(1))
    }

    /// The time allowed to connect and log in.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    /// The `~/.ssh/config` text, when it is used and exists.
    fn ssh_config_text(&self) -> Option<String> {
        if !self.use_ssh_config {
            return None;
        }
        let path = match &self.ssh_config_file {
            Some(path) => expand_home(path),
            None => home()?.join(".ssh/config"),
        };
        std::fs::read_to_string(path).ok()
    }

    /// The known-hosts files to read, `~` expanded.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        match &self.known_hosts {
            Some(files) => files.iter().map(|f| expand_home(f)).collect(),
            None => home().map(|h| vec![h.join(".ssh/known_hosts")]).unwrap_or_default(),
        }
    }

    /// Every alias the tools may use: the configured ones and the plain `Host` names of
    /// `~/.ssh/config`, sorted, without duplicates.
    pub fn aliases(&self) -> Vec<String> {
        let mut aliases: Vec<String> = self.hosts.keys().cloned().collect();
        if let Some(text) = self.ssh_config_text() {
            aliases.extend(SshConfigFile::parse(&text).plain_hosts());
        }
        aliases.sort();
        aliases.dedup();
        aliases
    }

    /// Resolves `alias` to a [`Target`], or refuses a host that is neither configured nor named in
    /// `~/.ssh/config`.
    pub fn target(&self, alias: &str) -> Result<Target, SshError> {
        let file = self.ssh_config_text().map(|t| SshConfigFile::parse(&t));
        let from_file = file.as_ref().filter(|f| f.plain_hosts().iter().any(|h| h == alias));
        let configured = self.hosts.get(alias);
        if configured.is_none() && from_file.is_none() {
            return Err(SshError::UnknownAlias { alias: alias.to_owned(), known: self.aliases() });
        }
        let found = file.map(|f| f.lookup(alias)).unwrap_or_default();
        let configured = configured.cloned().unwrap_or_default();
        let mut identity_files: Vec<PathBuf> =
            configured.identity_files.iter().chain(&found.identity_files).map(|p| expand_home(p)).collect();
        if identity_files.is_empty()
            && let Some(home) = home()
        {
            identity_files =
                ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|f| home.join(".ssh").join(f)).collect();
        }
        Ok(Target {
            alias: alias.to_owned(),
            hostname: configured.host.or(found.hostname).unwrap_or_else(|| alias.to_owned()),
            port: configured.port.or(found.port).unwrap_or(22),
            user: configured.user.or(found.user).unwrap_or_else(current_user),
            identity_files,
            password_env: configured.password_env,
            host_key: configured.host_key,
        })
    }
}

/// What `~/.ssh/config` says about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEntry {
    /// `HostName`.
    pub hostname: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// Every `IdentityFile`, in order.
    pub identity_files: Vec<PathBuf>,
}

/// A parsed `ssh_config` file: its `Host` blocks in order (options above the first `Host` line
/// apply to every host, as a `Host *` block would).
#[derive(Debug, Clone, Default)]
pub struct SshConfigFile {
    blocks: Vec<Block>,
}

/// A `Host` line's patterns and the `(key, value)` options under it (keys lower-cased).
type Block = (Vec<String>, Vec<(String, String)>);

impl SshConfigFile {
    /// Parses the text of an `ssh_config` file. Lines it does not understand are kept and ignored.
    pub fn parse(text: &str) -> Self {
        let mut blocks = vec![(vec!["*".to_owned()], Vec::new())];
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `Key Value`, `Key=Value` or `Key = Value`.
            let split = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
            let (key, rest) = line.split_at(split);
            let value = rest.trim_start().strip_prefix('=').unwrap_or(rest).trim();
            let key = key.to_ascii_lowercase();
            if key == "host" {
                blocks.push((value.split_whitespace().map(str::to_owned).collect(), Vec::new()));
            } else if key == "match" {
                // Match blocks need the full evaluation rules; their options apply to nothing here.
                blocks.push((Vec::new(), Vec::new()));
            } else if let Some((_, options)) = blocks.last_mut() {
                options.push((key, unquote(value).to_owned()));
            }
        }
        Self { blocks }
    }

    /// The names on `Host` lines that are plain host names (no wildcard, no negation).
    pub fn plain_hosts(&self) -> Vec<String> {
        self.blocks
            .iter()
            .flat_map(|(patterns, _)| patterns)
            .filter(|p| !p.contains(['*', '?', '!']))
            .cloned()
            .collect()
    }

    /// The settings for `alias`: for each key, the first value of the blocks that match it.
    pub fn lookup(&self, alias: &str) -> HostEntry {
        let mut entry = HostEntry::default();
        for (patterns, options) in &self.blocks {
            if !host_matches(patterns, alias) {
                continue;
            }
            for (key, value) in options {
                match key.as_str() {
                    "hostname" if entry.hostname.is_none() => {
                        entry.hostname = Some(value.replace("%h", alias))
                    }
                    "user" if entry.user.is_none() => entry.user = Some(value.clone()),
                    "port" if entry.port.is_none() => entry.port = value.parse().ok(),
                    "identityfile" => entry.identity_files.push(PathBuf::from(value)),
                    _ => {}
                }
            }
        }
        entry
    }
}

/// Whether `host` matches a `Host` line's patterns: one positive match and no negated one.
fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if super::wildcard(negated, host) => return false,
            Some(_) => {}
            None => matched |= super::wildcard(pattern, host),
        }
    }
    matched
}

fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

/// The current user's home folder.
pub(crate) fn home() -> Option<PathBuf> {
    std::env::home_dir()
}

/// `path` with a leading `~` replaced by the home folder.
pub(crate) fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), home()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

fn current_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# global options before the first Host line apply to every host
ServerAliveInterval 30
Host web web-* !web-old
\tHostName\t10.0.0.5
  User=deploy
  Port = 2222
  IdentityFile \"~/.ssh/web key\"
Host *
  User nobody
  IdentityFile ~/.ssh/id_ed25519
";

    #[test]
    fn ssh_config_reads_tabs_equals_and_quotes() {
        let entry = SshConfigFile::parse(FILE).lookup("web");
        assert_eq!(entry.hostname.as_deref(), Some("10.0.0.5"));
        assert_eq!(entry.user.as_deref(), Some("deploy"));
        assert_eq!(entry.port, Some(2222));
        assert_eq!(
            entry.identity_files,
            [PathBuf::from("~/.ssh/web key"), PathBuf::from("~/.ssh/id_ed25519")]
        );
    }

    #[test]
    fn ssh_config_first_value_wins_and_negation_excludes() {
        let file = SshConfigFile::parse(FILE);
        assert_eq!(file.lookup("web-2").user.as_deref(), Some("deploy"));
        assert_eq!(file.lookup("web-old").user.as_deref(), Some("nobody"));
        assert_eq!(file.lookup("web-old").hostname, None);
    }

    #[test]
    fn only_plain_host_names_are_offered() {
        assert_eq!(SshConfigFile::parse(FILE).plain_hosts(), ["web"]);
    }

    #[test]
    fn an_alias_nobody_configured_is_refused_with_the_known_ones() {
        let mut config = SshConfig { use_ssh_config: false, ..SshConfig::default() };
        config.hosts.insert("box".into(), HostConfig::default());
        let err = config.target("elsewhere").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("`elsewhere`") && err.contains("box"), "{err}");
    }

    #[test]
    fn configured_settings_win_over_defaults() {
        let mut config = SshConfig { use_ssh_config: false, ..SshConfig::default() };
        let host = HostConfig {
            host: Some("127.0.0.1".into()),
            port: Some(2200),
            user: Some("me".into()),
            ..HostConfig::default()
        };
        config.hosts.insert("box".into(), host);
        let target = config.target("box").ok();
        let target = target.as_ref();
        assert_eq!(
            target.map(|t| (t.hostname.as_str(), t.port, t.user.as_str())),
            Some(("127.0.0.1", 2200, "me"))
        );
        assert_eq!(target.map(Target::known_hosts_name).as_deref(), Some("[127.0.0.1]:2200"));
    }
}
