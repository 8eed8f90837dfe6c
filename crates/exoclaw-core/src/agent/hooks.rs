//! Hooks and monitors: operator code the [`crate::AgentRunner`] calls at fixed points of a turn.
//!
//! A [`Hook`] may change what happens: before each model call it may rewrite the request or stop
//! the turn; before each tool call it may rewrite the arguments, answer the call itself or stop
//! the turn; after each tool call it may rewrite the result; after the turn it sees what the turn
//! produced. Every method has a default that changes nothing, so a hook implements only what it
//! needs. A [`Monitor`] only watches: it sees every [`AgentEvent`] the runner emits, in order.
//!
//! Cross-cutting concerns (redaction, tool policies, audit, metrics) live here rather than in
//! every front end. Two hooks ship: [`RedactHook`] (regexes removed from tool output) and
//! [`DenyToolsHook`] (tools no agent may run, by name pattern), both available from the `[hooks]`
//! section of `config.toml`.
//!
//! # Example
//!
//! ```no_run
//! use async_trait::async_trait;
//! use exoclaw_core::{AgentRunner, Hook, HookContext, ToolAction};
//! use exoclaw_types::{ToolCall, ToolEffect};
//! use std::sync::Arc;
//!
//! /// Keeps `shell` out of the `/etc` folder, and runs every command with a time limit.
//! struct ShellGuard;
//!
//! #[async_trait]
//! impl Hook for ShellGuard {
//!     async fn before_tool(
//!         &self,
//!         _cx: &HookContext<'_>,
//!         call: &ToolCall,
//!         _effect: Option<ToolEffect>,
//!     ) -> ToolAction {
//!         if call.name != "shell" {
//!             return ToolAction::Allow;
//!         }
//!         let command = call.arguments["command"].as_str().unwrap_or_default();
//!         if command.contains("/etc") {
//!             return ToolAction::Answer {
//!                 content: "refused: this deployment keeps /etc out of reach".into(),
//!                 is_error: true,
//!             };
//!         }
//!         let mut arguments = call.arguments.clone();
//!         arguments["command"] = format!("timeout 60 {command}").into();
//!         ToolAction::Rewrite(arguments)
//!     }
//! }
//!
//! fn guarded(runner: AgentRunner) -> AgentRunner {
//!     runner.with_hook(Arc::new(ShellGuard))
//! }
//! ```

use crate::agent::runner::{EventSink, TurnResult};
use async_trait::async_trait;
use exoclaw_types::{AgentEvent, ChatRequest, SessionId, ToolCall, ToolEffect, ToolResult};
use regex::Regex;
use std::borrow::Cow;
use std::sync::Arc;

/// What a hook is told about the turn it is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookContext<'a> {
    /// The session the turn belongs to.
    pub session_id: SessionId,
    /// The agent running it, as usage is recorded.
    pub agent: &'a str,
    /// The model it answers with, as `provider/model`.
    pub model: &'a str,
}

impl<'a> HookContext<'a> {
    /// The context of a turn of `agent` in `session_id`, answered by `model` (`provider/model`).
    pub fn new(session_id: SessionId, agent: &'a str, model: &'a str) -> Self {
        Self { session_id, agent, model }
    }
}

/// What happens to a model call, as a hook decides ([`Hook::before_model`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ModelAction {
    /// Send the request as it is.
    Continue,
    /// Send this request instead; later hooks see it. (Boxed: a request is large, and most
    /// hooks answer `Continue`.)
    Rewrite(Box<ChatRequest>),
    /// Do not call the model: the turn ends `Failed` with an [`ErrorCode::HookStopped`](exoclaw_types::ErrorCode::HookStopped) error naming
    /// `reason`.
    Stop {
        /// Why, for the user.
        reason: String,
    },
}

/// What happens to a tool call, as a hook decides ([`Hook::before_tool`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ToolAction {
    /// Let the call go on (to the approval prompt when the permissions ask, then to the tool).
    Allow,
    /// Run it with these arguments instead; later hooks, the approval prompt and the tool see
    /// them. The model's own message keeps the arguments it wrote.
    Rewrite(serde_json::Value),
    /// Do not run it: the model gets this result instead, and the user is not asked.
    Answer {
        /// The result, as the model sees it.
        content: String,
        /// Whether it reads as a failure.
        is_error: bool,
    },
    /// Run nothing more: the turn ends `Failed` with an [`ErrorCode::HookStopped`](exoclaw_types::ErrorCode::HookStopped) error naming `reason`.
    Stop {
        /// Why, for the user.
        reason: String,
    },
}

/// What happens to a tool's result, as a hook decides ([`Hook::after_tool`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultAction {
    /// Pass it on as it is.
    Pass,
    /// Show the model (and the user) this content instead; later hooks see it.
    Rewrite(String),
}

/// Operator code called at fixed points of every turn, with a typed answer; every method defaults
/// to changing nothing. Several hooks run in the order they were added
/// ([`crate::AgentRunner::with_hook`]): each sees what the ones before it rewrote, and the first
/// that answers or stops decides.
///
/// Hooks run inside the turn, which waits for them: keep them quick. A decision made before a
/// tool call is part of the turn's checkpoint, so a resumed turn does not ask again.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Before each model call, with the request about to be sent.
    async fn before_model(&self, _cx: &HookContext<'_>, _request: &ChatRequest) -> ModelAction {
        ModelAction::Continue
    }

    /// Once for each tool call the model makes, as soon as its answer is in, before the user is
    /// asked or anything runs. `effect` is `None` for a tool the agent does not have. Calls the
    /// permissions deny never get here.
    async fn before_tool(
        &self,
        _cx: &HookContext<'_>,
        _call: &ToolCall,
        _effect: Option<ToolEffect>,
    ) -> ToolAction {
        ToolAction::Allow
    }

    /// After each tool call ran (or failed, or timed out), before the user and the model see its
    /// result. `call` holds the arguments it ran with.
    async fn after_tool(
        &self,
        _cx: &HookContext<'_>,
        _call: &ToolCall,
        _result: &ToolResult,
    ) -> ResultAction {
        ResultAction::Pass
    }

    /// When the turn is over, just before its `Done` event, with what it produced.
    async fn after_turn(&self, _cx: &HookContext<'_>, _turn: &TurnResult) {}
}

/// Watches a turn: sees every [`AgentEvent`] the runner emits, in order, just before the event
/// sink gets it. For metrics, logs and audit trails that change nothing. `event` must not block.
pub trait Monitor: Send + Sync {
    /// One event of the turn `cx` describes.
    fn event(&self, cx: &HookContext<'_>, event: &AgentEvent);
}

/// [`Hook::before_model`] of every hook in order: `Continue`, the last rewrite, or the first stop.
pub(crate) async fn before_model(
    hooks: &[Arc<dyn Hook>],
    cx: &HookContext<'_>,
    request: &ChatRequest,
) -> ModelAction {
    let mut rewritten: Option<Box<ChatRequest>> = None;
    for hook in hooks {
        match hook.before_model(cx, rewritten.as_deref().unwrap_or(request)).await {
            ModelAction::Continue => {}
            ModelAction::Rewrite(request) => rewritten = Some(request),
            stop @ ModelAction::Stop { .. } => return stop,
        }
    }
    rewritten.map_or(ModelAction::Continue, ModelAction::Rewrite)
}

/// [`Hook::before_tool`] of every hook in order: `Allow`, the last rewrite, or the first answer
/// or stop.
pub(crate) async fn before_tool(
    hooks: &[Arc<dyn Hook>],
    cx: &HookContext<'_>,
    call: &ToolCall,
    effect: Option<ToolEffect>,
) -> ToolAction {
    let mut rewritten: Option<ToolCall> = None;
    for hook in hooks {
        match hook.before_tool(cx, rewritten.as_ref().unwrap_or(call), effect).await {
            ToolAction::Allow => {}
            ToolAction::Rewrite(arguments) => {
                rewritten = Some(ToolCall { arguments, ..call.clone() });
            }
            decided @ (ToolAction::Answer { .. } | ToolAction::Stop { .. }) => return decided,
        }
    }
    rewritten.map_or(ToolAction::Allow, |c| ToolAction::Rewrite(c.arguments))
}

/// [`Hook::after_tool`] of every hook in order, each seeing the last rewrite: the final result.
pub(crate) async fn after_tool(
    hooks: &[Arc<dyn Hook>],
    cx: &HookContext<'_>,
    call: &ToolCall,
    mut result: ToolResult,
) -> ToolResult {
    for hook in hooks {
        match hook.after_tool(cx, call, &result).await {
            ResultAction::Pass => {}
            ResultAction::Rewrite(content) => result.content = content,
        }
    }
    result
}

/// An event sink that shows every event to the monitors first.
pub(crate) struct Observed<'a> {
    pub sink: &'a dyn EventSink,
    pub monitors: &'a [Arc<dyn Monitor>],
    pub cx: HookContext<'a>,
}

impl EventSink for Observed<'_> {
    fn emit(&self, event: AgentEvent) {
        for monitor in self.monitors {
            monitor.event(&self.cx, &event);
        }
        self.sink.emit(event);
    }
}

/// A pattern a built-in hook cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a usable regex: {reason}")]
pub struct PatternError {
    /// The pattern, as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Removes secrets from tool output: every match of any of its regexes becomes
/// [`RedactHook::REDACTED`] before the user or the model sees the result.
///
/// Only tool results pass through it: what the model writes, and the arguments it calls tools
/// with, are not changed.
#[derive(Debug, Clone)]
pub struct RedactHook {
    patterns: Vec<Regex>,
}

impl RedactHook {
    /// What a match is replaced with.
    pub const REDACTED: &'static str = "[redacted]";

    /// A hook removing every match of `patterns` (Rust `regex` syntax). A pattern that does not
    /// parse, or that matches the empty string (it would redact between every character), is
    /// refused.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|pattern| {
                let pattern = pattern.as_ref();
                let refused = |reason: String| PatternError { pattern: pattern.to_owned(), reason };
                let regex = Regex::new(pattern).map_err(|e| refused(one_line(&e.to_string())))?;
                if regex.is_match("") {
                    return Err(refused(
                        "it matches the empty string, so it would redact between every character".into(),
                    ));
                }
                Ok(regex)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// `text` with every match replaced by [`RedactHook::REDACTED`]; borrowed when nothing matched.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for regex in &self.patterns {
            if let Cow::Owned(replaced) = regex.replace_all(&text, Self::REDACTED) {
                text = Cow::Owned(replaced);
            }
        }
        text
    }
}

#[async_trait]
impl Hook for RedactHook {
    async fn after_tool(&self, _cx: &HookContext<'_>, _call: &ToolCall, result: &ToolResult) -> ResultAction {
        match self.redact(&result.content) {
            Cow::Borrowed(_) => ResultAction::Pass,
            Cow::Owned(redacted) => ResultAction::Rewrite(redacted),
        }
    }
}

/// The last line of a multi-line message (the regex crate's errors draw the pattern with a caret
/// above the reason; a config error shows one line).
fn one_line(message: &str) -> String {
    let last = message.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(message);
    last.trim().trim_start_matches("error: ").to_owned()
}

/// Refuses tools by name: a call of a tool whose name matches one of its patterns is not run, and
/// the model is told an operator's hook refused it. The user is not asked.
///
/// A pattern is a tool name in which `*` stands for any run of characters: `shell`, `http_*`,
/// `*_write`, `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyToolsHook {
    patterns: Vec<String>,
}

impl DenyToolsHook {
    /// A hook refusing the tools whose names match `patterns`.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { patterns: patterns.into_iter().map(Into::into).collect() }
    }

    /// The first pattern `tool` matches, if any.
    pub fn denies(&self, tool: &str) -> Option<&str> {
        self.patterns.iter().map(String::as_str).find(|pattern| exoclaw_types::glob_match(pattern, tool))
    }
}

#[async_trait]
impl Hook for DenyToolsHook {
    async fn before_tool(
        &self,
        _cx: &HookContext<'_>,
        call: &ToolCall,
        _effect: Option<ToolEffect>,
    ) -> ToolAction {
        match self.denies(&call.name) {
            None => ToolAction::Allow,
            Some(pattern) => ToolAction::Answer {
                content: format!(
                    "permission denied: `{}` was not run: an operator's hook refuses this tool (pattern \
                     `{pattern}`); do not retry it, find another way or ask the user",
                    call.name
                ),
                is_error: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn cx() -> HookContext<'static> {
        HookContext::new(SessionId::new(), "default", "fake/model")
    }

    fn call(name: &str) -> ToolCall {
        ToolCall { id: "c".into(), name: name.into(), arguments: json!({}) }
    }

    fn output(content: &str) -> ToolResult {
        ToolResult { call_id: "c".into(), content: content.into(), is_error: false }
    }

    #[test]
    fn globs_match_whole_names_with_stars_for_any_run() {
        for (pattern, name, expected) in [
            ("shell", "shell", true),
            ("shell", "shell2", false),
            ("shell", "my_shell", false),
            ("http_*", "http_fetch", true),
            ("http_*", "http_", true),
            ("http_*", "https", false),
            ("*_write", "file_write", true),
            ("*", "anything", true),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c-b", false),
            ("a*a", "a", false),
            ("", "", true),
        ] {
            assert_eq!(exoclaw_types::glob_match(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[tokio::test]
    async fn redaction_replaces_every_match_of_every_pattern() {
        let hook = RedactHook::new(["sk-[A-Za-z0-9]{20,}", "password=\\S+"]).unwrap();
        let secret = format!("key sk-{} and password=hunter2 and sk-short", "a".repeat(24));
        let action = hook.after_tool(&cx(), &call("shell"), &output(&secret)).await;
        assert_eq!(action, ResultAction::Rewrite("key [redacted] and [redacted] and sk-short".into()));
        assert_eq!(hook.after_tool(&cx(), &call("shell"), &output("nothing here")).await, ResultAction::Pass);
    }

    #[test]
    fn a_bad_or_empty_matching_redaction_pattern_is_refused_with_the_reason() {
        let err = RedactHook::new(["ok", "sk-[A-Z"]).unwrap_err();
        assert_eq!(err.pattern, "sk-[A-Z");
        assert_eq!(err.to_string(), "`sk-[A-Z` is not a usable regex: unclosed character class");
        let err = RedactHook::new(["x*"]).unwrap_err();
        assert!(err.reason.contains("matches the empty string"), "{err}");
    }

    #[tokio::test]
    async fn denied_tools_are_answered_with_an_error_naming_the_operators_hook() {
        let hook = DenyToolsHook::new(["shell", "http_*"]);
        let ToolAction::Answer { content, is_error } =
            hook.before_tool(&cx(), &call("http_fetch"), Some(ToolEffect::External)).await
        else {
            panic!("expected an answer")
        };
        assert!(is_error);
        assert_eq!(
            content,
            "permission denied: `http_fetch` was not run: an operator's hook refuses this tool (pattern \
             `http_*`); do not retry it, find another way or ask the user"
        );
        assert_eq!(hook.before_tool(&cx(), &call("read_file"), None).await, ToolAction::Allow);
    }

    /// Rewrites arguments to count how many hooks ran before it, or stops.
    struct Counting(bool);

    #[async_trait]
    impl Hook for Counting {
        async fn before_tool(
            &self,
            _: &HookContext<'_>,
            call: &ToolCall,
            _: Option<ToolEffect>,
        ) -> ToolAction {
            if self.0 {
                return ToolAction::Stop { reason: "enough".into() };
            }
            let seen = call.arguments["n"].as_u64().unwrap_or(0);
            ToolAction::Rewrite(json!({"n": seen + 1}))
        }
    }

    #[tokio::test]
    async fn hooks_run_in_order_each_seeing_the_last_rewrite_until_one_decides() {
        let hooks: Vec<Arc<dyn Hook>> = vec![Arc::new(Counting(false)), Arc::new(Counting(false))];
        assert_eq!(before_tool(&hooks, &cx(), &call("x"), None).await, ToolAction::Rewrite(json!({"n": 2})));
        let hooks: Vec<Arc<dyn Hook>> =
            vec![Arc::new(Counting(false)), Arc::new(Counting(true)), Arc::new(Counting(false))];
        assert_eq!(
            before_tool(&hooks, &cx(), &call("x"), None).await,
            ToolAction::Stop { reason: "enough".into() }
        );
        assert_eq!(before_tool(&[], &cx(), &call("x"), None).await, ToolAction::Allow);
    }
}
