//! Shared helpers: a temporary workspace and a way to call a tool by name with JSON arguments.

mod files;
mod http;
mod jail;
mod registry;
mod resources;
mod sandbox;
mod search;
mod shell;
#[cfg(feature = "ssh")]
mod ssh;

use exoclaw_core::{ToolContext, ToolError};
use serde_json::Value;
use std::path::Path;

/// A temporary workspace and a context rooted in it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub ctx: ToolContext,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ToolContext::new(dir.path());
        Self { dir, ctx }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `rel`, creating parent directories.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap()
    }

    /// Calls the builtin tool `name` through the `Tool` trait, as a run would.
    pub async fn call(&self, name: &str, args: Value) -> Result<String, ToolError> {
        let tools = exoclaw_tools::builtin_tools();
        let tool = tools.get(name).unwrap_or_else(|| panic!("no tool {name}"));
        tool.call(args, &self.ctx).await
    }

    /// Calls `name` and expects a result.
    pub async fn ok(&self, name: &str, args: Value) -> String {
        match self.call(name, args.clone()).await {
            Ok(out) => out,
            Err(e) => panic!("{name}({args}) failed: {e}"),
        }
    }

    /// Calls `name` and expects an error.
    pub async fn err(&self, name: &str, args: Value) -> ToolError {
        match self.call(name, args.clone()).await {
            Ok(out) => panic!("{name}({args}) should have failed, returned:\n{out}"),
            Err(e) => e,
        }
    }
}

/// Asserts `e` is a refusal and returns its message.
pub fn refused(e: ToolError) -> String {
    match e {
        ToolError::Refused(m) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Asserts `e` is a plain failure and returns its message.
pub fn failed(e: ToolError) -> String {
    match e {
        ToolError::Failed(m) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}
