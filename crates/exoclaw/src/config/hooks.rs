//! `[hooks]`: the built-in hooks every agent runs, and [`Config::hooks`], which builds them.
//!
//! ```toml
//! [hooks]
//! redact = ["sk-[A-Za-z0-9]{20,}"]      # regexes removed from tool output
//! deny_tools = ["shell", "http_*"]      # tools no agent may run
//! ```
//!
//! Patterns are checked while the file is read, so a bad one is reported at its line and column.

use super::{Config, ConfigError};
use exoclaw_core::{DenyToolsHook, Hook, RedactHook};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

/// `[hooks]`: what every agent's turns pass through, whatever its own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Regexes (Rust `regex` syntax) whose matches are replaced by `[redacted]` in every tool's
    /// output, before the user or the model sees it: keys and passwords a command printed.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "redact_patterns")]
    pub redact: Vec<String>,
    /// Tools no agent may run, by name; `*` stands for any run of characters (`http_*`). The
    /// model is told an operator's hook refused the call; the user is not asked.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "tool_patterns")]
    pub deny_tools: Vec<String>,
}

impl HooksConfig {
    /// Whether no hook is configured.
    pub fn is_empty(&self) -> bool {
        self.redact.is_empty() && self.deny_tools.is_empty()
    }
}

impl Config {
    /// The hooks `[hooks]` configures, for every agent runner ([`exoclaw_core::AgentRunner::with_hooks`]):
    /// the denied tools, then the redaction. Empty when the section is.
    ///
    /// A pattern read from a file was checked already; one set in code that cannot be used is a
    /// [`ConfigError::Hook`].
    pub fn hooks(&self) -> Result<Vec<Arc<dyn Hook>>, ConfigError> {
        let mut hooks: Vec<Arc<dyn Hook>> = Vec::new();
        if !self.hooks.deny_tools.is_empty() {
            hooks.push(Arc::new(DenyToolsHook::new(self.hooks.deny_tools.iter().cloned())));
        }
        if !self.hooks.redact.is_empty() {
            let redact = RedactHook::new(&self.hooks.redact)
                .map_err(|e| ConfigError::Hook { key: "hooks.redact", message: e.to_string() })?;
            hooks.push(Arc::new(redact));
        }
        Ok(hooks)
    }
}

fn redact_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let patterns = Vec::<String>::deserialize(d)?;
    RedactHook::new(&patterns).map_err(|e| D::Error::custom(format!("`hooks.redact`: {e}")))?;
    Ok(patterns)
}

fn tool_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let patterns = Vec::<String>::deserialize(d)?;
    if patterns.iter().any(|p| p.trim().is_empty()) {
        return Err(D::Error::custom(
            "`hooks.deny_tools`: an empty pattern matches no tool; write a tool name, or a name with `*` \
             standing for any run of characters (`http_*`)",
        ));
    }
    Ok(patterns)
}

#[cfg(test)]
mod tests {
    use super::super::load::parse_in;
    use super::super::tests::env;
    use super::*;
    use exoclaw_core::{HookContext, ResultAction, ToolAction};
    use exoclaw_types::{SessionId, ToolCall, ToolResult};
    use pretty_assertions::assert_eq;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_in(text, Path::new("/etc/exoclaw.toml"), &env(&[]))
    }

    #[tokio::test]
    async fn the_hooks_section_denies_tools_and_redacts_their_output() {
        let config =
            parse("[hooks]\nredact = [\"sk-[A-Za-z0-9]{20,}\"]\ndeny_tools = [\"shell\", \"http_*\"]\n")
                .unwrap();
        let hooks = config.hooks().unwrap();
        assert_eq!(hooks.len(), 2);
        let cx = HookContext::new(SessionId::new(), "default", "fake/model");
        let call = |name: &str| ToolCall { id: "c".into(), name: name.into(), arguments: Default::default() };
        let refused = hooks[0].before_tool(&cx, &call("http_fetch"), None).await;
        assert!(matches!(refused, ToolAction::Answer { is_error: true, .. }), "{refused:?}");
        assert_eq!(hooks[0].before_tool(&cx, &call("read_file"), None).await, ToolAction::Allow);
        let output = ToolResult {
            call_id: "c".into(),
            content: format!("OPENAI_API_KEY=sk-{}", "x".repeat(24)),
            is_error: false,
        };
        assert_eq!(
            hooks[1].after_tool(&cx, &call("shell"), &output).await,
            ResultAction::Rewrite("OPENAI_API_KEY=[redacted]".into())
        );
    }

    #[test]
    fn no_hooks_section_means_no_hooks_and_nothing_shown() {
        let config = parse("").unwrap();
        assert!(config.hooks().unwrap().is_empty());
        assert!(!config.redacted_toml().contains("[hooks]"));
    }

    #[test]
    fn a_bad_regex_is_reported_at_its_line_with_the_reason() {
        let err = parse("[hooks]\nredact = [\"sk-[A-Z\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("/etc/exoclaw.toml:2:"), "{err}");
        assert!(
            err.contains("`hooks.redact`: `sk-[A-Z` is not a usable regex: unclosed character class"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_or_an_empty_tool_pattern_is_refused() {
        let err = parse("[hooks]\ndeny_tool = [\"shell\"]\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `deny_tool`"), "{err}");
        let err = parse("[hooks]\ndeny_tools = [\"\"]\n").unwrap_err().to_string();
        assert!(err.contains("an empty pattern matches no tool"), "{err}");
    }

    #[test]
    fn a_bad_regex_set_in_code_is_a_hook_error_naming_the_key() {
        let mut config = Config::default();
        config.hooks.redact = vec!["(".into()];
        let Err(err) = config.hooks() else { panic!("expected an error") };
        assert!(matches!(&err, ConfigError::Hook { key: "hooks.redact", .. }), "{err:?}");
        assert!(err.to_string().starts_with("`hooks.redact`: `(` is not a usable regex:"), "{err}");
    }
}
