//! The file tools: `read_file`, `write_file`, `edit_file` and `list_dir`, all jailed to the workspace.

use crate::jail::Jail;
use crate::output::{clip_line, looks_binary};
use async_trait::async_trait;
use exoclaw_core::{Resource, ToolContext, ToolError, TypedTool};
use exoclaw_types::ToolEffect;
use schemars::JsonSchema;
use serde::Deserialize;
use std::io::ErrorKind;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `error` from doing `what` (`reading`, `writing`) to `shown`, as the model should read it.
pub(crate) fn io_failure(what: &str, shown: &str, error: &std::io::Error) -> ToolError {
    ToolError::Failed(match error.kind() {
        ErrorKind::NotFound => format!("`{shown}` does not exist"),
        ErrorKind::PermissionDenied => format!("permission denied {what} `{shown}`"),
        ErrorKind::IsADirectory => format!("`{shown}` is a directory"),
        ErrorKind::NotADirectory => format!("a part of `{shown}` is a file, not a directory"),
        _ => format!("{what} `{shown}` failed: {error}"),
    })
}

// ---------------------------------------------------------------------------------------------------
// read_file

/// Arguments of `read_file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArgs {
    /// The file to read, relative to the workspace root.
    pub path: String,
    /// The first line to show, counting from 1. Default 1.
    #[schemars(range(min = 1))]
    pub offset: Option<usize>,
    /// How many lines to show from `offset`. Default 2000.
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
}

/// `read_file`: a text file's lines, numbered, from an offset; long lines and long outputs are cut
/// with a visible marker, binary files are refused.
#[derive(Debug, Clone)]
pub struct ReadFile {
    default_limit: usize,
    max_line_chars: usize,
    max_output_bytes: usize,
}

impl Default for ReadFile {
    fn default() -> Self {
        Self { default_limit: 2000, max_line_chars: 2000, max_output_bytes: 100_000 }
    }
}

impl ReadFile {
    /// Caps the output at `bytes` (default 100,000), whatever `limit` asks for.
    pub fn with_max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }
}

#[async_trait]
impl TypedTool for ReadFile {
    type Args = ReadFileArgs;
    const NAME: &'static str = "read_file";

    fn description(&self) -> String {
        format!(
            "Read a text file in the workspace. Lines come back numbered (`   12\\tcode`); the numbers \
             and the tab are not part of the file. Shows up to {} lines from `offset`; a marker at the \
             end says when there is more and which `offset` reads on. Binary files are refused.",
            self.default_limit
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    fn resources(&self, args: &ReadFileArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone())]
    }

    async fn run(&self, args: ReadFileArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let limit = args.limit.unwrap_or(self.default_limit);
        if limit == 0 {
            return Err(ToolError::InvalidArguments("`limit` must be at least 1".into()));
        }
        let first = args.offset.unwrap_or(1).max(1);
        let jail = Jail::new(&ctx.workspace_root)?;
        let path = jail.resolve(&args.path)?;
        let shown = jail.display(&path);

        let meta = tokio::fs::metadata(&path).await.map_err(|e| io_failure("reading", &shown, &e))?;
        if meta.is_dir() {
            return Err(ToolError::Failed(format!(
                "`{shown}` is a directory; use list_dir to see inside it"
            )));
        }
        let file = tokio::fs::File::open(&path).await.map_err(|e| io_failure("reading", &shown, &e))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let start = reader.fill_buf().await.map_err(|e| io_failure("reading", &shown, &e))?;
        if looks_binary(start) {
            return Err(ToolError::Failed(format!(
                "`{shown}` is a binary file ({} bytes); read_file only shows text",
                meta.len()
            )));
        }

        let mut out = String::new();
        let mut line = Vec::new();
        let mut number = 0usize;
        // The last line shown, and whether the output budget (rather than `limit`) stopped us.
        let mut last_shown = None;
        let mut budget_hit = false;
        loop {
            line.clear();
            let n =
                reader.read_until(b'\n', &mut line).await.map_err(|e| io_failure("reading", &shown, &e))?;
            if n == 0 {
                break;
            }
            number += 1;
            // Past the window only the count is wanted, for the marker.
            if number < first || budget_hit || number >= first.saturating_add(limit) {
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            let entry = format!("{number:>6}\t{}\n", clip_line(text, self.max_line_chars));
            if out.len() + entry.len() > self.max_output_bytes && last_shown.is_some() {
                budget_hit = true;
                continue;
            }
            out.push_str(&entry);
            last_shown = Some(number);
        }

        let total = number;
        if total == 0 {
            return Ok(format!("(`{shown}` is empty)"));
        }
        let Some(last) = last_shown else {
            return Err(ToolError::Failed(format!(
                "`{shown}` has {total} lines; offset {first} is past the end"
            )));
        };
        if last < total {
            let why = if budget_hit { "output limit reached" } else { "line limit reached" };
            out.push_str(&format!(
                "[… {why}: showed lines {first}–{last} of {total}; read on with offset={} …]\n",
                last + 1
            ));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------------
// write_file

/// Arguments of `write_file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArgs {
    /// The file to write, relative to the workspace root. Missing parent directories are created.
    pub path: String,
    /// The whole new content of the file.
    pub content: String,
}

/// `write_file`: writes a whole file, replacing what was there, creating parent directories.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteFile;

#[async_trait]
impl TypedTool for WriteFile {
    type Args = WriteFileArgs;
    const NAME: &'static str = "write_file";

    fn description(&self) -> String {
        "Write a file in the workspace with the given content, replacing it if it exists and creating \
         missing parent directories. To change part of an existing file, prefer edit_file."
            .into()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }

    fn resources(&self, args: &WriteFileArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone())]
    }

    async fn run(&self, args: WriteFileArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let jail = Jail::new(&ctx.workspace_root)?;
        let path = jail.resolve(&args.path)?;
        let shown = jail.display(&path);
        let before = match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_dir() => {
                return Err(ToolError::Failed(format!("`{shown}` is a directory, not a file")));
            }
            Ok(meta) => Some(meta.len()),
            Err(_) => None,
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| io_failure("creating", &shown, &e))?;
        }
        tokio::fs::write(&path, &args.content).await.map_err(|e| io_failure("writing", &shown, &e))?;
        let lines = match args.content.lines().count() {
            1 => "1 line".to_owned(),
            n => format!("{n} lines"),
        };
        let what = match before {
            Some(old) => format!("replaced the previous {old} bytes"),
            None => "new file".into(),
        };
        Ok(format!("Wrote {} bytes ({lines}) to `{shown}` ({what}).", args.content.len()))
    }
}

// ---------------------------------------------------------------------------------------------------
// edit_file

/// Arguments of `edit_file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditFileArgs {
    /// The file to edit, relative to the workspace root.
    pub path: String,
    /// The exact text to replace, whitespace and indentation included. Without `replace_all` it must
    /// occur exactly once: include enough surrounding lines to make it unique.
    pub old_string: String,
    /// The text to put in its place.
    pub new_string: String,
    /// Replace every occurrence of `old_string` instead of requiring exactly one. Default false.
    #[serde(default)]
    pub replace_all: bool,
}

/// `edit_file`: replaces an exact string in a text file; refuses a missing or ambiguous match.
#[derive(Debug, Clone, Copy, Default)]
pub struct EditFile;

#[async_trait]
impl TypedTool for EditFile {
    type Args = EditFileArgs;
    const NAME: &'static str = "edit_file";

    fn description(&self) -> String {
        "Replace exact text in a file in the workspace. `old_string` must match the file exactly \
         (whitespace included) and occur once, unless `replace_all` is set. Read the file first; do \
         not include read_file's line numbers."
            .into()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }

    fn resources(&self, args: &EditFileArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone())]
    }

    async fn run(&self, args: EditFileArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        if args.old_string.is_empty() {
            return Err(ToolError::InvalidArguments(
                "`old_string` is empty; to create or overwrite a file use write_file".into(),
            ));
        }
        if args.old_string == args.new_string {
            return Err(ToolError::InvalidArguments(
                "`old_string` and `new_string` are the same; nothing would change".into(),
            ));
        }
        let jail = Jail::new(&ctx.workspace_root)?;
        let path = jail.resolve(&args.path)?;
        let shown = jail.display(&path);
        let bytes = tokio::fs::read(&path).await.map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                ToolError::Failed(format!("`{shown}` does not exist; create it with write_file"))
            }
            _ => io_failure("reading", &shown, &e),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ToolError::Failed(format!("`{shown}` is not UTF-8 text; edit_file only edits text files"))
        })?;

        let count = text.matches(&args.old_string).count();
        match count {
            0 => {
                return Err(ToolError::Failed(format!(
                    "`old_string` was not found in `{shown}`; read the file and copy the text exactly, \
                     whitespace and indentation included"
                )));
            }
            1 => {}
            n if !args.replace_all => {
                return Err(ToolError::Failed(format!(
                    "`old_string` occurs {n} times in `{shown}`; add surrounding lines to make it \
                     unique, or set `replace_all` to replace every one"
                )));
            }
            _ => {}
        }
        let edited = text.replace(&args.old_string, &args.new_string);
        tokio::fs::write(&path, edited).await.map_err(|e| io_failure("writing", &shown, &e))?;
        let noun = if count == 1 { "occurrence" } else { "occurrences" };
        Ok(format!("Replaced {count} {noun} in `{shown}`."))
    }
}

// ---------------------------------------------------------------------------------------------------
// list_dir

/// Arguments of `list_dir`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDirArgs {
    /// The directory to list, relative to the workspace root. Default `.` (the root).
    #[serde(default = "dot")]
    pub path: String,
}

fn dot() -> String {
    ".".into()
}

/// `list_dir`: a directory's entries, sorted, with `/` after directories and `@` after symbolic
/// links; capped with a marker.
#[derive(Debug, Clone)]
pub struct ListDir {
    max_entries: usize,
}

impl Default for ListDir {
    fn default() -> Self {
        Self { max_entries: 1000 }
    }
}

#[async_trait]
impl TypedTool for ListDir {
    type Args = ListDirArgs;
    const NAME: &'static str = "list_dir";

    fn description(&self) -> String {
        format!(
            "List a directory in the workspace: one entry a line, sorted, directories ending in `/`, \
             symbolic links in `@`. Shows up to {} entries. Use glob to find files deeper down.",
            self.max_entries
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    fn resources(&self, args: &ListDirArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone())]
    }

    async fn run(&self, args: ListDirArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let jail = Jail::new(&ctx.workspace_root)?;
        let path = jail.resolve(&args.path)?;
        let shown = jail.display(&path);
        if !is_dir(&path).await {
            return Err(match tokio::fs::metadata(&path).await {
                Ok(_) => ToolError::Failed(format!("`{shown}` is a file, not a directory; use read_file")),
                Err(e) => io_failure("listing", &shown, &e),
            });
        }
        let mut dir = tokio::fs::read_dir(&path).await.map_err(|e| io_failure("listing", &shown, &e))?;
        let mut entries = Vec::new();
        while let Some(entry) = dir.next_entry().await.map_err(|e| io_failure("listing", &shown, &e))? {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            match entry.file_type().await {
                Ok(t) if t.is_dir() => name.push('/'),
                Ok(t) if t.is_symlink() => name.push('@'),
                _ => {}
            }
            entries.push(name);
        }
        if entries.is_empty() {
            return Ok(format!("(`{shown}` is empty)"));
        }
        entries.sort();
        let total = entries.len();
        let mut out = entries.into_iter().take(self.max_entries).collect::<Vec<_>>().join("\n");
        if total > self.max_entries {
            out.push_str(&format!("\n[… {} more entries not shown …]", total - self.max_entries));
        }
        Ok(out)
    }
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir())
}
