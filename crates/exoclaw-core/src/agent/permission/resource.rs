//! [`Resource`]: what a tool call touches, as its tool names it ([`crate::Tool::resources`]), and
//! paths resolved against the workspace so that rules see one spelling of each.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Something a tool call touches, for permission rules and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// A file or folder. A tool gives it as the model wrote it; the runner resolves it with
    /// [`Resource::in_workspace`] before any rule sees it.
    Path(String),
    /// A host the call reaches (`api.github.com`), without scheme or port.
    Host(String),
    /// A command line the call runs.
    Command(String),
}

impl Resource {
    /// The resource with a path resolved against `root` (the workspace, canonical): `.` and `..`
    /// folded, symbolic links in the part that exists followed, then written relative to `root`
    /// (`src/main.rs`; `.` for the root itself), or absolute when it lies outside. Hosts are
    /// lower-cased; commands stay as they are.
    pub fn in_workspace(self, root: &Path) -> Self {
        match self {
            Self::Path(path) => Self::Path(resolve(root, &path)),
            Self::Host(host) => Self::Host(host.trim_end_matches('.').to_ascii_lowercase()),
            Self::Command(line) => Self::Command(line),
        }
    }

    /// What kind of resource it is: `path`, `host` or `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Path(_) => "path",
            Self::Host(_) => "host",
            Self::Command(_) => "command",
        }
    }

    /// The path, host or command line.
    pub fn value(&self) -> &str {
        match self {
            Self::Path(v) | Self::Host(v) | Self::Command(v) => v,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

/// `path` as rules see it; see [`Resource::in_workspace`].
fn resolve(root: &Path, path: &str) -> String {
    let joined = if Path::new(path).is_absolute() { PathBuf::from(path) } else { root.join(path) };
    let lexical = fold(&joined);
    let real = follow_links(&lexical);
    match real.strip_prefix(root) {
        Ok(inside) if inside.as_os_str().is_empty() => ".".to_owned(),
        Ok(inside) => inside.to_string_lossy().into_owned(),
        Err(_) => real.to_string_lossy().into_owned(),
    }
}

/// `path` with `.` dropped and `..` taking off the component before it (never above `/`).
fn fold(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` with the symbolic links of its deepest existing ancestor followed (a link inside the
/// workspace pointing out of it shows as where it points), the rest appended as written.
fn follow_links(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn paths_are_written_relative_to_the_workspace_whatever_the_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        let resolved = |p: &str| Resource::Path(p.into()).in_workspace(&root);
        assert_eq!(resolved("src/main.rs"), Resource::Path("src/main.rs".into()));
        assert_eq!(resolved("./src/../src/main.rs"), Resource::Path("src/main.rs".into()));
        assert_eq!(
            resolved(&root.join("src/new/x.rs").display().to_string()),
            Resource::Path("src/new/x.rs".into())
        );
        assert_eq!(resolved("."), Resource::Path(".".into()));
        let up = "../".repeat(root.components().count());
        assert_eq!(resolved(&format!("{up}etc/passwd")), Resource::Path("/etc/passwd".into()));
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert_eq!(resolved("link/passwd"), Resource::Path("/etc/passwd".into()));
    }

    #[test]
    fn hosts_are_lower_cased() {
        assert_eq!(
            Resource::Host("API.GitHub.com.".into()).in_workspace(Path::new("/")),
            Resource::Host("api.github.com".into())
        );
    }
}
