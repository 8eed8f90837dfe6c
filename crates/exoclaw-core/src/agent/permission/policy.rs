//! [`PermissionPolicy`]: `[permissions]` as configured — the defaults every call falls back to, the
//! rules written in the configuration, and `auto_approve`.

use super::Permission;
use super::rule::Rule;
use exoclaw_types::ToolEffect;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which tool calls run, which need the user's approval and which are refused, as configured.
///
/// A call no [`Rule`] matches gets its tool's entry in `tools` when there is one, otherwise the
/// default for its [`ToolEffect`]. A `deny` in `tools` is final, like a deny rule; an `allow` or
/// `ask` there is only the tool's default, which rules (and "always" answers) override.
/// `auto_approve` (the CLI's `--yes`) turns every `Ask` into `Allow`, but never overrides a
/// `Deny`: a rule someone wrote down outranks a blanket switch.
///
/// Every field has a default, so configuration may give any subset:
///
/// ```toml
/// [permissions]
/// mutating = "ask"
/// tools = { shell = "deny", read_file = "allow" }
///
/// [[permissions.rules]]
/// tool = "shell"
/// command = "git status"
/// permission = "allow"
/// ```
///
/// How rules from every scope combine is described in [`crate::Permissions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PermissionPolicy {
    /// Permission of tools that only read. Default: allow.
    pub read_only: Permission,
    /// Permission of tools that change the workspace or run commands. Default: ask.
    pub mutating: Permission,
    /// Permission of tools that reach outside the machine. Default: ask.
    pub external: Permission,
    /// Per-tool defaults, by tool name (`deny` here is final).
    pub tools: BTreeMap<String, Permission>,
    /// Approve every call that would ask (the CLI's `--yes`); denials still hold.
    pub auto_approve: bool,
    /// `[[permissions.rules]]`: allow / ask / deny by tool and resource pattern.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

impl Default for PermissionPolicy {
    fn default() -> Self {
        Self {
            read_only: Permission::Allow,
            mutating: Permission::Ask,
            external: Permission::Ask,
            tools: BTreeMap::new(),
            auto_approve: false,
            rules: Vec::new(),
        }
    }
}

impl PermissionPolicy {
    /// A policy that runs everything without asking, except denials: for tests, benches and
    /// trusted automation.
    pub fn allow_all() -> Self {
        Self { auto_approve: true, ..Self::default() }
    }

    /// The policy with `auto_approve` set to `yes`.
    pub fn with_auto_approve(mut self, yes: bool) -> Self {
        self.auto_approve = yes;
        self
    }

    /// The policy with `tool`'s default set to `permission`.
    pub fn with_tool(mut self, tool: impl Into<String>, permission: Permission) -> Self {
        self.tools.insert(tool.into(), permission);
        self
    }

    /// The policy with `rule` added after its other rules.
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The default of `tool` (with effect `effect`) — what a call no rule matches gets — before
    /// `auto_approve`.
    pub fn configured(&self, tool: &str, effect: ToolEffect) -> Permission {
        if let Some(permission) = self.tools.get(tool) {
            return *permission;
        }
        self.effect_default(effect)
    }

    /// The default for tools with effect `effect`.
    pub fn effect_default(&self, effect: ToolEffect) -> Permission {
        match effect {
            ToolEffect::ReadOnly => self.read_only,
            ToolEffect::Mutating => self.mutating,
            ToolEffect::External => self.external,
        }
    }

    /// The default of `tool` (with effect `effect`), with `Ask` turned into `Allow` when
    /// `auto_approve` is on. Rules are not consulted: [`crate::Permissions::check`] gives the
    /// whole decision.
    pub fn decide(&self, tool: &str, effect: ToolEffect) -> Permission {
        match self.configured(tool, effect) {
            Permission::Ask if self.auto_approve => Permission::Allow,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn defaults_follow_the_tools_effect() {
        let p = PermissionPolicy::default();
        assert_eq!(p.decide("read_file", ToolEffect::ReadOnly), Permission::Allow);
        assert_eq!(p.decide("write_file", ToolEffect::Mutating), Permission::Ask);
        assert_eq!(p.decide("fetch", ToolEffect::External), Permission::Ask);
    }

    #[test]
    fn a_per_tool_entry_wins_over_the_effect_default() {
        let p = PermissionPolicy::default()
            .with_tool("shell", Permission::Deny)
            .with_tool("write_file", Permission::Allow);
        assert_eq!(p.decide("shell", ToolEffect::Mutating), Permission::Deny);
        assert_eq!(p.decide("write_file", ToolEffect::Mutating), Permission::Allow);
    }

    #[test]
    fn auto_approve_turns_ask_into_allow_but_keeps_explicit_denials() {
        let p = PermissionPolicy::default().with_tool("shell", Permission::Deny).with_auto_approve(true);
        assert_eq!(p.decide("write_file", ToolEffect::Mutating), Permission::Allow);
        assert_eq!(p.decide("fetch", ToolEffect::External), Permission::Allow);
        assert_eq!(p.decide("shell", ToolEffect::Mutating), Permission::Deny);
        assert_eq!(p.configured("write_file", ToolEffect::Mutating), Permission::Ask);
    }

    #[test]
    fn configuration_may_give_any_subset_of_fields() {
        let p: PermissionPolicy = serde_json::from_str(
            r#"{"external": "deny", "tools": {"shell": "ask"},
                "rules": [{"tool": "shell", "command": "git status", "permission": "allow"}]}"#,
        )
        .unwrap();
        assert_eq!(p.read_only, Permission::Allow);
        assert_eq!(p.mutating, Permission::Ask);
        assert_eq!(p.external, Permission::Deny);
        assert_eq!(p.tools.get("shell"), Some(&Permission::Ask));
        assert!(!p.auto_approve);
        assert_eq!(p.rules, vec![Rule::new("shell", Permission::Allow).command("git status")]);
        let back: PermissionPolicy = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
