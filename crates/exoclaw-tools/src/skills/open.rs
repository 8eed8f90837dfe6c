//! `open_skill`: the read-only tool that discloses a skill — its instructions and the files beside
//! them, with their absolute paths for `shell` — or one of those files, jailed to the skill's
//! folder.

use super::{SKILL_FILE, Skill, SkillSet, front_matter};
use crate::jail::Jail;
use crate::output::{clip_text, looks_binary};
use async_trait::async_trait;
use exoclaw_core::{ToolContext, ToolError, TypedTool};
use exoclaw_types::ToolEffect;
use schemars::JsonSchema;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most bytes of a skill's body or file returned in one call.
const MAX_RETURNED_BYTES: usize = 64 * 1024;

/// Most files listed beside a skill's instructions.
const MAX_LISTED_FILES: usize = 100;

/// How deep below the skill's folder files are listed.
const MAX_LISTED_DEPTH: usize = 4;

/// Opens one of a fixed set of skills: the set an agent's prompt lists.
#[derive(Debug, Clone)]
pub struct OpenSkill {
    skills: Arc<SkillSet>,
}

/// The arguments of `open_skill`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSkillArgs {
    /// The skill's name, as the system prompt lists it.
    pub name: String,
    /// A file of the skill to read instead of its instructions: a path relative to the skill's
    /// folder, as the list of its files shows it.
    #[serde(default)]
    pub file: Option<String>,
}

impl OpenSkill {
    /// The tool's name.
    pub const TOOL_NAME: &'static str = "open_skill";

    /// The tool opening `skills`.
    pub fn new(skills: SkillSet) -> Self {
        Self { skills: Arc::new(skills) }
    }

    fn skill(&self, name: &str) -> Result<&Skill, ToolError> {
        self.skills.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.skills.skills().map(|s| s.name.as_str()).collect();
            ToolError::InvalidArguments(format!(
                "there is no skill called `{name}`; the skills are: {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })
    }
}

#[async_trait]
impl TypedTool for OpenSkill {
    type Args = OpenSkillArgs;
    const NAME: &'static str = Self::TOOL_NAME;

    fn description(&self) -> String {
        "Open a skill listed in the system prompt under `# Skills`: returns its instructions and the files \
         beside them (with absolute paths). Open a skill before doing a task it covers, and follow it. Pass \
         `file` (a path from that list) to read one of its files. Run a skill's scripts with the shell tool, \
         by their absolute paths."
            .into()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    async fn run(&self, args: OpenSkillArgs, _ctx: &ToolContext) -> Result<String, ToolError> {
        let skill = self.skill(&args.name)?.clone();
        let blocking = tokio::task::spawn_blocking(move || match args.file {
            Some(file) => read_file(&skill, &file),
            None => instructions(&skill),
        });
        blocking.await.map_err(|e| ToolError::Failed(format!("opening the skill failed: {e}")))?
    }
}

/// The skill's body (read again, so an edit shows at once) and the list of its files.
fn instructions(skill: &Skill) -> Result<String, ToolError> {
    let text = std::fs::read_to_string(&skill.file).map_err(|e| {
        ToolError::Failed(format!(
            "the skill `{}` cannot be read ({}): {e}",
            skill.name,
            skill.file.display()
        ))
    })?;
    let body = match front_matter::parse(&text) {
        Ok((_, body)) => body,
        Err(problem) => {
            return Err(ToolError::Failed(format!(
                "the skill `{}` was changed and is now broken ({}:{}: {}); tell the user",
                skill.name,
                skill.file.display(),
                problem.line,
                problem.message
            )));
        }
    };
    let mut out = format!(
        "# Skill `{}`\n\n{}\n\nIts folder: {}\n\n{}",
        skill.name,
        skill.description,
        skill.dir.display(),
        clip_text(body.trim(), MAX_RETURNED_BYTES)
    );
    let (files, more) = files_beside(&skill.dir);
    if files.is_empty() {
        out.push_str("\n\n(No other files in the skill's folder.)");
        return Ok(out);
    }
    out.push_str(&format!(
        "\n\n## Files in the skill's folder\n\nRead one with open_skill {{\"name\": \"{}\", \"file\": \"PATH\"}}; run a \
         script with the shell tool by its absolute path.\n",
        skill.name
    ));
    for file in &files {
        let relative = file.path.strip_prefix(&skill.dir).unwrap_or(&file.path);
        let _ = write!(out, "\n- {} ({}", relative.display(), file.path.display());
        out.push_str(if file.executable { ", executable)" } else { ")" });
    }
    if more {
        out.push_str(&format!("\n[… more files: only the first {MAX_LISTED_FILES} are listed]"));
    }
    Ok(out)
}

/// One of the skill's files, jailed to its folder.
fn read_file(skill: &Skill, file: &str) -> Result<String, ToolError> {
    let jail = Jail::new(&skill.dir)?;
    let path = jail.resolve(file).map_err(|e| match e {
        ToolError::Refused(why) => ToolError::Refused(why.replace("workspace", "skill's folder")),
        other => other,
    })?;
    let bytes = std::fs::read(&path).map_err(|e| {
        ToolError::Failed(format!("`{file}` of the skill `{}` cannot be read: {e}", skill.name))
    })?;
    if looks_binary(&bytes) {
        return Err(ToolError::Failed(format!(
            "`{file}` is a binary file ({} bytes); run it with the shell tool ({}) instead of reading it",
            bytes.len(),
            path.display()
        )));
    }
    Ok(clip_text(&String::from_utf8_lossy(&bytes), MAX_RETURNED_BYTES))
}

struct Listed {
    path: PathBuf,
    executable: bool,
}

/// The files below `dir` but its `SKILL.md`, in path order, hidden ones and symbolic links left
/// out; and whether there were more than listed.
fn files_beside(dir: &Path) -> (Vec<Listed>, bool) {
    let mut files = Vec::new();
    let mut more = false;
    walk(dir, &dir.join(SKILL_FILE), 0, &mut files, &mut more);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, more)
}

fn walk(dir: &Path, skip: &Path, depth: usize, files: &mut Vec<Listed>, more: &mut bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        if *more {
            return;
        }
        if entry.file_name().to_string_lossy().starts_with('.') || entry.path() == skip {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth + 1 < MAX_LISTED_DEPTH {
            walk(&entry.path(), skip, depth + 1, files, more);
        } else if kind.is_file() {
            if files.len() == MAX_LISTED_FILES {
                *more = true;
                return;
            }
            files.push(Listed { executable: executable(&entry), path: entry.path() });
        }
    }
}

#[cfg(unix)]
fn executable(entry: &std::fs::DirEntry) -> bool {
    use std::os::unix::fs::PermissionsExt;
    entry.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn executable(_entry: &std::fs::DirEntry) -> bool {
    false
}
