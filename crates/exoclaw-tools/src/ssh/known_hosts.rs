//! Host-key verification: is the key a server showed the one recorded for it?
//!
//! Keys are looked up in OpenSSH `known_hosts` files (`~/.ssh/known_hosts`, read only) and in
//! exoclaw's own `~/.exoclaw/known_hosts` (where `exoclaw ssh trust HOST` appends), or taken from a
//! key pinned in the configuration, which then is the only one accepted. An unknown host is refused
//! with how to accept it; a host whose key differs from the recorded one is always refused, naming
//! both fingerprints and the line to remove. `@revoked` lines refuse their key; `@cert-authority`
//! lines are skipped (host certificates are not supported). Hashed names (`|1|salt|hash`), patterns
//! (`*`, `?`, `!`) and `[host]:port` are understood.
//!
//! russh's own `known_hosts` helpers are not used: they split lines on single spaces, do not know
//! markers, and fail the whole check on one line with a key type they cannot parse.

use super::config::known_hosts_name;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use russh::keys::{HashAlg, PublicKey};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What the records say about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is recorded for this host (or is the pinned one).
    Trusted,
    /// Nothing is recorded for this host with this key's type.
    Unknown,
    /// A different key of the same type is recorded: possibly a man in the middle.
    Changed {
        /// Where the recorded key is (`None` for a key pinned in the configuration).
        record: Option<(PathBuf, usize)>,
        /// The recorded key's SHA-256 fingerprint.
        recorded: String,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// Where it is marked.
        record: (PathBuf, usize),
    },
}

/// The SHA-256 fingerprint of `key`, as `ssh-keygen -l` shows it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Judges `key`, shown by `host:port`, against `pinned` (a key from the configuration, which wins
/// when given) or the records in `files`. A missing or unreadable file holds no records.
pub fn verify(
    host: &str,
    port: u16,
    key: &PublicKey,
    pinned: Option<&PublicKey>,
    files: &[PathBuf],
) -> Verdict {
    if let Some(pinned) = pinned {
        return if pinned.key_data() == key.key_data() {
            Verdict::Trusted
        } else {
            Verdict::Changed { record: None, recorded: fingerprint(pinned) }
        };
    }
    let name = known_hosts_name(host, port);
    let mut changed = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = Entry::parse(line) else { continue };
            if !entry.matches(&name) {
                continue;
            }
            let record = (file.clone(), index + 1);
            let Some(recorded) = entry.key() else { continue };
            let same = recorded.key_data() == key.key_data();
            match entry.marker {
                Marker::Revoked if same => return Verdict::Revoked { record },
                Marker::Revoked | Marker::CertAuthority => {}
                Marker::None if same => return Verdict::Trusted,
                Marker::None => {
                    if changed.is_none() && recorded.algorithm() == key.algorithm() {
                        changed =
                            Some(Verdict::Changed { record: Some(record), recorded: fingerprint(&recorded) });
                    }
                }
            }
        }
    }
    changed.unwrap_or(Verdict::Unknown)
}

/// Appends `host:port key` to `file` (creating it and its folder), the way `ssh` records a host.
pub fn append(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let openssh = key.to_openssh().map_err(std::io::Error::other)?;
    let needs_newline = std::fs::read(file).is_ok_and(|bytes| bytes.last().is_some_and(|b| *b != b'\n'));
    let mut out = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    if needs_newline {
        out.write_all(b"\n")?;
    }
    writeln!(out, "{} {openssh}", known_hosts_name(host, port))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One line of a `known_hosts` file.
struct Entry<'a> {
    marker: Marker,
    hosts: &'a str,
    key_type: &'a str,
    key: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = fields.next()?;
        }
        Some(Self { marker, hosts: first, key_type: fields.next()?, key: fields.next()? })
    }

    /// The recorded key; `None` for a type or encoding this build cannot read.
    fn key(&self) -> Option<PublicKey> {
        PublicKey::from_openssh(&format!("{} {}", self.key_type, self.key)).ok()
    }

    /// Whether the line's host field names `name` (`host` or `[host]:port`).
    fn matches(&self, name: &str) -> bool {
        let mut matched = false;
        for pattern in self.hosts.split(',') {
            if let Some(hashed) = pattern.strip_prefix("|1|") {
                matched |= hashed_matches(hashed, name);
            } else if let Some(negated) = pattern.strip_prefix('!') {
                if super::wildcard(negated, name) {
                    return false;
                }
            } else {
                matched |= super::wildcard(pattern, name);
            }
        }
        matched
    }
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed with the salt.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else { return false };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G2sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(text: &str) -> Option<PublicKey> {
        PublicKey::from_openssh(text).ok()
    }

    fn file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("known_hosts");
        let _ = std::fs::write(&path, text);
        path
    }

    fn judge(text: &str, host: &str, port: u16, shown: &str) -> Option<Verdict> {
        let dir = tempfile::tempdir().ok()?;
        let path = file(dir.path(), text);
        Some(verify(host, port, &key(shown)?, None, &[path]))
    }

    #[test]
    fn a_recorded_key_is_trusted_with_port_tabs_and_lists() {
        let text = format!("other.example {KEY_B}\n[box]:2222,10.0.0.5\t{KEY_A}\n");
        assert_eq!(judge(&text, "box", 2222, KEY_A), Some(Verdict::Trusted));
        assert_eq!(judge(&text, "box", 22, KEY_A), Some(Verdict::Unknown));
    }

    #[test]
    fn a_different_key_of_the_same_type_is_changed_with_its_line() {
        let text = format!("# comment\nbox {KEY_B}\n");
        let verdict = judge(&text, "box", 22, KEY_A);
        assert!(
            matches!(&verdict, Some(Verdict::Changed { record: Some((_, 2)), recorded }) if recorded.starts_with("SHA256:")),
            "{verdict:?}"
        );
    }

    #[test]
    fn hashed_names_match() {
        // `|1|salt|HMAC-SHA1(salt, name)` for `[127.0.0.1]:2222`, salt 00 01 … 13 (as `ssh-keygen -H`
        // writes it; computed with Python's hmac).
        let text = format!("|1|AAECAwQFBgcICQoLDA0ODxAREhM=|zKYaAqmSav3Qxr2sffNqWFIcbe4= {KEY_A}\n");
        assert_eq!(judge(&text, "127.0.0.1", 2222, KEY_A), Some(Verdict::Trusted));
        assert_eq!(judge(&text, "127.0.0.1", 22, KEY_A), Some(Verdict::Unknown));
    }

    #[test]
    fn revoked_keys_and_negated_patterns_refuse() {
        assert!(matches!(
            judge(&format!("@revoked * {KEY_A}\n"), "box", 22, KEY_A),
            Some(Verdict::Revoked { .. })
        ));
        assert_eq!(
            judge(&format!("*.example,!bad.example {KEY_A}\n"), "bad.example", 22, KEY_A),
            Some(Verdict::Unknown)
        );
    }

    #[test]
    fn a_pinned_key_wins_over_the_files() {
        let verdict = key(KEY_A).zip(key(KEY_B)).map(|(a, b)| verify("box", 22, &a, Some(&b), &[]));
        assert!(matches!(verdict, Some(Verdict::Changed { record: None, .. })), "{verdict:?}");
    }

    #[test]
    fn an_appended_key_is_then_trusted() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| file(d.path(), "no-newline-at-end ssh-ed25519 AAAA"));
        let shown = key(KEY_A);
        if let (Some(path), Some(shown)) = (&path, &shown) {
            assert!(append(path, "127.0.0.1", 2200, shown).is_ok());
            assert_eq!(verify("127.0.0.1", 2200, shown, None, std::slice::from_ref(path)), Verdict::Trusted);
        }
        assert!(path.is_some() && shown.is_some());
    }
}
