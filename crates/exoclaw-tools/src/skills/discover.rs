//! Finding skills: each sub-folder of a skills folder that holds a `SKILL.md`, read and checked.
//! Folders are read in the order given, so a later one (the workspace's) wins a name clash with
//! an earlier one (the home's); every problem is kept as a [`SkillError`] and the other skills
//! still load.

use super::{SKILL_FILE, Skill, SkillError, SkillRoot, SkillSet, front_matter};
use std::io::ErrorKind;
use std::path::Path;

/// The largest `SKILL.md` read: instructions, not a manual (references go in files beside it).
pub const MAX_SKILL_FILE_BYTES: u64 = 256 * 1024;

impl SkillSet {
    /// The skills in `roots`, read in order: on a name clash the later root's skill is kept (and
    /// the clash reported); within one root, the first folder in name order. A root that does not
    /// exist has no skills; folders whose names start with `.` are skipped.
    pub fn discover(roots: &[SkillRoot]) -> Self {
        let mut set = Self::default();
        for root in roots {
            set.read_root(root);
        }
        set
    }

    fn read_root(&mut self, root: &SkillRoot) {
        let entries = match std::fs::read_dir(&root.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => {
                self.problems.push(SkillError::Unreadable { path: root.dir.clone(), error: e.to_string() });
                return;
            }
        };
        let mut dirs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .filter(|path| path.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
            .collect();
        dirs.sort();
        let mut seen_here = std::collections::BTreeSet::new();
        for dir in dirs {
            let skill = match read_skill(&dir, root) {
                Ok(skill) => skill,
                Err(problem) => {
                    self.problems.push(problem);
                    continue;
                }
            };
            if !seen_here.insert(skill.name.clone())
                && let Some(first) = self.skills.get(&skill.name)
            {
                // Two folders of one root: the first in name order stays.
                self.problems.push(SkillError::Clash {
                    name: skill.name.clone(),
                    kept: first.file.clone(),
                    dropped: skill.file,
                });
                continue;
            }
            if let Some(earlier) = self.skills.insert(skill.name.clone(), skill.clone()) {
                self.problems.push(SkillError::Clash {
                    name: skill.name,
                    kept: skill.file,
                    dropped: earlier.file,
                });
            }
        }
    }
}

/// The skill in `dir`, from its `SKILL.md`.
fn read_skill(dir: &Path, root: &SkillRoot) -> Result<Skill, SkillError> {
    let file = dir.join(SKILL_FILE);
    let meta = match std::fs::metadata(&file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(SkillError::NoSkillFile { dir: dir.to_owned(), root: root.dir.clone() });
        }
        Err(e) => return Err(SkillError::Unreadable { path: file, error: e.to_string() }),
    };
    if meta.len() > MAX_SKILL_FILE_BYTES {
        return Err(SkillError::TooBig { file, bytes: meta.len(), max: MAX_SKILL_FILE_BYTES });
    }
    let text = std::fs::read_to_string(&file)
        .map_err(|e| SkillError::Unreadable { path: file.clone(), error: e.to_string() })?;
    let (front, _) = front_matter::parse(&text).map_err(|problem| SkillError::FrontMatter {
        file: file.clone(),
        line: problem.line,
        message: problem.message,
    })?;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    Ok(Skill {
        name: front.name,
        description: front.description,
        baskets: front.baskets,
        file: dir.join(SKILL_FILE),
        dir,
        origin: root.origin,
    })
}
