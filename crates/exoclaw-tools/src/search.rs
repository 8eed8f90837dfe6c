//! The search tools: `glob` (files by name) and `grep` (lines by regex). Both walk the workspace as
//! ripgrep does — `.gitignore`, `.ignore` and `.git/info/exclude` honoured whether or not the
//! workspace is a git repository, `.git` itself skipped, symbolic links not followed — and run on a
//! blocking thread that stops when the call is cancelled.

use crate::files::io_failure;
use crate::jail::Jail;
use crate::output::{clip_line, looks_binary};
use async_trait::async_trait;
use exoclaw_core::{Resource, ToolContext, ToolError, TypedTool};
use exoclaw_types::ToolEffect;
use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Files bigger than this are not searched by `grep`.
const MAX_GREP_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// A glob as the model wrote it: without a `/` it matches file names at any depth (`*.rs`), with one
/// it matches the path below the search directory (`src/**/*.rs`).
struct NameFilter {
    matcher: GlobMatcher,
    names_only: bool,
}

impl NameFilter {
    fn new(pattern: &str) -> Result<Self, ToolError> {
        let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| ToolError::InvalidArguments(format!("`{pattern}` is not a valid glob: {e}")))?;
        Ok(Self { matcher: glob.compile_matcher(), names_only: !pattern.contains('/') })
    }

    /// Whether `relative` (a path below the search directory) matches.
    fn matches(&self, relative: &Path) -> bool {
        if self.names_only {
            relative.file_name().is_some_and(|name| self.matcher.is_match(name))
        } else {
            self.matcher.is_match(relative)
        }
    }
}

/// Every file under `base` (or `base` itself when it is a file) the walk does not ignore, sorted.
fn walk_files(base: &Path, cancel: &CancellationToken) -> Result<Vec<PathBuf>, ToolError> {
    let walk = ignore::WalkBuilder::new(base)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| entry.file_name() != ".git")
        .build();
    let mut files = Vec::new();
    for entry in walk {
        if cancel.is_cancelled() {
            return Err(ToolError::Cancelled);
        }
        // An unreadable directory or a broken ignore file costs its own entries, not the search.
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_some_and(|t| t.is_file()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `work` on a blocking thread; gives up on it (it notices `cancel` soon after) when cancelled.
async fn blocking<T: Send + 'static>(
    cancel: &CancellationToken,
    work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    let task = tokio::task::spawn_blocking(work);
    tokio::select! {
        joined = task => joined.map_err(|e| ToolError::Failed(format!("the search stopped unexpectedly: {e}")))?,
        () = cancel.cancelled() => Err(ToolError::Cancelled),
    }
}

/// The search directory `path` resolved, or an error saying why it cannot be searched.
async fn search_base(jail: &Jail, path: Option<&str>) -> Result<PathBuf, ToolError> {
    let base = jail.resolve(path.unwrap_or("."))?;
    tokio::fs::metadata(&base).await.map_err(|e| io_failure("searching", &jail.display(&base), &e))?;
    Ok(base)
}

// ---------------------------------------------------------------------------------------------------
// glob

/// Arguments of `glob`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobArgs {
    /// The glob. Without a `/` it matches file names at any depth (`*.rs`, `Cargo.toml`); with one it
    /// matches paths below `path` (`src/**/*.rs`). `*` stays within one directory, `**` crosses
    /// directories, `{a,b}` and `[abc]` work.
    pub pattern: String,
    /// The directory to search, relative to the workspace root. Default `.` (the root).
    pub path: Option<String>,
}

/// `glob`: files whose names or paths match a glob, sorted, honouring `.gitignore`; capped with a
/// marker.
#[derive(Debug, Clone)]
pub struct Glob {
    max_results: usize,
}

impl Default for Glob {
    fn default() -> Self {
        Self { max_results: 1000 }
    }
}

#[async_trait]
impl TypedTool for Glob {
    type Args = GlobArgs;
    const NAME: &'static str = "glob";

    fn description(&self) -> String {
        format!(
            "Find files in the workspace by glob, skipping what .gitignore ignores. Paths come back \
             relative to the workspace root, sorted, up to {}.",
            self.max_results
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    fn resources(&self, args: &GlobArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone().unwrap_or_else(|| ".".to_owned()))]
    }

    async fn run(&self, args: GlobArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let filter = NameFilter::new(&args.pattern)?;
        let jail = Jail::new(&ctx.workspace_root)?;
        let base = search_base(&jail, args.path.as_deref()).await?;
        let cancel = ctx.cancel.clone();
        let walk_cancel = cancel.clone();
        let walk_base = base.clone();
        let files = blocking(&cancel, move || walk_files(&walk_base, &walk_cancel)).await?;

        let matched: Vec<String> = files
            .iter()
            .filter(|f| filter.matches(f.strip_prefix(&base).unwrap_or(f)))
            .map(|f| jail.display(f))
            .collect();
        if matched.is_empty() {
            return Ok(format!("No files match `{}` in `{}`.", args.pattern, jail.display(&base)));
        }
        let total = matched.len();
        let mut out = matched.into_iter().take(self.max_results).collect::<Vec<_>>().join("\n");
        if total > self.max_results {
            out.push_str(&format!(
                "\n[… {} more files not shown; narrow the pattern or path …]",
                total - self.max_results
            ));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------------
// grep

/// Arguments of `grep`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrepArgs {
    /// The regular expression to look for in each line (Rust regex syntax, like ripgrep's).
    pub pattern: String,
    /// The file or directory to search, relative to the workspace root. Default `.` (the root).
    pub path: Option<String>,
    /// Only search files matching this glob (`*.rs`, `src/**/*.toml`), as in the glob tool.
    pub glob: Option<String>,
    /// Ignore case when matching. Default false.
    #[serde(default)]
    pub case_insensitive: bool,
}

/// `grep`: lines matching a regex as `path:line: text`, honouring `.gitignore`, skipping binary
/// files; capped with a marker.
#[derive(Debug, Clone)]
pub struct Grep {
    max_matches: usize,
    max_output_bytes: usize,
    max_line_chars: usize,
}

impl Default for Grep {
    fn default() -> Self {
        Self { max_matches: 500, max_output_bytes: 50_000, max_line_chars: 300 }
    }
}

impl Grep {
    /// Stops after `n` matching lines (default 500).
    pub fn with_max_matches(mut self, n: usize) -> Self {
        self.max_matches = n;
        self
    }
}

#[async_trait]
impl TypedTool for Grep {
    type Args = GrepArgs;
    const NAME: &'static str = "grep";

    fn description(&self) -> String {
        format!(
            "Search file contents in the workspace with a regular expression, skipping what .gitignore \
             ignores and binary files. Each match comes back as `path:line: text`, files in path order, \
             up to {} matches.",
            self.max_matches
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    fn resources(&self, args: &GrepArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone().unwrap_or_else(|| ".".to_owned()))]
    }

    async fn run(&self, args: GrepArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let regex = RegexBuilder::new(&args.pattern)
            .case_insensitive(args.case_insensitive)
            .size_limit(10 * 1024 * 1024)
            .build()
            .map_err(|e| ToolError::InvalidArguments(format!("`pattern` is not a valid regex: {e}")))?;
        let filter = args.glob.as_deref().map(NameFilter::new).transpose()?;
        let jail = Jail::new(&ctx.workspace_root)?;
        let base = search_base(&jail, args.path.as_deref()).await?;

        let cancel = ctx.cancel.clone();
        let worker_cancel = cancel.clone();
        let limits = self.clone();
        let shown = blocking(&cancel, move || {
            let files = walk_files(&base, &worker_cancel)?;
            let files = files.into_iter().filter(|f| match &filter {
                // A single file named as `path` has no path below it; match its name.
                Some(filter) => filter
                    .matches(f.strip_prefix(&base).ok().filter(|r| !r.as_os_str().is_empty()).unwrap_or(f)),
                None => true,
            });
            limits.search(&regex, files, &jail, &worker_cancel)
        })
        .await?;
        match shown {
            Some(out) => Ok(out),
            None => Ok(format!("No matches for `{}`.", args.pattern)),
        }
    }
}

impl Grep {
    /// The matching lines of `files`, formatted and capped; `None` when nothing matched.
    fn search(
        &self,
        regex: &Regex,
        files: impl Iterator<Item = PathBuf>,
        jail: &Jail,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, ToolError> {
        let mut out = String::new();
        let mut matches = 0usize;
        for file in files {
            if cancel.is_cancelled() {
                return Err(ToolError::Cancelled);
            }
            let Ok(handle) = std::fs::File::open(&file) else { continue };
            if handle.metadata().is_ok_and(|m| m.len() > MAX_GREP_FILE_BYTES) {
                continue;
            }
            let mut reader = BufReader::with_capacity(64 * 1024, handle);
            if reader.fill_buf().map_or(true, looks_binary) {
                continue;
            }
            let shown = jail.display(&file);
            let mut line = Vec::new();
            let mut number = 0usize;
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                number += 1;
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if !regex.is_match(text) {
                    continue;
                }
                let entry = format!("{shown}:{number}: {}\n", clip_line(text, self.max_line_chars));
                if matches == self.max_matches || out.len() + entry.len() > self.max_output_bytes {
                    out.push_str(&format!(
                        "[… stopped after {matches} matches; narrow the pattern, path or glob to see \
                         the rest …]\n"
                    ));
                    return Ok(Some(out));
                }
                out.push_str(&entry);
                matches += 1;
            }
        }
        Ok((matches > 0).then_some(out))
    }
}
