//! Skills: folders holding a `SKILL.md` (YAML front matter with `name`, `description` and optional
//! `baskets`; a body of instructions) and any scripts or references beside it.
//!
//! Skills are disclosed progressively: the system prompt lists only each skill's name and
//! description ([`SkillSet::prompt_section`]); the model calls [`OpenSkill`] (`open_skill`) to
//! read a skill's body and the list of its files, with their absolute paths, and can read those
//! files through the same tool. Scripts run through `shell`, so the sandbox and the permission
//! rules apply to them as to any command.
//!
//! - [`front_matter`]: parsing and checking a `SKILL.md`'s front matter;
//! - [`discover`](SkillSet::discover): finding skills in skill folders, later folders winning on a
//!   name clash, every problem a [`SkillError`] naming the file and what to do while the other
//!   skills still load;
//! - [`OpenSkill`]: the tool;
//! - [`SkillSet::prompt_section`]: the list in the system prompt, capped.

mod discover;
pub mod front_matter;
mod open;
mod prompt;

pub use open::{OpenSkill, OpenSkillArgs};
pub use prompt::{MAX_PROMPT_BYTES, MAX_PROMPT_DESCRIPTION_CHARS};

use crate::baskets::{self, Basket};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The file that makes a folder a skill.
pub const SKILL_FILE: &str = "SKILL.md";

/// Where a skill folder is, for messages and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkillOrigin {
    /// exoclaw's home (`~/.exoclaw/skills`): the user's own.
    Home,
    /// The workspace's `.exoclaw/skills`: the project's.
    Workspace,
}

impl SkillOrigin {
    /// `home` or `workspace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Home => "home",
            Self::Workspace => "workspace",
        }
    }
}

/// A folder of skills (each a sub-folder with a `SKILL.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillRoot {
    /// The folder.
    pub dir: PathBuf,
    /// Whose it is.
    pub origin: SkillOrigin,
}

/// One skill as listed: what its front matter says and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    /// Its name, as the model opens it.
    pub name: String,
    /// When to use it, on one line.
    pub description: String,
    /// Its baskets.
    pub baskets: Vec<Basket>,
    /// Its folder (absolute).
    pub dir: PathBuf,
    /// Its `SKILL.md`.
    pub file: PathBuf,
    /// Whose folder it came from.
    pub origin: SkillOrigin,
}

/// Something wrong with a skill or a skill folder. The skill in question is left out; the others
/// load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SkillError {
    /// A `SKILL.md`'s front matter is missing, broken or incomplete.
    #[error("the skill {}:{line} was not loaded: {message}", file.display())]
    FrontMatter {
        /// The `SKILL.md`.
        file: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A `SKILL.md` or a skill folder could not be read.
    #[error("the skill {} was not loaded: it cannot be read ({error}); check its permissions", path.display())]
    Unreadable {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A `SKILL.md` is too big to be instructions.
    #[error(
        "the skill {} was not loaded: it has {bytes} bytes, more than {max}; move reference material into other files beside it (the model can open them)",
        file.display()
    )]
    TooBig {
        /// The `SKILL.md`.
        file: PathBuf,
        /// Its size.
        bytes: u64,
        /// The most allowed.
        max: u64,
    },
    /// A folder in a skills folder has no `SKILL.md`.
    #[error(
        "{} is not a skill: it has no SKILL.md; add one (front matter with `name` and `description`), or move the folder out of {}",
        dir.display(),
        root.display()
    )]
    NoSkillFile {
        /// The folder.
        dir: PathBuf,
        /// The skills folder it is in.
        root: PathBuf,
    },
    /// A workspace's skills folder, left unread because the workspace is not trusted: its skills'
    /// descriptions would reach the system prompt and their scripts look like the user's own.
    #[error(
        "the skills in {} were not loaded: the folder is not trusted (or changed since it was); run `exoclaw trust` there to load them",
        dir.display()
    )]
    NotTrusted {
        /// The skills folder.
        dir: PathBuf,
    },
    /// Two skills have the same name: `kept` is used, `dropped` is not.
    #[error(
        "two skills are called `{name}`: {} is used and {} is not; rename one of them to keep both",
        kept.display(),
        dropped.display()
    )]
    Clash {
        /// The name.
        name: String,
        /// The `SKILL.md` used (the workspace's, over the home's).
        kept: PathBuf,
        /// The `SKILL.md` left out.
        dropped: PathBuf,
    },
}

/// The skills found, by name, and what went wrong finding them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkillSet {
    skills: BTreeMap<String, Skill>,
    problems: Vec<SkillError>,
}

impl SkillSet {
    /// The skills, in name order.
    pub fn skills(&self) -> impl Iterator<Item = &Skill> {
        self.skills.values()
    }

    /// The skill called `name`.
    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.get(name)
    }

    /// How many skills there are.
    pub fn len(&self) -> usize {
        self.skills.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.skills.is_empty()
    }

    /// What went wrong while finding them, in the order found: each skill concerned was left out.
    pub fn problems(&self) -> &[SkillError] {
        &self.problems
    }

    /// Adds `problem` (something found outside the skill folders, such as a workspace whose skills
    /// are not loaded because it is not trusted).
    pub fn push_problem(&mut self, problem: SkillError) {
        self.problems.push(problem);
    }

    /// The same set with only the skills in `wanted` baskets (all of them when `wanted` is empty);
    /// the problems are kept.
    pub fn narrowed(&self, wanted: &[Basket]) -> Self {
        let skills = self
            .skills
            .iter()
            .filter(|(_, skill)| baskets::matches(&skill.baskets, wanted))
            .map(|(name, skill)| (name.clone(), skill.clone()))
            .collect();
        Self { skills, problems: self.problems.clone() }
    }
}

#[cfg(test)]
mod tests;
