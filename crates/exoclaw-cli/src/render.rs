//! Shows a turn's [`AgentEvent`]s: answer text on stdout (styled markdown on a terminal, plain
//! when piped), tool calls compactly on stderr, or every event as a JSON line with `--json`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::markdown::MarkdownStyler;
use exoclaw_core::EventSink;
use exoclaw_types::{AgentEvent, ToolCall, TurnOutcome};
use indicatif::ProgressBar;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// Text; `styled` when stdout is a terminal.
    Text {
        /// Colours and markdown styling.
        styled: bool,
    },
}

impl Mode {
    /// JSON when asked, else text, styled when stdout is a terminal and `NO_COLOR` is not set.
    pub fn detect(json: bool) -> Self {
        // https://no-color.org: any non-empty NO_COLOR turns colours off.
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if json { Self::Json } else { Self::Text { styled: std::io::stdout().is_terminal() && !no_color } }
    }
}

/// Renders one turn's events. Cheap to make; make one per turn.
pub struct Renderer {
    mode: Mode,
    state: Mutex<State>,
}

struct State {
    styler: MarkdownStyler,
    spinner: Option<ProgressBar>,
    /// The last thing written to stdout did not end its line.
    open_line: bool,
}

impl Renderer {
    /// A renderer, with a spinner on stderr until the first event worth showing when stderr is a
    /// terminal and the output is text.
    pub fn new(mode: Mode) -> Self {
        let spinner = if mode == Mode::Json { None } else { crate::output::spinner("thinking…") };
        let state = State { styler: MarkdownStyler::new(), spinner, open_line: false };
        Self { mode, state: Mutex::new(state) }
    }
}

impl State {
    fn quiet(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
        let rest = self.styler.finish();
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{rest}");
        if self.open_line {
            let _ = writeln!(stdout);
            self.open_line = false;
        }
        let _ = stdout.flush();
    }
}

impl EventSink for Renderer {
    fn emit(&self, event: AgentEvent) {
        let Ok(mut state) = self.state.lock() else { return };
        match self.mode {
            Mode::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{line}");
                    let _ = stdout.flush();
                }
            }
            Mode::Text { styled } => text_event(&mut state, styled, event),
        }
    }
}

fn text_event(state: &mut State, styled: bool, event: AgentEvent) {
    match event {
        AgentEvent::TurnStarted { .. } | AgentEvent::Usage { .. } => {}
        AgentEvent::Text { text } | AgentEvent::Thinking { text } if text.is_empty() => {}
        AgentEvent::Text { text } => {
            if let Some(spinner) = state.spinner.take() {
                spinner.finish_and_clear();
            }
            let shown = if styled { state.styler.push(&text) } else { text };
            let mut stdout = std::io::stdout().lock();
            let _ = write!(stdout, "{shown}");
            let _ = stdout.flush();
            if !shown.is_empty() {
                state.open_line = !shown.ends_with('\n');
            }
        }
        AgentEvent::Thinking { text } => {
            // Reasoning is shown dimmed on a terminal, and left out of piped output.
            if styled {
                if let Some(spinner) = state.spinner.take() {
                    spinner.finish_and_clear();
                }
                let mut stdout = std::io::stdout().lock();
                let _ = write!(stdout, "{DIM}{text}{RESET}");
                let _ = stdout.flush();
                state.open_line = !text.ends_with('\n');
            }
        }
        AgentEvent::ToolUse { call } => {
            state.quiet();
            eprintln!("{}", paint(styled, DIM, &format!("⚙ {}", summarize_call(&call))));
        }
        AgentEvent::ApprovalNeeded { .. } => state.quiet(),
        AgentEvent::ToolResult { name, content, is_error, duration_ms, .. } => {
            let line = if is_error {
                paint(styled, RED, &format!("  ✗ {name} ({duration_ms} ms): {}", first_line(&content, 160)))
            } else {
                paint(styled, DIM, &format!("  ✓ {name} ({duration_ms} ms, {})", size(&content)))
            };
            eprintln!("{line}");
        }
        AgentEvent::Error { code, message } => {
            state.quiet();
            eprintln!("{}", paint(styled, RED, &format!("error ({code}): {message}")));
        }
        AgentEvent::Done { outcome } => {
            state.quiet();
            if outcome == TurnOutcome::Cancelled {
                eprintln!("{}", paint(styled, DIM, "(interrupted; what was answered so far is kept)"));
            }
        }
    }
}

fn paint(styled: bool, style: &str, text: &str) -> String {
    if styled { format!("{style}{text}{RESET}") } else { text.to_owned() }
}

/// `name key=value …`, cut to one line.
pub fn summarize_call(call: &ToolCall) -> String {
    let args = match &call.arguments {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={}", first_line(s, 60)),
                other => format!("{k}={}", first_line(&other.to_string(), 60)),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => first_line(&other.to_string(), 100),
    };
    first_line(&format!("{} {args}", call.name), 160)
}

fn first_line(text: &str, max_chars: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let more = text.lines().nth(1).is_some();
    if line.chars().count() > max_chars {
        format!("{}…", line.chars().take(max_chars).collect::<String>())
    } else if more {
        format!("{line} …")
    } else {
        line.to_owned()
    }
}

fn size(content: &str) -> String {
    match content.lines().count() {
        0 => "no output".to_owned(),
        1 => format!("{} chars", content.chars().count()),
        n => format!("{n} lines"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_calls_are_summarised_on_one_line() {
        let call = ToolCall {
            id: "c1".into(),
            name: "edit_file".into(),
            arguments: json!({"path": "src/a.rs", "old": "x\ny", "n": 2}),
        };
        assert_eq!(summarize_call(&call), "edit_file path=src/a.rs old=x … n=2");
        let long = ToolCall {
            id: "c2".into(),
            name: "shell".into(),
            arguments: json!({"command": "a".repeat(300)}),
        };
        assert!(summarize_call(&long).chars().count() <= 161);
    }
}
