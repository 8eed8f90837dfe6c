//! The workspace jail: the one place where a path a model names becomes a path on disk.
//!
//! [`resolve`] (or [`Jail::resolve`]) refuses a path that is absolute and outside the root, one whose
//! `..` climbs above the root, and one whose deepest existing part resolves — symbolic links followed
//! — to somewhere outside the root. A path that does not exist yet (a file about to be written) is
//! judged by its deepest existing ancestor, so a new file under a symlinked directory that points
//! outside is refused too. A symbolic link whose target does not exist is refused outright: writing
//! through it would create its target, wherever that is.
//!
//! The path handed back starts with the canonical root and has every existing part resolved, so the
//! tool touches exactly what was checked (short of a race with another process changing the tree).

use exoclaw_core::ToolError;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

/// Resolves `path`, as a model gave it, against `workspace_root`; see the [module](self) for the rule.
pub fn resolve(workspace_root: &Path, path: &str) -> Result<PathBuf, ToolError> {
    Jail::new(workspace_root)?.resolve(path)
}

/// A workspace root that paths are resolved against.
#[derive(Debug, Clone)]
pub struct Jail {
    /// The root as given, made absolute and lexically normalised (it may contain symlinks).
    given: PathBuf,
    /// The root with every symbolic link resolved.
    canonical: PathBuf,
}

impl Jail {
    /// A jail rooted at `workspace_root`, which must exist.
    pub fn new(workspace_root: &Path) -> Result<Self, ToolError> {
        let canonical = std::fs::canonicalize(workspace_root).map_err(|e| {
            ToolError::Failed(format!(
                "the workspace root `{}` cannot be used: {e}",
                workspace_root.display()
            ))
        })?;
        let given = std::path::absolute(workspace_root)
            .ok()
            .and_then(|p| normalize(&p))
            .unwrap_or_else(|| canonical.clone());
        Ok(Self { given, canonical })
    }

    /// The root, with its symbolic links resolved; every resolved path starts with it.
    pub fn root(&self) -> &Path {
        &self.canonical
    }

    /// Resolves `path` (relative to the root, or absolute inside it) to a path on disk, or refuses it.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ToolError> {
        let relative = self.relative(path)?;
        let candidate = self.canonical.join(&relative);

        // Climb from the candidate to its deepest existing ancestor; the root itself exists.
        let mut existing = candidate.as_path();
        let mut missing: Vec<OsString> = Vec::new();
        loop {
            match std::fs::symlink_metadata(existing) {
                Ok(meta) => {
                    let real = match std::fs::canonicalize(existing) {
                        Ok(real) => real,
                        Err(_) if meta.file_type().is_symlink() => {
                            let target = std::fs::read_link(existing)
                                .map(|t| t.display().to_string())
                                .unwrap_or_else(|_| "?".into());
                            return Err(ToolError::Refused(format!(
                                "`{path}` goes through the symbolic link `{}`, whose target `{target}` does \
                                 not exist; refusing to follow it",
                                self.display(existing)
                            )));
                        }
                        Err(e) => return Err(ToolError::Failed(format!("`{path}`: {e}"))),
                    };
                    if !real.starts_with(&self.canonical) {
                        return Err(ToolError::Refused(format!(
                            "`{path}` resolves through a symbolic link to `{}`, which is outside the \
                             workspace; only files inside the workspace can be used",
                            real.display()
                        )));
                    }
                    let mut resolved = real;
                    resolved.extend(missing.iter().rev());
                    return Ok(resolved);
                }
                // A missing part, or a file where a directory was expected: the call itself will
                // report that plainly once the path is known to be inside.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    match (existing.file_name(), existing.parent()) {
                        (Some(name), Some(parent)) => {
                            missing.push(name.to_owned());
                            existing = parent;
                        }
                        _ => {
                            return Err(ToolError::Failed(format!(
                                "the workspace root `{}` no longer exists",
                                self.canonical.display()
                            )));
                        }
                    }
                }
                Err(e) => return Err(ToolError::Failed(format!("`{path}`: {e}"))),
            }
        }
    }

    /// `path` (a resolved path) as the model should see it: relative to the root, `.` for the root.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.canonical) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// `path` as plain components below the root, judged lexically (no file system access).
    fn relative(&self, path: &str) -> Result<PathBuf, ToolError> {
        let p = Path::new(path);
        if p.is_absolute() {
            let outside = || {
                ToolError::Refused(format!(
                    "`{path}` is outside the workspace (`{}`); use a path relative to the workspace root",
                    self.given.display()
                ))
            };
            let normal = normalize(p).ok_or_else(outside)?;
            let rel = normal
                .strip_prefix(&self.canonical)
                .or_else(|_| normal.strip_prefix(&self.given))
                .map_err(|_| outside())?;
            return Ok(rel.to_path_buf());
        }
        let mut rel = PathBuf::new();
        for component in p.components() {
            match component {
                Component::CurDir => {}
                Component::Normal(name) => rel.push(name),
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(ToolError::Refused(format!(
                            "`{path}` leaves the workspace: `..` may not climb above the workspace root"
                        )));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(ToolError::Refused(format!("`{path}` is not a usable relative path")));
                }
            }
        }
        Ok(rel)
    }
}

/// An absolute path with `.` and `..` folded away lexically (`/..` stays `/`); `None` for a relative
/// path.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out.is_absolute().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Some(PathBuf::from("/a/c")));
        assert_eq!(normalize(Path::new("/../x")), Some(PathBuf::from("/x")));
        assert_eq!(normalize(Path::new("a/b")), None);
    }
}
