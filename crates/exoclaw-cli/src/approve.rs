//! Asking the user before a tool changes something: a prompt on the terminal — yes once, for the
//! session, always (written to `~/.exoclaw/permissions.toml`), or no — or, when nobody is there to
//! answer, a refusal that says how to allow the call next time.

#![allow(clippy::print_stderr)]

use crate::render::describe_call_in_full;
use async_trait::async_trait;
use exoclaw_core::{ApprovalRequest, Approver, Decision, Rule};
use exoclaw_types::ToolEffect;
use std::io::IsTerminal;

/// The approver for this run: a prompt when stdin and stderr are a terminal, else refusals.
pub fn for_this_terminal() -> std::sync::Arc<dyn Approver> {
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        std::sync::Arc::new(TerminalApprover)
    } else {
        std::sync::Arc::new(Unattended)
    }
}

/// Prompts on the terminal. What an answer "for this session" or "always" allows is kept by the
/// runtime's permissions, which stop asking about calls it covers.
#[derive(Debug, Default, Clone, Copy)]
pub struct TerminalApprover;

/// The answers a request offers, and the question asking for them.
fn question(request: &ApprovalRequest) -> String {
    let mut question = String::from("  allow? [y]es once");
    if !request.remember.is_empty() {
        question.push_str(" / [s]ession");
        if request.always_file.is_some() {
            question.push_str(" / [a]lways");
        }
    }
    question.push_str(" / [n]o: ");
    question
}

/// What [s] and [a] would allow, and where [a] writes it, for the lines above the question.
fn remembered(request: &ApprovalRequest) -> Option<String> {
    let rules: Vec<String> = request.remember.iter().map(Rule::to_string).collect();
    if rules.is_empty() {
        return None;
    }
    let keys = if request.always_file.is_some() { "[s] and [a] allow" } else { "[s] allows" };
    let mut text = format!("  {keys} {}", rules.join("\n    and "));
    if let Some(file) = &request.always_file {
        text.push_str(&format!("\n  [a] writes it to {file}"));
    }
    Some(text)
}

/// The decision an answer stands for; anything else is no.
fn decision(answer: Option<&str>, request: &ApprovalRequest) -> Decision {
    let session = !request.remember.is_empty();
    let always = session && request.always_file.is_some();
    match answer {
        Some("y" | "Y" | "yes") => Decision::Approve,
        Some("s" | "S" | "session") if session => Decision::ApproveForSession,
        Some("a" | "A" | "always") if always => Decision::ApproveAlways,
        _ => Decision::Deny,
    }
}

#[async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        let what = match request.effect {
            ToolEffect::ReadOnly => "read",
            ToolEffect::Mutating => "change files or run a command",
            ToolEffect::External => "reach the network",
        };
        eprintln!("\x1b[1mThe model wants to {what}:\x1b[0m {}", describe_call_in_full(&request.call));
        if let Some(confinement) = &request.confinement {
            eprintln!("  runs in {}", crate::output::escape_untrusted(confinement, true));
        }
        match remembered(request) {
            Some(text) => eprintln!("{}", crate::output::escape_untrusted(&text, true)),
            // The runner offers no answer beyond this call when an `ask` rule matched.
            None => eprintln!("  (a permission rule asks about this every time)"),
        }
        let question = question(request);
        // Read on the terminal itself (not stdin/stdout, which may be redirected), with line
        // editing: Ctrl+C or Ctrl+D at the prompt answers "no" and leaves no read behind to
        // swallow the next line typed.
        let answer = tokio::task::spawn_blocking(move || {
            let config = rustyline::Config::builder().behavior(rustyline::Behavior::PreferTerm).build();
            let mut editor =
                rustyline::Editor::<(), rustyline::history::DefaultHistory>::with_config(config)?;
            editor.readline(&question)
        })
        .await;
        decision(answer.ok().and_then(Result::ok).as_deref().map(str::trim), request)
    }
}

/// How to allow `request`'s call in config.toml, for refusals.
fn how_to_allow(request: &ApprovalRequest) -> String {
    let rules: Vec<String> = match request.remember.as_slice() {
        [] => vec![Rule::new(request.call.name.clone(), exoclaw_core::Permission::Allow).to_string()],
        rules => rules.iter().map(Rule::to_string).collect(),
    };
    format!("[permissions] rules = [{}]", rules.join(", "))
}

/// Nobody can answer (piped input, `--json`): refuse, and tell the user how to allow the tool.
#[derive(Debug, Clone, Copy)]
pub struct Unattended;

#[async_trait]
impl Approver for Unattended {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        let name = &request.call.name;
        eprintln!(
            "exoclaw: `{name}` needs approval and nobody is at a terminal to give it, so it was refused; \
             rerun with --yes, or allow it in config.toml: {}",
            how_to_allow(request)
        );
        Decision::Unattended
    }
}

/// The gateway's agents: nobody is at a terminal, ever. Each refusal is logged with how an
/// operator allows the tool; the model is told the call needs a person's approval.
#[derive(Debug, Clone, Copy)]
pub struct Daemon;

#[async_trait]
impl Approver for Daemon {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        tracing::info!(
            tool = %request.call.name,
            "a tool call needing approval was refused: gateway agents run unattended; to let them \
             run it, allow it in config.toml: {}",
            how_to_allow(request)
        );
        Decision::Unattended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_core::{Permission, Resource};
    use exoclaw_types::ToolCall;
    use pretty_assertions::assert_eq;

    fn request(remember: Vec<Rule>, always_file: Option<&str>) -> ApprovalRequest {
        let call = ToolCall {
            id: "c".into(),
            name: "shell".into(),
            arguments: serde_json::json!({"command": "git status"}),
        };
        ApprovalRequest {
            resources: vec![Resource::Command("git status".into())],
            remember,
            always_file: always_file.map(str::to_owned),
            ..ApprovalRequest::new(call, ToolEffect::Mutating)
        }
    }

    #[test]
    fn the_prompt_offers_only_the_answers_that_can_be_kept() {
        let rule = Rule::new("shell", Permission::Allow).command("git status");
        let full = request(vec![rule.clone()], Some("/home/u/.exoclaw/permissions.toml"));
        assert_eq!(question(&full), "  allow? [y]es once / [s]ession / [a]lways / [n]o: ");
        assert_eq!(
            remembered(&full).unwrap(),
            "  [s] and [a] allow { tool = \"shell\", command = \"git status\", permission = \"allow\" }\n  \
             [a] writes it to /home/u/.exoclaw/permissions.toml"
        );
        assert_eq!(decision(Some("a"), &full), Decision::ApproveAlways);
        assert_eq!(decision(Some("s"), &full), Decision::ApproveForSession);
        assert_eq!(decision(Some("y"), &full), Decision::Approve);
        assert_eq!(decision(Some("x"), &full), Decision::Deny);
        assert_eq!(decision(None, &full), Decision::Deny);

        let session_only = request(vec![rule], None);
        assert_eq!(question(&session_only), "  allow? [y]es once / [s]ession / [n]o: ");
        assert_eq!(decision(Some("a"), &session_only), Decision::Deny, "not offered, so no");

        let asked_by_rule = request(Vec::new(), Some("/f"));
        assert_eq!(question(&asked_by_rule), "  allow? [y]es once / [n]o: ");
        assert_eq!(decision(Some("s"), &asked_by_rule), Decision::Deny);
    }

    #[test]
    fn a_refusal_says_which_rule_would_allow_the_call() {
        let rule = Rule::new("shell", Permission::Allow).command("git status");
        assert_eq!(
            how_to_allow(&request(vec![rule], None)),
            "[permissions] rules = [{ tool = \"shell\", command = \"git status\", permission = \"allow\" }]"
        );
        assert_eq!(
            how_to_allow(&request(Vec::new(), None)),
            "[permissions] rules = [{ tool = \"shell\", permission = \"allow\" }]"
        );
    }
}
