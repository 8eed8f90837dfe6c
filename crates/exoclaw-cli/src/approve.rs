//! Asking the user before a tool changes something: a y/n/always prompt on the terminal, or, when
//! nobody is there to answer, a refusal that says how to allow the call next time.

#![allow(clippy::print_stderr)]

use crate::render::describe_call_in_full;
use async_trait::async_trait;
use exoclaw_core::{ApprovalRequest, Approver, Decision};
use exoclaw_types::ToolEffect;
use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Mutex;

/// The approver for this run: a prompt when stdin and stderr are a terminal, else refusals.
pub fn for_this_terminal() -> std::sync::Arc<dyn Approver> {
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        std::sync::Arc::new(TerminalApprover::default())
    } else {
        std::sync::Arc::new(Unattended)
    }
}

/// Prompts on the terminal; "always" approves the tool until exoclaw exits.
#[derive(Debug, Default)]
pub struct TerminalApprover {
    always: Mutex<HashSet<String>>,
}

#[async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        let name = request.call.name.clone();
        if self.always.lock().is_ok_and(|always| always.contains(&name)) {
            return Decision::Approve;
        }
        let what = match request.effect {
            ToolEffect::ReadOnly => "read",
            ToolEffect::Mutating => "change files or run a command",
            ToolEffect::External => "reach the network",
        };
        eprintln!("\x1b[1mThe model wants to {what}:\x1b[0m {}", describe_call_in_full(&request.call));
        let question = format!("  allow? [y]es / [n]o / [a]lways allow `{name}` until exoclaw exits: ");
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
        match answer.ok().and_then(Result::ok).as_deref().map(str::trim) {
            Some("y" | "Y" | "yes") => Decision::Approve,
            Some("a" | "A" | "always") => {
                if let Ok(mut always) = self.always.lock() {
                    always.insert(name);
                }
                Decision::Approve
            }
            _ => Decision::Deny,
        }
    }
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
             rerun with --yes, or allow it in the config: [permissions] tools = {{ {name} = \"allow\" }}"
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
        let name = &request.call.name;
        tracing::info!(
            tool = %name,
            "a tool call needing approval was refused: gateway agents run unattended; to let them \
             run it, allow it in the config: [permissions] tools = {{ {name} = \"allow\" }}"
        );
        Decision::Unattended
    }
}
