//! Project context files: the `AGENTS.md` (and `.cursorrules`, `.windsurfrules`) that a project
//! keeps for coding agents, found from the working directory up to the repository root, and the
//! system prompt they join.

use std::path::{Path, PathBuf};

/// File names read as context, in the order they are joined within one directory.
pub const CONTEXT_FILE_NAMES: &[&str] = &["AGENTS.md", ".cursorrules", ".windsurfrules"];

/// Most bytes kept of one context file; the rest is cut with a visible marker, so a stray huge
/// file cannot fill the model's context.
pub const MAX_CONTEXT_FILE_BYTES: usize = 32 * 1024;

/// One context file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    /// Where it was found.
    pub path: PathBuf,
    /// Its text, cut at [`MAX_CONTEXT_FILE_BYTES`].
    pub text: String,
}

/// The context files that apply in `cwd`: those in `cwd` and each directory above it up to and
/// including the repository root (the nearest directory holding `.git`), outermost first, so the
/// most specific instructions come last. Outside a repository only `cwd` itself is read.
/// Unreadable files are skipped with a warning in the log.
pub fn discover_context_files(cwd: &Path) -> Vec<ContextFile> {
    let repo_root = cwd.ancestors().find(|dir| dir.join(".git").exists());
    let dirs: Vec<&Path> = match repo_root {
        Some(root) => cwd.ancestors().take_while(|dir| *dir != root).chain([root]).collect(),
        None => vec![cwd],
    };
    let mut files = Vec::new();
    for dir in dirs.into_iter().rev() {
        for name in CONTEXT_FILE_NAMES {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => files.push(ContextFile { text: capped_text(&bytes), path }),
                Err(err) => tracing::warn!(path = %path.display(), %err, "context file not readable"),
            }
        }
    }
    files
}

fn capped_text(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_CONTEXT_FILE_BYTES {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = String::from_utf8_lossy(&bytes[..MAX_CONTEXT_FILE_BYTES]).into_owned();
    // A cut inside a multi-byte character leaves a replacement character; drop it.
    text.truncate(text.trim_end_matches('\u{FFFD}').len());
    text.push_str(&format!(
        "\n[… cut: the file has {} bytes, the first {MAX_CONTEXT_FILE_BYTES} are shown]",
        bytes.len()
    ));
    text
}

/// The system prompt of a turn: `base`, then each context file under a heading naming it, then
/// each of `extra` (configuration's and the command line's additions), separated by blank lines.
pub fn system_prompt(base: &str, files: &[ContextFile], extra: &[&str]) -> String {
    let mut prompt = base.trim_end().to_owned();
    for file in files {
        prompt.push_str(&format!(
            "\n\n# Project instructions from {}\n\n{}",
            file.path.display(),
            file.text.trim_end()
        ));
    }
    for more in extra.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        prompt.push_str("\n\n");
        prompt.push_str(more);
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("exoclaw-context-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_from_the_repository_root_down_to_the_working_directory_outermost_first() {
        let root = temp_dir("walk");
        let repo = root.join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        write(&root.join("AGENTS.md"), "outside the repository: never read");
        write(&repo.join("AGENTS.md"), "repo rules");
        write(&repo.join("crates/a/AGENTS.md"), "crate rules");
        write(&repo.join("crates/a/.cursorrules"), "cursor rules");
        let cwd = repo.join("crates/a/src");
        std::fs::create_dir_all(&cwd).unwrap();

        let files = discover_context_files(&cwd);
        let texts: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["repo rules", "crate rules", "cursor rules"]);

        let prompt = system_prompt("You are exoclaw.", &files, &["Be brief.", ""]);
        assert!(prompt.starts_with("You are exoclaw.\n\n# Project instructions from "));
        assert!(prompt.find("repo rules").unwrap() < prompt.find("crate rules").unwrap());
        assert!(prompt.ends_with("cursor rules\n\nBe brief."));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn outside_a_repository_only_the_working_directory_counts() {
        let root = temp_dir("norepo");
        write(&root.join("AGENTS.md"), "parent");
        write(&root.join("here/.windsurfrules"), "here");
        let files = discover_context_files(&root.join("here"));
        assert_eq!(files.iter().map(|f| f.text.as_str()).collect::<Vec<_>>(), ["here"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_huge_file_is_cut_with_a_marker() {
        let text = capped_text("é".repeat(MAX_CONTEXT_FILE_BYTES).as_bytes());
        assert!(text.len() < MAX_CONTEXT_FILE_BYTES + 200);
        assert!(text.ends_with(&format!("the first {MAX_CONTEXT_FILE_BYTES} are shown]")));
        assert!(!text.contains('\u{FFFD}'));
    }
}
