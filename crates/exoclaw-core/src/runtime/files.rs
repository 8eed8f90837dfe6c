//! Files a chat carries both ways. [`Attachments`]: the files of a user's message, fetched when
//! its turn starts (so a slow download never holds the platform's delivery, and a conversation's
//! messages keep their order), added to the message as parts. [`Outbox`]: the files the agent
//! sends back, chosen with the `send_file` tool that a turn with an outbox offers, and delivered
//! by the front end after the answer.

use crate::Resource;
use crate::{Tool, ToolContext, ToolError, TypedTool};
use async_trait::async_trait;
use exoclaw_types::{Part, ToolEffect};
use schemars::JsonSchema;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The name of the tool a turn with an [`Outbox`] offers.
pub const SEND_FILE: &str = "send_file";
/// The most files one turn may send.
pub const MAX_FILES_PER_TURN: usize = 10;

/// The files that came with a user's message.
#[async_trait]
pub trait Attachments: Send + Sync {
    /// The parts they add to the message: images, text, or a line saying what a file is and why
    /// its contents are not shown (a download that failed included — it never fails the turn).
    async fn fetch(&self) -> Vec<Part>;
}

/// A file the agent sends with its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// Where it is: inside the agent's workspace, every symbolic link resolved.
    pub path: PathBuf,
    /// Its file name, as the user sees it.
    pub name: String,
    /// Its size when it was chosen.
    pub bytes: u64,
    /// What the agent says about it, if anything.
    pub caption: Option<String>,
    /// The file's device and inode when it was chosen: [`OutgoingFile::read`] sends only that file.
    identity: Option<(u64, u64)>,
}

impl OutgoingFile {
    /// The file's content, if it is still the file the agent chose: it is opened, then checked to
    /// be the same file (device and inode) — so a path swapped since for a symbolic link to
    /// something outside the workspace, or replaced by another file, is refused — and read up to
    /// `limit` bytes (the platform's limit).
    pub async fn read(&self, limit: u64) -> std::io::Result<Vec<u8>> {
        let (path, identity) = (self.path.clone(), self.identity);
        tokio::task::spawn_blocking(move || read_checked(&path, identity, limit))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn read_checked(path: &Path, identity: Option<(u64, u64)>, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if identity_of(&meta) != identity {
        return Err(std::io::Error::other(
            "it is no longer the file the agent chose (it was replaced since)",
        ));
    }
    let too_big = |bytes: u64| {
        std::io::Error::other(format!("it is {} now, over the {} the chat takes", size(bytes), size(limit)))
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    match bytes.len() as u64 > limit {
        true => Err(too_big(bytes.len() as u64)),
        false => Ok(bytes),
    }
}

/// A file's device and inode, where the platform has them.
#[cfg(unix)]
fn identity_of(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity_of(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The files a turn's agent chose to send, shared by the turn's `send_file` tool and the front end
/// that delivers them. Cheap to clone: clones share the files.
#[derive(Debug, Clone)]
pub struct Outbox {
    files: Arc<Mutex<Vec<OutgoingFile>>>,
    max_bytes: u64,
}

impl Outbox {
    /// An empty outbox taking files of at most `max_bytes` each (what the platform accepts).
    pub fn new(max_bytes: u64) -> Self {
        Self { files: Arc::default(), max_bytes }
    }

    /// The largest file it takes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The files chosen so far, taken out.
    pub fn take(&self) -> Vec<OutgoingFile> {
        std::mem::take(&mut *self.files.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The `send_file` tool that fills it.
    pub fn tool(&self) -> Arc<dyn Tool> {
        Arc::new(SendFile { outbox: self.clone() })
    }

    /// The tool's spec, as [`Tool::spec`] gives it, built once (a chat turn offers it each time).
    pub fn tool_spec() -> exoclaw_types::ToolSpec {
        static SPEC: std::sync::LazyLock<exoclaw_types::ToolSpec> =
            std::sync::LazyLock::new(|| SendFile { outbox: Outbox::new(0) }.spec());
        SPEC.clone()
    }

    fn push(&self, file: OutgoingFile) -> Result<(), ToolError> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if files.len() >= MAX_FILES_PER_TURN {
            return Err(ToolError::Refused(format!(
                "at most {MAX_FILES_PER_TURN} files can be sent with one answer"
            )));
        }
        if files.iter().any(|f| f.path == file.path) {
            return Ok(());
        }
        files.push(file);
        Ok(())
    }
}

/// `send_file`: puts a workspace file in the turn's outbox.
struct SendFile {
    outbox: Outbox,
}

/// The arguments of `send_file`.
#[derive(Debug, Deserialize, JsonSchema)]
struct SendFileArgs {
    /// The file, relative to the workspace.
    path: String,
    /// A short line about the file, shown with it.
    #[serde(default)]
    caption: Option<String>,
}

#[async_trait]
impl TypedTool for SendFile {
    type Args = SendFileArgs;
    const NAME: &'static str = SEND_FILE;

    fn description(&self) -> String {
        "Sends a file from the workspace to the user, attached to your answer in the chat. Use it when \
         the user asks for a file, or when a file you made (a chart, a report, an export) is the \
         answer; say in your answer what you sent."
            .to_owned()
    }

    fn effect(&self) -> ToolEffect {
        // The file goes to the person the agent answers, as reading it out would.
        ToolEffect::ReadOnly
    }

    fn resources(&self, args: &SendFileArgs) -> Vec<Resource> {
        vec![Resource::Path(args.path.clone())]
    }

    async fn run(&self, args: SendFileArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let file = in_workspace(&ctx.workspace_root, &args.path)?;
        let meta = std::fs::metadata(&file)
            .map_err(|e| ToolError::Failed(format!("`{}` cannot be read: {e}", args.path)))?;
        if !meta.is_file() {
            return Err(ToolError::InvalidArguments(format!("`{}` is not a file", args.path)));
        }
        if meta.len() > self.outbox.max_bytes {
            return Err(ToolError::Refused(format!(
                "`{}` is {}; the chat takes files of at most {}",
                args.path,
                size(meta.len()),
                size(self.outbox.max_bytes)
            )));
        }
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let caption = args.caption.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        let identity = identity_of(&meta);
        self.outbox.push(OutgoingFile {
            path: file,
            name: name.clone(),
            bytes: meta.len(),
            caption,
            identity,
        })?;
        Ok(format!("`{name}` ({}) will be attached to your answer.", size(meta.len())))
    }
}

/// `path` (relative to `root`, or absolute inside it) as an existing file's real path inside the
/// real `root`, or why not.
fn in_workspace(root: &std::path::Path, path: &str) -> Result<PathBuf, ToolError> {
    let root = std::fs::canonicalize(root)
        .map_err(|e| ToolError::Failed(format!("the workspace `{}` cannot be used: {e}", root.display())))?;
    let real = std::fs::canonicalize(root.join(path)).map_err(|e| {
        ToolError::InvalidArguments(format!("`{path}` cannot be found in the workspace: {e}"))
    })?;
    match real.starts_with(&root) {
        true => Ok(real),
        false => Err(ToolError::Refused(format!(
            "`{path}` is outside the workspace (`{}`); only files in it can be sent",
            root.display()
        ))),
    }
}

/// `1.2 MB`, `340 KB`, `12 bytes`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{:.0} KB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context(root: &std::path::Path) -> ToolContext {
        ToolContext::new(root)
    }

    #[tokio::test]
    async fn a_workspace_file_is_put_in_the_outbox_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chart.png"), b"png bytes").unwrap();
        let outbox = Outbox::new(1_000);
        let tool = outbox.tool();
        let said = tool
            .call(json!({"path": "chart.png", "caption": " Sales "}), &context(dir.path()))
            .await
            .unwrap();
        assert_eq!(said, "`chart.png` (9 bytes) will be attached to your answer.");
        tool.call(json!({"path": "./chart.png"}), &context(dir.path())).await.unwrap();
        let files = outbox.take();
        assert_eq!(files.len(), 1, "the same file twice is sent once");
        assert_eq!(files[0].name, "chart.png");
        assert_eq!(files[0].caption.as_deref(), Some("Sales"));
        assert!(files[0].path.is_absolute());
        assert!(outbox.take().is_empty(), "taken out");
    }

    #[tokio::test]
    async fn a_file_outside_the_workspace_missing_or_too_big_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 2_000]).unwrap();
        let outbox = Outbox::new(1_000);
        let tool = outbox.tool();
        let ctx = context(dir.path());
        let secret = outside.path().join("secret");
        for (path, expected) in [
            ("link", "outside the workspace"),
            (secret.to_str().unwrap(), "outside the workspace"),
            ("../x", "cannot be found"),
            ("missing.txt", "cannot be found"),
            ("big", "at most 1 KB"),
            (".", "is not a file"),
        ] {
            let error = tool.call(json!({"path": path}), &ctx).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{path}: {error}");
        }
        assert!(outbox.take().is_empty());
    }

    #[tokio::test]
    async fn a_chosen_file_is_read_only_while_it_is_still_that_file() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"api_key = 1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("b.txt"), b"edited later").unwrap();
        let outbox = Outbox::new(100);
        let tool = outbox.tool();
        for path in ["a.txt", "b.txt"] {
            tool.call(json!({"path": path}), &context(dir.path())).await.unwrap();
        }
        let files = outbox.take();
        assert_eq!(files[0].read(100).await.unwrap(), b"hello");
        // Edited in place: the same file, its new content.
        std::fs::write(dir.path().join("b.txt"), b"edited").unwrap();
        assert_eq!(files[1].read(100).await.unwrap(), b"edited");
        assert!(files[1].read(3).await.unwrap_err().to_string().contains("over the 3 bytes"));
        // Swapped for a link to a file outside the workspace after it was chosen: refused.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("a.txt")).unwrap();
        let refused = files[0].read(100).await.unwrap_err().to_string();
        assert!(refused.contains("no longer the file the agent chose"), "{refused}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(12), "12 bytes");
        assert_eq!(size(340_000), "340 KB");
        assert_eq!(size(1_240_000), "1.2 MB");
    }
}
