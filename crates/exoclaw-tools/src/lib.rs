//! exoclaw's builtin tools, each a [`TypedTool`](exoclaw_core::TypedTool) that a run can call:
//!
//! | tool | type | effect | what it does |
//! |---|---|---|---|
//! | `read_file` | [`ReadFile`] | read-only | a text file's lines, numbered, from an offset, capped |
//! | `write_file` | [`WriteFile`] | mutating | writes a whole file, creating parent directories |
//! | `edit_file` | [`EditFile`] | mutating | replaces an exact, unique string (or every copy) |
//! | `list_dir` | [`ListDir`] | read-only | a directory's entries, sorted, `/` after directories |
//! | `glob` | [`Glob`] | read-only | files matching a glob, honouring `.gitignore` |
//! | `grep` | [`Grep`] | read-only | lines matching a regex as `path:line: text`, honouring `.gitignore` |
//! | `shell` | [`Shell`] | mutating | `sh -c COMMAND` in its own process group, with a timeout, in the [sandbox] |
//! | `http_fetch` | [`HttpFetch`] | external | an http(s) request; HTML comes back as readable text |
//! | `ssh_exec` | [`ssh::SshExec`] | external | a command on a configured SSH host, optionally in a PTY |
//! | `ssh_upload`, `ssh_download` | [`ssh::SshUpload`], [`ssh::SshDownload`] | external | a file each way over SFTP, the local side jailed |
//!
//! [`builtin_tools`] gives a registry holding all of them but the SSH tools; [`register_builtins`]
//! adds them to one. The SSH tools (the default `ssh` feature) need their hosts' settings and share
//! a connection pool, so they are built from an [`ssh::SshPool`]; see the [`ssh`] module.
//!
//! # The jail
//!
//! Every path a model names goes through [`jail::resolve`] against
//! [`ToolContext::workspace_root`](exoclaw_core::ToolContext::workspace_root) before any file is
//! touched. A path is refused ([`ToolError::Refused`](exoclaw_core::ToolError::Refused)) when it is
//! absolute and outside the root, when a `..` climbs above the root, or when the deepest part of it
//! that exists, once its symbolic links are followed, lies outside the root (so a link inside the
//! workspace cannot be read, written or listed through to the outside). Walks (`glob`, `grep`) never
//! follow symbolic links. `shell` and `http_fetch` are not jailed beyond `shell`'s starting
//! directory: their reach is governed by permissions (their [`ToolEffect`](exoclaw_types::ToolEffect))
//! and, for `shell`, by the sandbox.
//!
//! # The sandbox
//!
//! [`sandbox`] confines a child process on Linux, the way codex does: in [`SandboxMode::ReadOnly`]
//! and [`SandboxMode::WorkspaceWrite`] (the default) it can read everything but the *hidden paths*
//! (exoclaw's home: configuration, database, keys), write only the workspace (in workspace-write)
//! and a private `$TMPDIR`, has no network (a network namespace of its own, and landlock's TCP
//! rules), and inherits no provider keys or tokens; [`SandboxMode::FullAccess`] is no sandbox.
//! [`Shell::with_sandbox`] takes the [`SandboxPolicy`] (the runtime passes the real one);
//! [`SandboxPolicy::apply`] puts any other `tokio::process::Command` (skill scripts, MCP stdio
//! servers) in the same sandbox, and [`Sandbox::probe`] says what this kernel can enforce.
//!
//! # Skills and baskets
//!
//! [`skills`] finds skill folders (a `SKILL.md` with YAML front matter, instructions, scripts
//! beside it), lists them for the system prompt by name and description only, and gives the
//! read-only [`OpenSkill`] tool (`open_skill`) that discloses one; the runtime registers it per
//! agent. [`baskets`] is the two-level taxonomy (`files`, `files/read`) tools, skills and agents
//! are sorted into, with the builtin tools' baskets as data ([`baskets::BUILTIN_BASKETS`]).
//!
//! Every tool caps what it returns and says so with a visible `[…]` marker, so one call cannot flood
//! the model's context.

pub mod baskets;
mod files;
mod http;
pub mod jail;
mod output;
pub mod sandbox;
mod search;
mod shell;
pub mod skills;
#[cfg(feature = "ssh")]
pub mod ssh;

pub use files::{
    EditFile, EditFileArgs, ListDir, ListDirArgs, ReadFile, ReadFileArgs, WriteFile, WriteFileArgs,
};
pub use http::{HttpFetch, HttpFetchArgs};
pub use sandbox::{Applied, Sandbox, SandboxError, SandboxMode, SandboxPolicy};
pub use search::{Glob, GlobArgs, Grep, GrepArgs};
pub use shell::{Shell, ShellArgs};
pub use skills::{OpenSkill, OpenSkillArgs, Skill, SkillError, SkillSet};

use exoclaw_core::ToolRegistry;
use std::sync::Arc;

/// A registry holding every builtin tool with its default settings.
pub fn builtin_tools() -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    register_builtins(&mut registry);
    registry
}

/// Adds every builtin tool, with its default settings, to `registry` (replacing tools of the same
/// names).
pub fn register_builtins(registry: &mut ToolRegistry) {
    registry.register(Arc::new(ReadFile::default()));
    registry.register(Arc::new(WriteFile));
    registry.register(Arc::new(EditFile));
    registry.register(Arc::new(ListDir::default()));
    registry.register(Arc::new(Glob::default()));
    registry.register(Arc::new(Grep::default()));
    registry.register(Arc::new(Shell::default()));
    registry.register(Arc::new(HttpFetch::default()));
}
