//! A `SKILL.md`'s front matter: the YAML between the opening and closing `---` lines, with its
//! `name`, `description` and optional `baskets`, checked, and where the body starts.
//!
//! Other keys (Anthropic's `license`, `allowed-tools`, `metadata`) are accepted and ignored, so a
//! skill written for another agent loads as it is.

use crate::baskets::Basket;
use serde::Deserialize;

/// Most characters in a skill's name.
pub const MAX_NAME_CHARS: usize = 64;

/// Most characters in a skill's description.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// What the front matter says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontMatter {
    /// The skill's name (lower-case letters, digits, `-`, `_`).
    pub name: String,
    /// When to use it, on one line (runs of white space folded into one space).
    pub description: String,
    /// Its baskets.
    pub baskets: Vec<Basket>,
}

/// What is wrong with a front matter: the line (1-based, in the whole file) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, counting from the file's first line.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The keys as written: everything optional, so a missing one gets a message of ours.
#[derive(Deserialize)]
struct Raw {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    baskets: Option<Baskets>,
}

/// `baskets: files` or `baskets: [files, web/fetch]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Baskets {
    One(String),
    Many(Vec<String>),
}

/// The front matter of `text` (a whole `SKILL.md`) and its body (what follows the closing `---`).
pub fn parse(text: &str) -> Result<(FrontMatter, &str), Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err(Problem {
            line: 1,
            message:
                "SKILL.md must start with its front matter: a `---` line, then `name:` and `description:` \
                      lines, then a closing `---` line"
                    .into(),
        });
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    let mut closing = None;
    for line in lines {
        if line.trim_end() == "---" {
            closing = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((yaml_end, body_start)) = closing else {
        return Err(Problem {
            line: 1,
            message: "the front matter opened on line 1 is never closed: add a `---` line after its last key"
                .into(),
        });
    };
    let yaml = &text[yaml_start..yaml_end];
    // The front matter's first line is the file's second.
    let raw: Raw = serde_yaml_ng::from_str(yaml).map_err(|e| Problem {
        line: e.location().map_or(2, |l| l.line() + 1),
        message: format!("the front matter is not valid YAML: {}; fix the YAML there", without_location(&e)),
    })?;
    let at = |key: &str| {
        yaml.lines().position(|l| l.trim_start().starts_with(&format!("{key}:"))).map_or(2, |i| i + 2)
    };
    let name = raw.name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if name.is_empty() {
        return Err(Problem {
            line: at("name"),
            message:
                "the front matter has no `name`: add `name: my-skill` (lower-case letters, digits, `-`, `_`)"
                    .into(),
        });
    }
    if name.chars().count() > MAX_NAME_CHARS
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(Problem {
            line: at("name"),
            message: format!(
                "the name `{name}` is not usable: use at most {MAX_NAME_CHARS} lower-case letters, digits, `-` and `_`"
            ),
        });
    }
    let description = raw.description.unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    if description.is_empty() {
        return Err(Problem {
            line: at("description"),
            message:
                "the front matter has no `description`: add `description: ` and one sentence saying what the \
                      skill does and when to use it (the model sees only that until it opens the skill)"
                    .into(),
        });
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Problem {
            line: at("description"),
            message: format!(
                "the description is longer than {MAX_DESCRIPTION_CHARS} characters: shorten it and move the \
                 details into the body"
            ),
        });
    }
    let names = match raw.baskets {
        None => Vec::new(),
        Some(Baskets::One(one)) => vec![one],
        Some(Baskets::Many(many)) => many,
    };
    let baskets = names
        .iter()
        .map(|b| Basket::parse(b.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem { line: at("baskets"), message: e.to_string() })?;
    Ok((FrontMatter { name, description, baskets }, &text[body_start..]))
}

/// The YAML error's message without its ` at line L column C`, which counts from the front
/// matter's first line rather than the file's (the [`Problem`] carries the file's line).
fn without_location(error: &serde_yaml_ng::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn name_description_and_baskets_are_read_and_the_body_follows() {
        let text = "---\nname: pdf-forms\ndescription: >\n  Fill PDF forms.\n  Use for any .pdf form.\nbaskets: [files/write, documents]\nlicense: MIT\n---\n# Filling forms\nRun scripts/fill.py.\n";
        let (front, body) = parse(text).unwrap();
        assert_eq!(front.name, "pdf-forms");
        assert_eq!(front.description, "Fill PDF forms. Use for any .pdf form.");
        let baskets: Vec<&str> = front.baskets.iter().map(Basket::as_str).collect();
        assert_eq!(baskets, ["files/write", "documents"]);
        assert_eq!(body, "# Filling forms\nRun scripts/fill.py.\n");
    }

    #[test]
    fn one_basket_may_be_written_without_a_list() {
        let (front, _) = parse("---\nname: a\ndescription: b\nbaskets: web\n---\n").unwrap();
        assert_eq!(front.baskets, vec![Basket::parse("web").unwrap()]);
    }

    #[test]
    fn a_file_without_front_matter_is_told_how_to_start() {
        let problem = parse("# My skill\n").unwrap_err();
        assert_eq!(problem.line, 1);
        assert!(problem.message.contains("must start with its front matter"), "{}", problem.message);
    }

    #[test]
    fn an_unclosed_front_matter_is_told_to_close_it() {
        let problem = parse("---\nname: a\ndescription: b\n").unwrap_err();
        assert!(problem.message.contains("never closed"), "{}", problem.message);
    }

    #[test]
    fn broken_yaml_names_the_line_in_the_file() {
        let problem = parse("---\nname: a\ndescription: [unclosed\n---\nbody\n").unwrap_err();
        assert!(problem.message.starts_with("the front matter is not valid YAML"), "{}", problem.message);
        assert!(!problem.message.contains(" at line "), "{}", problem.message);
        assert!((3..=4).contains(&problem.line), "line {}", problem.line);
    }

    #[test]
    fn missing_keys_say_which_and_where() {
        let problem = parse("---\ndescription: b\n---\n").unwrap_err();
        assert!(problem.message.contains("no `name`"), "{}", problem.message);
        let problem = parse("---\nname: a\n---\n").unwrap_err();
        assert!(problem.message.contains("no `description`"), "{}", problem.message);
        let problem = parse("---\nname: a\ndescription: b\nbaskets: [Files]\n---\n").unwrap_err();
        assert_eq!(problem.line, 4);
        assert!(problem.message.contains("`Files` is not a basket"), "{}", problem.message);
    }

    #[test]
    fn names_that_could_not_be_typed_or_listed_are_refused() {
        let problem = parse("---\nname: My Skill\ndescription: b\n---\n").unwrap_err();
        assert_eq!(problem.line, 2);
        assert!(problem.message.contains("`My Skill` is not usable"), "{}", problem.message);
    }
}
