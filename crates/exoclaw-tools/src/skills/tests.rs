use super::*;
use exoclaw_core::{ToolContext, ToolError, TypedTool};
use pretty_assertions::assert_eq;
use std::path::Path;

/// A home and a workspace skills folder in one temporary directory.
struct Folders {
    dir: tempfile::TempDir,
}

impl Folders {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home/skills")
    }

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("ws/.exoclaw/skills")
    }

    fn roots(&self) -> Vec<SkillRoot> {
        vec![
            SkillRoot { dir: self.home(), origin: SkillOrigin::Home },
            SkillRoot { dir: self.workspace(), origin: SkillOrigin::Workspace },
        ]
    }

    fn write(&self, root: &Path, rel: &str, text: &str) -> PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn skill(&self, root: &Path, folder: &str, name: &str, description: &str) -> PathBuf {
        self.write(
            root,
            &format!("{folder}/SKILL.md"),
            &format!("---\nname: {name}\ndescription: {description}\n---\nDo the {name} thing.\n"),
        )
    }
}

fn names(set: &SkillSet) -> Vec<&str> {
    set.skills().map(|s| s.name.as_str()).collect()
}

#[test]
fn skills_are_found_in_both_folders_by_name() {
    let f = Folders::new();
    f.skill(&f.home(), "pdf", "pdf", "Fill PDF forms.");
    f.skill(&f.workspace(), "deploy", "deploy", "Deploy this project.");
    let set = SkillSet::discover(&f.roots());
    assert_eq!(names(&set), ["deploy", "pdf"]);
    assert_eq!(set.get("pdf").unwrap().origin, SkillOrigin::Home);
    assert_eq!(set.get("deploy").unwrap().origin, SkillOrigin::Workspace);
    assert!(set.get("pdf").unwrap().dir.is_absolute());
    assert_eq!(set.problems(), &[]);
}

#[test]
fn missing_folders_mean_no_skills_and_no_complaint() {
    let set = SkillSet::discover(&Folders::new().roots());
    assert!(set.is_empty());
    assert_eq!(set.problems(), &[]);
}

#[test]
fn the_workspace_wins_a_name_clash_and_the_clash_is_reported() {
    let f = Folders::new();
    let home = f.skill(&f.home(), "review", "review", "The user's review.");
    let ws = f.skill(&f.workspace(), "review", "review", "The project's review.");
    let set = SkillSet::discover(&f.roots());
    assert_eq!(set.get("review").unwrap().description, "The project's review.");
    assert_eq!(set.problems().len(), 1);
    let message = set.problems()[0].to_string();
    assert!(message.contains("two skills are called `review`"), "{message}");
    assert!(message.contains(&format!("{} is used", ws.display())), "{message}");
    assert!(message.contains(&format!("{} is not", home.display())), "{message}");
    assert!(message.ends_with("rename one of them to keep both"), "{message}");
}

#[test]
fn a_broken_skill_is_reported_with_its_file_and_line_and_the_others_still_load() {
    let f = Folders::new();
    f.skill(&f.home(), "good", "good", "Works.");
    let broken = f.write(&f.home(), "broken/SKILL.md", "---\nname: broken\ndescription: [oops\n---\n");
    f.write(&f.home(), "notes/README.md", "not a skill");
    let set = SkillSet::discover(&f.roots());
    assert_eq!(names(&set), ["good"]);
    let messages: Vec<String> = set.problems().iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with(&format!("the skill {}:", broken.display())), "{messages:?}");
    assert!(messages[0].contains("not valid YAML") && messages[0].contains("fix the YAML"), "{messages:?}");
    assert!(messages[1].contains("notes is not a skill: it has no SKILL.md"), "{messages:?}");
}

#[test]
fn narrowing_keeps_the_skills_in_the_baskets_asked_for() {
    let f = Folders::new();
    f.write(&f.home(), "a/SKILL.md", "---\nname: a\ndescription: x\nbaskets: [files/write]\n---\n");
    f.write(&f.home(), "b/SKILL.md", "---\nname: b\ndescription: x\nbaskets: web\n---\n");
    f.skill(&f.home(), "c", "c", "in no basket");
    let set = SkillSet::discover(&f.roots());
    let files = set.narrowed(&[Basket::parse("files").unwrap()]);
    assert_eq!(names(&files), ["a"]);
    assert_eq!(names(&set.narrowed(&[])), ["a", "b", "c"]);
}

#[test]
fn the_prompt_lists_names_and_descriptions_only() {
    let f = Folders::new();
    f.skill(&f.home(), "pdf", "pdf", "Fill PDF forms.");
    let set = SkillSet::discover(&f.roots());
    let section = set.prompt_section().unwrap();
    assert!(section.starts_with("# Skills\n"), "{section}");
    assert!(section.contains("call `open_skill` with its name"), "{section}");
    assert!(section.ends_with("\n- pdf: Fill PDF forms."), "{section}");
    assert!(!section.contains("Do the pdf thing"), "the body waits until the skill is opened");
    assert_eq!(SkillSet::default().prompt_section(), None);
}

#[test]
fn the_prompt_is_capped_and_says_how_many_were_left_out() {
    let f = Folders::new();
    let long = "word ".repeat(150);
    for i in 0..60 {
        f.skill(&f.home(), &format!("s{i:02}"), &format!("s{i:02}"), &long);
    }
    let section = SkillSet::discover(&f.roots()).prompt_section().unwrap();
    assert!(section.len() <= MAX_PROMPT_BYTES + 200, "{}", section.len());
    let listed = section.lines().filter(|l| l.starts_with("- s")).count();
    assert!(listed < 60, "{listed}");
    assert!(section.ends_with(&format!(
        "[… {} more skills are not listed: the list is capped at 8192 bytes]",
        60 - listed
    )));
    assert!(section.contains("more characters on this line"), "a long description is clipped");
}

async fn open(set: SkillSet, args: serde_json::Value) -> Result<String, ToolError> {
    let tool = OpenSkill::new(set);
    let args = serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
    tool.run(args, &ToolContext::new(std::env::temp_dir())).await
}

#[tokio::test]
async fn opening_a_skill_gives_its_body_and_its_files_with_absolute_paths() {
    let f = Folders::new();
    f.skill(&f.home(), "pdf", "pdf", "Fill PDF forms.");
    let script = f.write(&f.home(), "pdf/scripts/fill.sh", "#!/bin/sh\necho filled\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    f.write(&f.home(), "pdf/reference.md", "# Fields\n");
    let text = open(SkillSet::discover(&f.roots()), serde_json::json!({"name": "pdf"})).await.unwrap();
    assert!(text.starts_with("# Skill `pdf`\n\nFill PDF forms."), "{text}");
    assert!(text.contains("Do the pdf thing."), "{text}");
    assert!(!text.contains("name: pdf"), "the front matter is not repeated: {text}");
    let home = f.home().join("pdf");
    assert!(text.contains(&format!("- reference.md ({})", home.join("reference.md").display())), "{text}");
    assert!(text.contains(&format!("- scripts/fill.sh ({}, executable)", script.display())), "{text}");
    assert!(!text.contains("- SKILL.md"), "{text}");
}

#[tokio::test]
async fn a_file_of_the_skill_can_be_read_but_nothing_outside_it() {
    let f = Folders::new();
    f.skill(&f.home(), "pdf", "pdf", "Fill PDF forms.");
    f.write(&f.home(), "pdf/reference.md", "# Fields\nname, date\n");
    f.write(f.dir.path(), "home/config.toml", "api_key = 'x'");
    let set = SkillSet::discover(&f.roots());
    let text = open(set.clone(), serde_json::json!({"name": "pdf", "file": "reference.md"})).await.unwrap();
    assert_eq!(text, "# Fields\nname, date\n");
    let refused =
        open(set, serde_json::json!({"name": "pdf", "file": "../../config.toml"})).await.unwrap_err();
    assert!(matches!(&refused, ToolError::Refused(why) if why.contains("skill's folder")), "{refused:?}");
}

#[tokio::test]
async fn an_unknown_skill_is_refused_naming_the_skills_there_are() {
    let f = Folders::new();
    f.skill(&f.home(), "pdf", "pdf", "Fill PDF forms.");
    let error = open(SkillSet::discover(&f.roots()), serde_json::json!({"name": "pfd"})).await.unwrap_err();
    assert_eq!(
        error,
        ToolError::InvalidArguments("there is no skill called `pfd`; the skills are: pdf".into())
    );
}

#[tokio::test]
async fn a_skill_broken_after_it_was_listed_says_so_when_opened() {
    let f = Folders::new();
    let file = f.skill(&f.home(), "pdf", "pdf", "Fill PDF forms.");
    let set = SkillSet::discover(&f.roots());
    std::fs::write(&file, "no front matter any more").unwrap();
    let error = open(set, serde_json::json!({"name": "pdf"})).await.unwrap_err();
    assert!(
        matches!(&error, ToolError::Failed(m) if m.contains("is now broken") && m.contains(":1:")),
        "{error:?}"
    );
}
