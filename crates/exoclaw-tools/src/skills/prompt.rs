//! The skills' part of the system prompt: each skill's name and description, and how to open one.
//! Capped, so a folder of many skills (or one long description) cannot crowd out the
//! conversation.

use super::{OpenSkill, SkillSet};
use crate::output::clip_line;

/// Most bytes of the skills' section of the system prompt; the skills that do not fit are counted
/// in a last line.
pub const MAX_PROMPT_BYTES: usize = 8 * 1024;

/// Most characters of one description in the prompt (the front matter allows more; the model sees
/// the whole of it when it opens the skill).
pub const MAX_PROMPT_DESCRIPTION_CHARS: usize = 300;

impl SkillSet {
    /// The section listing the skills for the system prompt, or `None` when there is none.
    pub fn prompt_section(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut text = format!(
            "# Skills\n\nSkills are instructions, and sometimes scripts, for particular tasks. When a task \
             matches a skill's description, call `{}` with its name before starting, and follow it.\n",
            OpenSkill::TOOL_NAME
        );
        let mut left_out = 0;
        for skill in self.skills() {
            let line = format!(
                "\n- {}: {}",
                skill.name,
                clip_line(&skill.description, MAX_PROMPT_DESCRIPTION_CHARS)
            );
            if left_out > 0 || text.len() + line.len() > MAX_PROMPT_BYTES {
                left_out += 1;
                continue;
            }
            text.push_str(&line);
        }
        if left_out > 0 {
            text.push_str(&format!(
                "\n[… {left_out} more skills are not listed: the list is capped at {MAX_PROMPT_BYTES} bytes]"
            ));
        }
        Some(text)
    }
}
