//! The installed plugins: one folder each under `~/.exoclaw/plugins/`, holding the manifest, the
//! module, what the user granted (`grant.toml`) and the plugin's own data folders.

use crate::error::PluginError;
use crate::manifest::{Capabilities, Excess, MANIFEST_FILE, Manifest};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file in a plugin's folder that records what the user granted it.
pub const GRANT_FILE: &str = "grant.toml";

/// What the user granted a plugin, as `grant.toml` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    /// The plugin's version when the grant was last changed.
    version: String,
    /// The capabilities granted.
    granted: Capabilities,
}

/// An installed plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Its folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// What the user granted it.
    pub grant: Capabilities,
}

impl Installed {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Its module.
    pub fn wasm_path(&self) -> PathBuf {
        self.dir.join(self.manifest.wasm_file())
    }

    /// What its manifest asks for beyond its grant; empty when it may be loaded.
    pub fn excess(&self) -> Vec<Excess> {
        self.manifest.capabilities.beyond(&self.grant)
    }

    /// Refuses a plugin that asks for more than it was granted.
    pub fn check_granted(&self) -> Result<(), PluginError> {
        let excess = self.excess();
        match excess.is_empty() {
            true => Ok(()),
            false => Err(PluginError::NotGranted { plugin: self.name().to_owned(), excess }),
        }
    }
}

/// The folder plugins are installed in.
#[derive(Debug, Clone)]
pub struct PluginDir {
    root: PathBuf,
}

impl PluginDir {
    /// Plugins installed under `root` (`~/.exoclaw/plugins`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Installs the plugin described by the manifest at `manifest_path` (its module beside it),
    /// granting it `grant`; a plugin of the same name is replaced, its data folders kept. The
    /// files are written to a temporary folder first, so a failure leaves the old one whole.
    pub fn install(&self, manifest_path: &Path, grant: Capabilities) -> Result<Installed, PluginError> {
        let manifest = Manifest::load(manifest_path)?;
        let source = manifest_path.parent().unwrap_or(Path::new("."));
        let wasm_source = source.join(manifest.wasm_file());
        let wasm = std::fs::read(&wasm_source).map_err(|e| PluginError::io(&wasm_source, &e))?;
        let dir = self.root.join(&manifest.name);
        let staging = self.root.join(format!(".{}.installing", manifest.name));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| PluginError::io(&staging, &e))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = staging.join(name);
            std::fs::write(&path, bytes).map_err(|e| PluginError::io(&path, &e))
        };
        let manifest_text = std::fs::read(manifest_path).map_err(|e| PluginError::io(manifest_path, &e))?;
        write(MANIFEST_FILE, &manifest_text)?;
        write(&manifest.wasm_file(), &wasm)?;
        write(GRANT_FILE, grant_text(&manifest.version, &grant).as_bytes())?;
        // Keep what the plugin stored in its own folders across an upgrade.
        if dir.is_dir() {
            for path in manifest.capabilities.paths.iter().filter(|p| p.is_own()) {
                let (old, new) = (dir.join(&path.host), staging.join(&path.host));
                if old.is_dir() && !new.exists() {
                    if let Some(parent) = new.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| PluginError::io(parent, &e))?;
                    }
                    std::fs::rename(&old, &new).map_err(|e| PluginError::io(&old, &e))?;
                }
            }
            std::fs::remove_dir_all(&dir).map_err(|e| PluginError::io(&dir, &e))?;
        }
        for path in manifest.capabilities.paths.iter().filter(|p| p.is_own()) {
            let own = staging.join(&path.host);
            std::fs::create_dir_all(&own).map_err(|e| PluginError::io(&own, &e))?;
        }
        std::fs::rename(&staging, &dir).map_err(|e| PluginError::io(&dir, &e))?;
        Ok(Installed { dir, manifest, grant })
    }

    /// The installed plugin `name`.
    pub fn get(&self, name: &str) -> Result<Installed, PluginError> {
        let dir = self.root.join(name);
        let valid_name = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
        if !valid_name || !dir.join(MANIFEST_FILE).is_file() {
            let installed = self.names();
            let installed = if installed.is_empty() { "none".to_owned() } else { installed.join(", ") };
            return Err(PluginError::NotInstalled { name: name.to_owned(), installed });
        }
        let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
        let grant_path = dir.join(GRANT_FILE);
        let grant = match std::fs::read_to_string(&grant_path) {
            Ok(text) => {
                toml::from_str::<GrantFile>(&text)
                    .map_err(|e| PluginError::Manifest {
                        path: grant_path.clone(),
                        problem: e.message().to_owned(),
                    })?
                    .granted
            }
            // No grant file: nothing granted, so any capability is refused with what to grant.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Capabilities { memory_mib: 0, timeout_ms: 0, fuel: Some(0), ..Capabilities::default() }
            }
            Err(e) => return Err(PluginError::io(&grant_path, &e)),
        };
        Ok(Installed { dir, manifest, grant })
    }

    /// The names of the installed plugins, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().join(MANIFEST_FILE).is_file())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Every installed plugin, or why it cannot be read, in name order.
    pub fn list(&self) -> Vec<(String, Result<Installed, PluginError>)> {
        self.names().into_iter().map(|name| (name.clone(), self.get(&name))).collect()
    }

    /// Replaces what `name` is granted.
    pub fn set_grant(&self, name: &str, grant: Capabilities) -> Result<Installed, PluginError> {
        let mut installed = self.get(name)?;
        let path = installed.dir.join(GRANT_FILE);
        let staging = installed.dir.join(format!(".{GRANT_FILE}.new"));
        std::fs::write(&staging, grant_text(&installed.manifest.version, &grant))
            .map_err(|e| PluginError::io(&staging, &e))?;
        std::fs::rename(&staging, &path).map_err(|e| PluginError::io(&path, &e))?;
        installed.grant = grant;
        Ok(installed)
    }

    /// Removes `name`, its data folders included.
    pub fn remove(&self, name: &str) -> Result<(), PluginError> {
        let installed = self.get(name)?;
        std::fs::remove_dir_all(&installed.dir).map_err(|e| PluginError::io(&installed.dir, &e))
    }

    /// Where compiled modules are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(".cache")
    }
}

fn grant_text(version: &str, granted: &Capabilities) -> String {
    let file = GrantFile { version: version.to_owned(), granted: granted.clone() };
    let body = toml::to_string(&file).unwrap_or_default();
    format!(
        "# What you granted this plugin. Change it with `exoclaw plugin grant` / `exoclaw plugin revoke`;\n\
         # a plugin whose plugin.toml asks for more than this is not loaded.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, extra: &str) -> PathBuf {
        let manifest = dir.join(MANIFEST_FILE);
        std::fs::write(
            &manifest,
            format!(
                "name = \"notes\"\nversion = \"1.0.0\"\nkind = \"tool\"\n[capabilities]\n{extra}\n\
                 [[capabilities.paths]]\nhost = \"data\"\nguest = \"/data\"\nwrite = true\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("notes.wasm"), b"\0asm\x01\0\0\0").unwrap();
        manifest
    }

    #[test]
    fn install_copies_grants_and_an_upgrade_keeps_the_plugins_data() {
        let (src, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plugins = PluginDir::new(home.path());
        let manifest = source(src.path(), "");
        let asked = Manifest::load(&manifest).unwrap().capabilities;
        let installed = plugins.install(&manifest, asked.clone()).unwrap();
        assert!(installed.excess().is_empty());
        std::fs::write(installed.dir.join("data/kept.txt"), "mine").unwrap();

        // Version 2 asks for a host: installed, but refused until granted.
        let manifest = source(src.path(), "hosts = [\"api.example.org\"]");
        let upgraded = plugins.install(&manifest, asked).unwrap();
        assert_eq!(std::fs::read_to_string(upgraded.dir.join("data/kept.txt")).unwrap(), "mine");
        let refused = plugins.get("notes").unwrap().check_granted().unwrap_err().to_string();
        assert!(refused.contains("HTTP requests to api.example.org"), "{refused}");
        assert!(refused.contains("exoclaw plugin grant notes --host api.example.org"), "{refused}");

        let mut grant = upgraded.grant.clone();
        grant.hosts.push("api.example.org".into());
        plugins.set_grant("notes", grant).unwrap();
        plugins.get("notes").unwrap().check_granted().unwrap();
        assert_eq!(plugins.names(), ["notes"]);

        plugins.remove("notes").unwrap();
        let missing = plugins.get("notes").unwrap_err().to_string();
        assert!(missing.contains("no plugin `notes` is installed (installed: none)"), "{missing}");
    }

    #[test]
    fn a_plugin_without_a_grant_file_is_granted_nothing() {
        let (src, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plugins = PluginDir::new(home.path());
        let installed = plugins.install(&source(src.path(), ""), Capabilities::default()).unwrap();
        std::fs::remove_file(installed.dir.join(GRANT_FILE)).unwrap();
        let excess = plugins.get("notes").unwrap().excess();
        assert!(excess.len() >= 3, "{excess:?}");
        assert!(plugins.get("../etc").is_err());
    }
}
