//! `exoclaw trust`: the folders whose `.env` may set what widens the agent's reach (the config
//! file, base URLs, proxies: `exoclaw::config::trust::ENV_RULES`), and, before any other command
//! runs, loading the current folder's `.env` with those held back unless the folder is trusted.
//! On a terminal the user is asked once; otherwise one warning on stderr names what was ignored
//! and the command that trusts the folder.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::output::escape_untrusted;
use anyhow::bail;
use exoclaw::config::DotEnvReport;
use exoclaw::config::load::{home_dir, load_folder_env};
use exoclaw::config::trust::{Folder, TrustStore, TrustedFolder};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `exoclaw trust [PATH] | --list | --revoke PATH`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
A folder's .env may set API keys and other harmless variables without being trusted. Variables
that widen what the agent may do or where keys go (EXOCLAW_CONFIG, EXOCLAW_HOME, *_BASE_URL,
*_PROXY, …; the list is in docs/configuration.md) are taken from it only once the folder is
trusted, and only while its .env is the one that was trusted.

Examples:
  exoclaw trust                  trust the current folder as its .env is now
  exoclaw trust ~/src/app
  exoclaw trust --list
  exoclaw trust --revoke ~/src/app")]
pub struct TrustArgs {
    /// The folder to trust, as its .env is now (default: the current folder).
    #[arg(value_name = "PATH", conflicts_with_all = ["list", "revoke"])]
    path: Option<PathBuf>,
    /// List the trusted folders, and whether each one's .env changed since.
    #[arg(long)]
    list: bool,
    /// Forget a trusted folder.
    #[arg(long, value_name = "PATH", conflicts_with = "list")]
    revoke: Option<PathBuf>,
}

/// Runs `exoclaw trust`.
pub fn run(args: TrustArgs) -> anyhow::Result<ExitCode> {
    let mut store = TrustStore::open(&home_dir()?)?;
    if args.list {
        list(&store);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = args.revoke {
        let Some(gone) = store.revoke(&path) else {
            bail!(
                "{} is not a trusted folder; `exoclaw trust --list` shows them",
                escape_untrusted(&path.display().to_string(), false)
            );
        };
        store.save()?;
        println!("{} is no longer trusted", escape_untrusted(&gone.path, false));
        return Ok(ExitCode::SUCCESS);
    }
    let folder = Folder::read(args.path.as_deref().unwrap_or(Path::new(".")))?;
    let widening = folder.widening_vars()?;
    store.trust(&folder, chrono::Utc::now())?;
    store.save()?;
    let shown = escape_untrusted(&folder.path.display().to_string(), false).into_owned();
    println!("trusted {shown} (sha256 {})", &folder.digest()[..16]);
    match folder.dotenv() {
        None => println!("it has no .env; if one appears, trust the folder again"),
        Some(_) if widening.is_empty() => println!("its .env sets nothing that needs trust"),
        Some(_) => println!(
            "its .env now sets {} there; if the .env changes, trust the folder again",
            widening.join(", ")
        ),
    }
    // A trusted folder's permission rules may widen too: say which allow rules now count.
    let rules_file = folder.path.join(exoclaw::config::permissions::PROJECT_FILE);
    let allowed: Vec<String> = exoclaw::config::permissions::read_rules(&rules_file)?
        .iter()
        .filter(|rule| rule.permission == exoclaw_core::Permission::Allow)
        .map(ToString::to_string)
        .collect();
    if !allowed.is_empty() {
        println!(
            "its {} allows {}; if the file changes, trust the folder again",
            exoclaw::config::permissions::PROJECT_FILE,
            escape_untrusted(&allowed.join(", "), false)
        );
    }
    // Its skills reach the prompt now: say which.
    let root = exoclaw_tools::skills::SkillRoot {
        dir: folder.path.join(exoclaw::runtime::skills::WORKSPACE_SKILLS_DIR),
        origin: exoclaw_tools::skills::SkillOrigin::Workspace,
    };
    let skills = exoclaw_tools::SkillSet::discover(&[root]);
    if !skills.is_empty() {
        let names: Vec<&str> = skills.skills().map(|s| s.name.as_str()).collect();
        println!(
            "its skills now load: {}; if any file of theirs changes, trust the folder again",
            escape_untrusted(&names.join(", "), false)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `exoclaw trust --list`: each folder, when it was trusted, and whether it still is.
fn list(store: &TrustStore) {
    if store.folders().is_empty() {
        println!("no trusted folders; `exoclaw trust [PATH]` trusts one");
        return;
    }
    for entry in store.folders() {
        println!("{}  trusted {}  {}", escape_untrusted(&entry.path, false), entry.trusted_at, state(entry));
    }
}

fn state(entry: &TrustedFolder) -> &'static str {
    match Folder::read(Path::new(&entry.path)) {
        Err(_) => "(the folder is gone)",
        Ok(folder) if folder.digest() == entry.sha256 => "(unchanged)",
        Ok(_) => "(changed since: not trusted until trusted again)",
    }
}

/// Loads the current folder's `.env` (see [`load_folder_env`]). When it sets widening variables
/// the folder is not trusted with, a user at a terminal is asked whether to trust it; otherwise,
/// or if they say no, those variables are ignored and stderr says so once.
///
/// Call it before the async runtime starts: it changes the environment.
pub fn load_dotenv() -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let report = load_folder_env(Path::new("."), &mut |report| interactive && ask(report))?;
    if !report.ignored.is_empty() {
        eprintln!("{}", warning(&report));
    }
    Ok(())
}

/// The folder, as shown and as typed in a shell.
fn folder_names(report: &DotEnvReport) -> (String, String) {
    let path = report.folder.as_deref().unwrap_or(Path::new(".")).display().to_string();
    (escape_untrusted(&path, false).into_owned(), shell_quoted(&path))
}

/// Asks on the terminal whether to trust the folder; anything but yes is no.
fn ask(report: &DotEnvReport) -> bool {
    let (shown, _) = folder_names(report);
    let changed = if report.changed { ", changed since you trusted it," } else { "" };
    eprintln!(
        "This folder's .env{changed} sets {}: settings that can widen what the agent may do or where your \
         keys go, which exoclaw takes only from folders you trust.",
        report.ignored.join(", ")
    );
    let question = format!("Trust {shown} as its .env is now? [y/N] ");
    // On the terminal itself, as the tool approvals are asked (see approve.rs).
    let config = rustyline::Config::builder().behavior(rustyline::Behavior::PreferTerm).build();
    let answer = rustyline::Editor::<(), rustyline::history::DefaultHistory>::with_config(config)
        .and_then(|mut editor| editor.readline(&question));
    matches!(answer.as_deref().map(str::trim), Ok("y" | "Y" | "yes" | "Yes"))
}

/// The one warning for variables held back.
fn warning(report: &DotEnvReport) -> String {
    let (shown, typed) = folder_names(report);
    let vars = report.ignored.join(", ");
    if report.changed {
        format!(
            "exoclaw: ignored {vars} from {shown}/.env: the .env changed since you trusted the folder. If \
             you trust it as it is now, run: exoclaw trust {typed}"
        )
    } else {
        format!(
            "exoclaw: ignored {vars} from {shown}/.env: these can widen what the agent may do or where your \
             keys go, so they are taken only from folders you trust. If you trust this one, run: exoclaw \
             trust {typed}"
        )
    }
}

/// `path` as a shell word: as it is when plain, else single-quoted.
fn shell_quoted(path: &str) -> String {
    let plain = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | ':' | '@'));
    if plain {
        path.to_owned()
    } else {
        format!("'{}'", escape_untrusted(&path.replace('\'', r"'\''"), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_variables_and_the_command() {
        let report = DotEnvReport {
            folder: Some(PathBuf::from("/src/my repo")),
            ignored: vec!["EXOCLAW_CONFIG".into(), "OPENAI_BASE_URL".into()],
            changed: false,
        };
        let text = warning(&report);
        assert!(
            text.starts_with("exoclaw: ignored EXOCLAW_CONFIG, OPENAI_BASE_URL from /src/my repo/.env"),
            "{text}"
        );
        assert!(text.ends_with("run: exoclaw trust '/src/my repo'"), "{text}");
        assert_eq!(shell_quoted("/src/it's"), r"'/src/it'\''s'");
        assert_eq!(shell_quoted("/src/app-1.2"), "/src/app-1.2");
    }
}
