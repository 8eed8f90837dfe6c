//! `exoclaw audit`: the audit log — every permission decision (which rule or default, in which
//! scope and file), every answer, every executed call that changed something or reached outside —
//! and `exoclaw permissions`: every rule in effect here, with its scope and file, so that every
//! grant is visible.
//!
//! Resources came from models: on the way to a terminal their control characters are escaped.

#![allow(clippy::print_stdout)]

use crate::app::App;
use crate::output::escape_untrusted;
use anyhow::Context;
use exoclaw::config::{Config, PermissionScopes, permissions::ProjectRules};
use exoclaw_core::{AuditEntry, AuditEvent, AuditLog, AuditQuery, Listed, PermissionPolicy, Rule};
use exoclaw_types::SessionId;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `exoclaw audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this session's entries (its id, or a unique prefix of a stored session's id).
    #[arg(long)]
    session: Option<String>,
    /// Only this tool's entries.
    #[arg(long)]
    tool: Option<String>,
    /// How many of the most recent entries.
    #[arg(short = 'n', long, default_value_t = 50)]
    limit: u32,
    /// As JSON: an array of entries, oldest first.
    #[arg(long)]
    json: bool,
}

/// `exoclaw permissions`.
#[derive(Debug, clap::Args)]
pub struct PermissionsArgs {
    /// The workspace whose `.exoclaw/permissions.toml` counts (default: the current folder).
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// As JSON: `{"defaults": {…}, "rules": […], "workspace": …, "project": …}`.
    #[arg(long)]
    json: bool,
}

/// Runs `exoclaw audit`.
pub async fn run(config: Option<&Path>, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    let session = match args.session.as_deref() {
        None => None,
        // A full id is taken as it is: a deleted session keeps its audit trail.
        Some(id) => Some(match id.parse::<SessionId>() {
            Ok(full) => full,
            Err(_) => crate::sessions::find(&app, id).await?.id,
        }),
    };
    let query = AuditQuery { session, tool: args.tool.clone(), limit: args.limit.max(1) };
    let mut entries = app.store.audit_entries(&query).await.context("cannot read the audit log")?;
    entries.reverse();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!(
            "the audit log has no entries{}",
            if session.is_some() || args.tool.is_some() { " that match" } else { " yet" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    for entry in &entries {
        println!("{}", escape_untrusted(&line(entry), false));
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry on one line: when, session, tool, what happened and why, what it touched.
pub fn line(entry: &AuditEntry) -> String {
    let session =
        entry.session_id.map_or_else(|| "-".to_owned(), |s| s.to_string().chars().take(8).collect());
    let what = match &entry.event {
        AuditEvent::Decided { permission, reason } => {
            format!("{:<8} {:<6} by {reason}", "decided", permission.as_str())
        }
        AuditEvent::Answered { decision, remembered } => {
            let answer = serde_json::to_value(decision).ok().and_then(|v| v.as_str().map(str::to_owned));
            let mut text = format!("{:<8} {}", "answered", answer.unwrap_or_default());
            if !remembered.is_empty() {
                let rules: Vec<String> = remembered.iter().map(Rule::to_string).collect();
                text.push_str(&format!(", remembering {}", rules.join(", ")));
            }
            text
        }
        AuditEvent::Executed { ok, duration_ms } => {
            format!("{:<8} {:<6} in {duration_ms} ms", "ran", if *ok { "ok" } else { "error" })
        }
        _ => "(an entry of a newer exoclaw)".to_owned(),
    };
    let touched: Vec<String> = entry.resources.iter().map(ToString::to_string).collect();
    let touched = if touched.is_empty() { String::new() } else { format!(" — {}", touched.join("; ")) };
    format!("{}  {session:<8}  {:<14} {what}{touched}", entry.at.format("%Y-%m-%d %H:%M:%S"), entry.tool)
}

/// What `exoclaw permissions --json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    defaults: &'a PermissionPolicy,
    rules: Vec<Listed>,
    workspace: String,
    /// The workspace's permissions file, and whether the folder is trusted.
    project: Option<Project>,
}

#[derive(Debug, Serialize)]
struct Project {
    file: String,
    trusted: bool,
}

/// Runs `exoclaw permissions`.
pub fn permissions(config: Option<&Path>, args: PermissionsArgs) -> anyhow::Result<ExitCode> {
    let loaded = Config::load_after_dotenv(config)?;
    let workspace = match args.workspace {
        Some(dir) => dir,
        None => std::env::current_dir().context("the current directory is not readable")?,
    };
    let workspace = workspace
        .canonicalize()
        .with_context(|| format!("the workspace {} cannot be used", workspace.display()))?;
    let config_file = loaded.path.clone().unwrap_or_else(|| loaded.config_file());
    let scopes = PermissionScopes::with_home(&loaded.home)?.with_config_file(Some(config_file));
    let policy = &loaded.config.permissions;
    let permissions = scopes.for_workspace(policy, &workspace)?;
    let project = ProjectRules::read(&workspace, Some(&loaded.home))?
        .map(|p| Project { file: p.file.display().to_string(), trusted: p.trusted });
    let defaults = permissions.defaults();
    let report = Report {
        defaults,
        rules: permissions.rules(None),
        workspace: workspace.display().to_string(),
        project,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&report));
    Ok(ExitCode::SUCCESS)
}

fn render(report: &Report<'_>) -> String {
    let d = report.defaults;
    let mut out = format!(
        "When no rule matches: read_only = {}, mutating = {}, external = {}",
        d.read_only.as_str(),
        d.mutating.as_str(),
        d.external.as_str()
    );
    let tools: Vec<String> = d
        .tools
        .iter()
        .filter(|(_, p)| **p != exoclaw_core::Permission::Deny)
        .map(|(t, p)| format!("{t} = {}", p.as_str()))
        .collect();
    if !tools.is_empty() {
        out.push_str(&format!("\n  tool defaults: {}", tools.join(", ")));
    }
    if d.auto_approve {
        out.push_str("\n  auto_approve = true: every call that would ask runs without asking");
    }
    out.push_str("\n\n");
    if report.rules.is_empty() {
        out.push_str("No rules: the defaults above decide every call.\n");
    } else {
        out.push_str("Rules (deny beats ask beats allow, whatever the scope):\n");
        out.push_str(&format!("{:<8} {:<6} {:<20} {:<28} {}\n", "SCOPE", "RULE", "TOOL", "RESOURCE", "FILE"));
        for listed in &report.rules {
            let rule = &listed.entry.rule;
            let resource = match (&rule.path, &rule.host, &rule.command) {
                (Some(path), _, _) => format!("path {path}"),
                (_, Some(host), _) => format!("host {host}"),
                (_, _, Some(command)) => format!("command {command}"),
                _ => "-".to_owned(),
            };
            let file = listed.entry.file.as_deref().unwrap_or("-");
            let ignored =
                if listed.in_effect { "" } else { "  (ignored: an untrusted folder may only deny or ask)" };
            let row = format!(
                "{:<8} {:<6} {:<20} {:<28} {file}{ignored}\n",
                listed.entry.scope.as_str(),
                rule.permission.as_str(),
                rule.tool,
                resource
            );
            out.push_str(&escape_untrusted(&row, true));
        }
    }
    match &report.project {
        Some(Project { file, trusted: false }) => out.push_str(&format!(
            "\n{file}: the folder is not trusted, so its allow rules are ignored; `exoclaw trust {}` lets them count\n",
            report.workspace
        )),
        Some(Project { file, trusted: true }) => out.push_str(&format!("\n{file}: the folder is trusted\n")),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_core::{Decision, Permission, Reason, Resource, RuleEntry, Scope};
    use exoclaw_types::ToolEffect;
    use pretty_assertions::assert_eq;

    fn entry(event: AuditEvent) -> AuditEntry {
        AuditEntry {
            at: chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().into(),
            session_id: Some("0197a3b2-0000-7000-8000-000000000000".parse().unwrap()),
            agent: "default".into(),
            call_id: "c1".into(),
            tool: "shell".into(),
            effect: ToolEffect::Mutating,
            resources: vec![Resource::Command("git push".into())],
            event,
        }
    }

    #[test]
    fn an_entry_reads_on_one_line_with_who_decided() {
        let rule = RuleEntry {
            rule: Rule::new("shell", Permission::Ask).command("git push"),
            scope: Scope::Project,
            file: Some("/w/.exoclaw/permissions.toml".into()),
        };
        let decided =
            entry(AuditEvent::Decided { permission: Permission::Ask, reason: Reason::Rule(rule.into()) });
        assert_eq!(
            line(&decided),
            "2026-01-02 03:04:05  0197a3b2  shell          decided  ask    by rule { tool = \"shell\", command = \
             \"git push\", permission = \"ask\" } (project, /w/.exoclaw/permissions.toml) — command git push"
        );
        let answered =
            entry(AuditEvent::Answered { decision: Decision::ApproveForSession, remembered: vec![] });
        assert!(
            line(&answered).contains("answered approve_for_session — command git push"),
            "{}",
            line(&answered)
        );
        let ran = entry(AuditEvent::Executed { ok: false, duration_ms: 7 });
        assert!(line(&ran).contains("ran      error  in 7 ms"), "{}", line(&ran));
    }
}
