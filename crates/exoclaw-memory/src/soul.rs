//! [`Soul`]: an agent's soul document — a markdown file saying who the agent is, always first in
//! its context — read again whenever the file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The most bytes of a soul document put in a context; the rest is cut with a marker.
pub const MAX_SOUL_BYTES: usize = 16 * 1024;

/// A soul document on disk, re-read when its modification time or size changes.
#[derive(Debug)]
pub struct Soul {
    path: PathBuf,
    read: Mutex<Option<Read>>,
}

#[derive(Debug, Clone)]
struct Read {
    modified: Option<SystemTime>,
    len: u64,
    text: Arc<str>,
}

impl Soul {
    /// The soul document at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), read: Mutex::new(None) }
    }

    /// Where it is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its text now: `None` while the file does not exist or is empty. A file that exists but
    /// cannot be read keeps the text last read, with a warning in the log.
    pub fn text(&self) -> Option<Arc<str>> {
        let mut read = self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *read = None;
                return None;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "the soul document cannot be read");
                return read.as_ref().map(|r| Arc::clone(&r.text));
            }
        };
        let modified = meta.modified().ok();
        let fresh = read.as_ref().is_some_and(|r| r.modified == modified && r.len == meta.len());
        if !fresh {
            match std::fs::read(&self.path) {
                Ok(bytes) => {
                    *read = Some(Read { modified, len: meta.len(), text: capped(&bytes).into() });
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "the soul document cannot be read");
                }
            }
        }
        read.as_ref().map(|r| Arc::clone(&r.text)).filter(|text| !text.trim().is_empty())
    }
}

fn capped(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_SOUL_BYTES {
        return String::from_utf8_lossy(bytes).trim().to_owned();
    }
    let text = String::from_utf8_lossy(&bytes[..MAX_SOUL_BYTES]);
    format!(
        "{}\n[… cut: the soul document has {} bytes, the first {MAX_SOUL_BYTES} are used]",
        text.trim_end_matches('\u{FFFD}').trim(),
        bytes.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_read_again_when_it_changes_and_forgotten_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SOUL.md");
        let soul = Soul::new(&path);
        assert_eq!(soul.text(), None);
        std::fs::write(&path, "You are Ada, terse and kind.\n").unwrap();
        assert_eq!(soul.text().as_deref(), Some("You are Ada, terse and kind."));
        // Another size, so the change is seen even within the file system's time resolution.
        std::fs::write(&path, "You are Ada, terse, kind and precise.").unwrap();
        assert_eq!(soul.text().as_deref(), Some("You are Ada, terse, kind and precise."));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(soul.text(), None);
    }

    #[test]
    fn a_huge_document_is_cut_with_a_marker() {
        let text = capped("x".repeat(MAX_SOUL_BYTES * 2).as_bytes());
        assert!(text.len() < MAX_SOUL_BYTES + 100);
        assert!(text.ends_with("are used]"));
    }
}
