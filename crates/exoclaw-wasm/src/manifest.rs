//! A plugin's `plugin.toml`: who it is, which kind, and the [`Capabilities`] it asks for —
//! parsed, checked, and told in plain words before anything is granted.

use crate::error::PluginError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The file a plugin is described by.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Most characters in a plugin's name.
const MAX_NAME_CHARS: usize = 48;
/// The linear memory a plugin gets when it asks for none, in MiB.
const DEFAULT_MEMORY_MIB: u32 = 16;
/// The most linear memory a plugin may ask for, in MiB.
const MAX_MEMORY_MIB: u32 = 1024;
/// How long one call may run when the plugin says nothing, in milliseconds.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The longest a call may be allowed to run, in milliseconds.
const MAX_TIMEOUT_MS: u64 = 300_000;

/// What a plugin is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Tools agents call (`describe`, `call`).
    Tool,
    /// A chat platform's adapter (`describe`, `parse_incoming`, `format_outgoing`).
    Channel,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tool => "tool",
            Self::Channel => "channel",
        })
    }
}

/// A folder a plugin sees (a WASI preopen).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathGrant {
    /// The folder on this machine: relative to the plugin's own folder, `~/…`, or absolute.
    pub host: String,
    /// Where the plugin sees it (absolute, such as `/data`).
    pub guest: String,
    /// Whether it may write there; read-only otherwise.
    #[serde(default)]
    pub write: bool,
}

impl PathGrant {
    /// The folder on this machine, for a plugin installed in `plugin_dir`, with `home` for `~`.
    pub fn resolve(&self, plugin_dir: &Path, home: Option<&Path>) -> PathBuf {
        if let Some(rest) = self.host.strip_prefix("~/")
            && let Some(home) = home
        {
            return home.join(rest);
        }
        if self.host == "~"
            && let Some(home) = home
        {
            return home.to_path_buf();
        }
        let host = Path::new(&self.host);
        if host.is_absolute() { host.to_path_buf() } else { plugin_dir.join(host) }
    }

    /// Whether the folder is inside the plugin's own folder (relative `host`).
    pub fn is_own(&self) -> bool {
        !self.host.starts_with('~') && !Path::new(&self.host).is_absolute()
    }
}

/// What a plugin may reach and spend. The same type is what a user granted ([`crate::Grant`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Hosts it may send HTTP requests to (globs such as `*.example.org`); none: no network.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Folders it sees; none: no files.
    #[serde(default)]
    pub paths: Vec<PathGrant>,
    /// Its linear memory cap, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// How long one call may run, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How many instructions one call may run (WebAssembly fuel); `None`: no count, only the time
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// The configuration keys it reads, from `[plugins.NAME.config]`.
    #[serde(default)]
    pub config: Vec<String>,
}

fn default_memory_mib() -> u32 {
    DEFAULT_MEMORY_MIB
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            paths: Vec::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            fuel: None,
            config: Vec::new(),
        }
    }
}

impl Capabilities {
    /// What these capabilities let a plugin do, one line each, in plain words.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match self.hosts.as_slice() {
            [] => lines.push("no network access".to_owned()),
            hosts if hosts.iter().any(|h| h == "*") => {
                lines.push("send HTTP requests to ANY host on the internet".to_owned())
            }
            hosts => lines.push(format!("send HTTP requests to {}", hosts.join(", "))),
        }
        if self.paths.is_empty() {
            lines.push("no files".to_owned());
        }
        for path in &self.paths {
            let access = if path.write { "read and write" } else { "read" };
            let whose = if path.is_own() { " (in its own folder)" } else { "" };
            lines.push(format!("{access} the folder {}{whose}, seen as {}", path.host, path.guest));
        }
        lines.push(format!("use up to {} MiB of memory", self.memory_mib));
        let time = format!("run up to {} per call", millis(self.timeout_ms));
        lines.push(match self.fuel {
            Some(fuel) => format!("{time}, and at most {fuel} instructions"),
            None => time,
        });
        if !self.config.is_empty() {
            lines
                .push(format!("read the settings {} from its [plugins.NAME.config]", self.config.join(", ")));
        }
        lines
    }

    /// What `self` asks for beyond `granted`, one plain line each; empty when it is all granted.
    pub fn beyond(&self, granted: &Capabilities) -> Vec<Excess> {
        let mut excess = Vec::new();
        for host in &self.hosts {
            if !granted.hosts.contains(host) {
                excess.push(Excess::Host(host.clone()));
            }
        }
        for path in &self.paths {
            let covered = granted
                .paths
                .iter()
                .any(|g| g.host == path.host && g.guest == path.guest && (g.write || !path.write));
            if !covered {
                excess.push(Excess::Path(path.clone()));
            }
        }
        if self.memory_mib > granted.memory_mib {
            excess.push(Excess::Memory(self.memory_mib));
        }
        if self.timeout_ms > granted.timeout_ms {
            excess.push(Excess::Timeout(self.timeout_ms));
        }
        match (self.fuel, granted.fuel) {
            (None, Some(_)) => excess.push(Excess::Fuel(None)),
            (Some(asked), Some(limit)) if asked > limit => excess.push(Excess::Fuel(Some(asked))),
            _ => {}
        }
        for key in &self.config {
            if !granted.config.contains(key) {
                excess.push(Excess::Config(key.clone()));
            }
        }
        excess
    }

    fn check(&self) -> Result<(), String> {
        for host in &self.hosts {
            let ok = !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_'));
            if !ok {
                return Err(format!(
                    "capabilities.hosts: `{host}` is not a host name; write the name alone (such as \
                     `api.example.org` or `*.example.org`), without scheme, port or path"
                ));
            }
        }
        for path in &self.paths {
            if !path.guest.starts_with('/') {
                return Err(format!(
                    "capabilities.paths: the guest path `{}` must be absolute (such as `/data`)",
                    path.guest
                ));
            }
            if path.host.is_empty() || Path::new(&path.host).components().any(|c| c.as_os_str() == "..") {
                return Err(format!(
                    "capabilities.paths: the host path `{}` must be a folder without `..`",
                    path.host
                ));
            }
        }
        if !(1..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(format!("capabilities.memory_mib must be between 1 and {MAX_MEMORY_MIB}"));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(format!("capabilities.timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"));
        }
        if self.fuel == Some(0) {
            return Err("capabilities.fuel must be more than 0 (leave it out for no count)".to_owned());
        }
        for key in &self.config {
            if key.is_empty()
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(format!(
                    "capabilities.config: `{key}` is not a key (letters, digits, `_`, `-`, `.`)"
                ));
            }
        }
        Ok(())
    }
}

/// One thing a plugin asks for that was not granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Excess {
    /// A host.
    Host(String),
    /// A folder, or write access to it.
    Path(PathGrant),
    /// More memory (MiB).
    Memory(u32),
    /// A longer time limit (ms).
    Timeout(u64),
    /// More fuel, or none counted (`None`).
    Fuel(Option<u64>),
    /// A configuration key.
    Config(String),
}

impl Excess {
    /// The `exoclaw plugin grant` option that grants it.
    pub fn grant_option(&self) -> String {
        match self {
            Self::Host(host) => format!("--host {host}"),
            Self::Path(path) => {
                let write = if path.write { ":rw" } else { "" };
                format!("--path {}:{}{write}", path.host, path.guest)
            }
            Self::Memory(mib) => format!("--memory-mib {mib}"),
            Self::Timeout(ms) => format!("--timeout-ms {ms}"),
            Self::Fuel(Some(fuel)) => format!("--fuel {fuel}"),
            Self::Fuel(None) => "--no-fuel-limit".to_owned(),
            Self::Config(key) => format!("--setting {key}"),
        }
    }
}

impl fmt::Display for Excess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host(host) => write!(f, "HTTP requests to {host}"),
            Self::Path(path) if path.write => write!(f, "write access to {} (as {})", path.host, path.guest),
            Self::Path(path) => write!(f, "read access to {} (as {})", path.host, path.guest),
            Self::Memory(mib) => write!(f, "{mib} MiB of memory"),
            Self::Timeout(ms) => write!(f, "{} per call", millis(*ms)),
            Self::Fuel(Some(fuel)) => write!(f, "{fuel} instructions per call"),
            Self::Fuel(None) => f.write_str("no instruction limit"),
            Self::Config(key) => write!(f, "the setting {key}"),
        }
    }
}

fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{} s", ms / 1000) } else { format!("{ms} ms") }
}

/// A plugin's `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Its name: lower-case letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Its version, as its author writes it.
    pub version: String,
    /// Tool or channel.
    pub kind: Kind,
    /// What it does, in a line.
    #[serde(default)]
    pub description: String,
    /// Its module, beside the manifest; `NAME.wasm` when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<String>,
    /// What it asks to reach and spend.
    #[serde(default)]
    pub capabilities: Capabilities,
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, PluginError> {
        let text = std::fs::read_to_string(path).map_err(|e| PluginError::io(path, &e))?;
        Self::parse(&text).map_err(|problem| PluginError::Manifest { path: path.to_owned(), problem })
    }

    /// Parses and checks a manifest's text; the error says what is wrong, with the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let line = text.get(..span.start).map_or(0, |before| before.matches('\n').count()) + 1;
                format!("line {line}: ")
            });
            format!("{}{}", at.unwrap_or_default(), e.message())
        })?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.chars().count() <= MAX_NAME_CHARS
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(format!(
                "name: `{}` is not a plugin name; use lower-case letters, digits and `-`, starting with a \
                 letter, at most {MAX_NAME_CHARS} characters",
                self.name
            ));
        }
        let version_ok = !self.version.is_empty()
            && self.version.len() <= 32
            && self.version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
        if !version_ok {
            return Err(format!("version: `{}` is not a version (such as `0.2.0`)", self.version));
        }
        if let Some(wasm) = &self.wasm {
            let file = Path::new(wasm);
            if file.components().count() != 1 || !wasm.ends_with(".wasm") {
                return Err(format!("wasm: `{wasm}` must be a `.wasm` file name beside plugin.toml"));
            }
        }
        self.capabilities.check()
    }

    /// The module's file name.
    pub fn wasm_file(&self) -> String {
        self.wasm.clone().unwrap_or_else(|| format!("{}.wasm", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEATHER: &str = r#"
        name = "weather"
        version = "0.2.0"
        kind = "tool"
        description = "Current weather"
        [capabilities]
        hosts = ["api.open-meteo.com"]
        memory_mib = 8
        config = ["units"]
        [[capabilities.paths]]
        host = "data"
        guest = "/data"
        write = true
    "#;

    #[test]
    fn a_manifest_reads_with_defaults_for_what_it_leaves_out() {
        let manifest = Manifest::parse(WEATHER).unwrap();
        assert_eq!(manifest.kind, Kind::Tool);
        assert_eq!(manifest.wasm_file(), "weather.wasm");
        assert_eq!(manifest.capabilities.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(manifest.capabilities.fuel, None);
    }

    #[test]
    fn capabilities_are_told_in_plain_words() {
        let lines = Manifest::parse(WEATHER).unwrap().capabilities.describe();
        assert_eq!(
            lines,
            [
                "send HTTP requests to api.open-meteo.com",
                "read and write the folder data (in its own folder), seen as /data",
                "use up to 8 MiB of memory",
                "run up to 5 s per call",
                "read the settings units from its [plugins.NAME.config]",
            ]
        );
        let everything = Capabilities { hosts: vec!["*".into()], ..Capabilities::default() };
        assert!(everything.describe()[0].contains("ANY host"));
    }

    #[test]
    fn bad_manifests_say_what_and_where() {
        let cases = [
            ("name = \"Bad Name\"\nversion = \"1\"\nkind = \"tool\"", "not a plugin name"),
            ("name = \"x\"\nversion = \"1\"\nkind = \"gadget\"", "line 3"),
            ("name = \"x\"\nversion = \"1\"\nkind = \"tool\"\nwasm = \"../x.wasm\"", "beside plugin.toml"),
            (
                "name = \"x\"\nversion = \"1\"\nkind = \"tool\"\n[capabilities]\nhosts = [\"https://a.b/c\"]",
                "without scheme",
            ),
            (
                "name = \"x\"\nversion = \"1\"\nkind = \"tool\"\n[capabilities]\nmemory_mib = 5000",
                "between 1 and 1024",
            ),
            (
                "name = \"x\"\nversion = \"1\"\nkind = \"tool\"\n[[capabilities.paths]]\nhost = \"../up\"\nguest = \"/u\"",
                "without `..`",
            ),
            ("name = \"x\"\nversion = \"1\"\nkind = \"tool\"\nsecret = true", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = Manifest::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn asking_beyond_a_grant_names_each_excess_and_its_grant_option() {
        let granted = Manifest::parse(WEATHER).unwrap().capabilities;
        assert!(granted.beyond(&granted).is_empty());
        let mut asked = granted.clone();
        asked.hosts.push("evil.example".into());
        asked.memory_mib = 64;
        asked.paths[0].guest = "/elsewhere".into();
        asked.config.push("token".into());
        let excess = asked.beyond(&granted);
        let options: Vec<String> = excess.iter().map(Excess::grant_option).collect();
        assert_eq!(
            options,
            ["--host evil.example", "--path data:/elsewhere:rw", "--memory-mib 64", "--setting token"]
        );
        assert_eq!(excess[0].to_string(), "HTTP requests to evil.example");

        // Less than granted is fine; write where only read was granted is not.
        let mut read_only = granted.clone();
        read_only.paths[0].write = false;
        assert!(read_only.beyond(&granted).is_empty());
        assert_eq!(granted.beyond(&read_only).len(), 1);
        // A grant with a fuel limit does not cover a plugin that wants none.
        let limited = Capabilities { fuel: Some(1000), ..granted.clone() };
        assert_eq!(granted.beyond(&limited), [Excess::Fuel(None)]);
    }
}
