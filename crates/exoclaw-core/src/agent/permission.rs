//! Who may run which tool: the [`PermissionPolicy`] configuration fills, and the [`Approver`] a
//! front end implements to ask the user when the policy says [`Permission::Ask`].

use async_trait::async_trait;
use exoclaw_types::{ToolCall, ToolEffect};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a tool call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Run it without asking.
    Allow,
    /// Ask the user first (through the [`Approver`]).
    Ask,
    /// Never run it; the model is told the user denied it.
    Deny,
}

/// Which tool calls run, which need the user's approval and which are refused.
///
/// A tool's permission is its entry in `tools` when there is one, otherwise the default for its
/// [`ToolEffect`]. `auto_approve` (the CLI's `--yes`) turns every `Ask` into `Allow`, but never
/// overrides an explicit `Deny`: a rule someone wrote down outranks a blanket switch.
///
/// Every field has a default, so configuration may give any subset:
///
/// ```toml
/// [permissions]
/// mutating = "ask"
/// tools = { shell = "deny", read_file = "allow" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PermissionPolicy {
    /// Permission of tools that only read. Default: allow.
    pub read_only: Permission,
    /// Permission of tools that change the workspace or run commands. Default: ask.
    pub mutating: Permission,
    /// Permission of tools that reach outside the machine. Default: ask.
    pub external: Permission,
    /// Per-tool overrides, by tool name.
    pub tools: BTreeMap<String, Permission>,
    /// Approve every call that would ask (the CLI's `--yes`); explicit denials still hold.
    pub auto_approve: bool,
}

impl Default for PermissionPolicy {
    fn default() -> Self {
        Self {
            read_only: Permission::Allow,
            mutating: Permission::Ask,
            external: Permission::Ask,
            tools: BTreeMap::new(),
            auto_approve: false,
        }
    }
}

impl PermissionPolicy {
    /// A policy that runs everything without asking, except explicit denials: for tests, benches
    /// and trusted automation.
    pub fn allow_all() -> Self {
        Self { auto_approve: true, ..Self::default() }
    }

    /// The policy with `auto_approve` set to `yes`.
    pub fn with_auto_approve(mut self, yes: bool) -> Self {
        self.auto_approve = yes;
        self
    }

    /// The policy with `tool`'s permission set to `permission`.
    pub fn with_tool(mut self, tool: impl Into<String>, permission: Permission) -> Self {
        self.tools.insert(tool.into(), permission);
        self
    }

    /// The permission configured for `tool` (with effect `effect`), before `auto_approve`.
    pub fn configured(&self, tool: &str, effect: ToolEffect) -> Permission {
        if let Some(permission) = self.tools.get(tool) {
            return *permission;
        }
        match effect {
            ToolEffect::ReadOnly => self.read_only,
            ToolEffect::Mutating => self.mutating,
            ToolEffect::External => self.external,
        }
    }

    /// What to do with a call of `tool` (with effect `effect`): the configured permission, with
    /// `Ask` turned into `Allow` when `auto_approve` is on.
    pub fn decide(&self, tool: &str, effect: ToolEffect) -> Permission {
        match self.configured(tool, effect) {
            Permission::Ask if self.auto_approve => Permission::Allow,
            other => other,
        }
    }
}

/// The user's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Run the call.
    Approve,
    /// Do not run it; the model is told the user denied it.
    Deny,
    /// Do not run it: nobody is there to ask (an agent serving a gateway or a scheduled job). The
    /// model is told the call needs a person's approval, which cannot be given where it runs, so
    /// it can say so instead of retrying.
    Unattended,
}

/// A tool call waiting for the user's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRequest {
    /// The call, with the model's arguments.
    pub call: ToolCall,
    /// What kind of change it would make.
    pub effect: ToolEffect,
}

/// Asks the user whether a tool call may run. Implemented by each front end: the CLI prompts
/// y/n on the terminal, the gateway sends the request to its client and waits for the answer.
///
/// Object-safe; the runner holds it as `Arc<dyn Approver>`. The runner stops waiting when the turn
/// is cancelled, so an implementation need not watch for cancellation itself.
#[async_trait]
pub trait Approver: Send + Sync {
    /// The user's decision on `request`.
    async fn approve(&self, request: &ApprovalRequest) -> Decision;
}

/// An approver that gives the same answer to every request without asking anyone: `Deny` for
/// non-interactive runs (which approve through `auto_approve` / `--yes` instead), `Approve` for
/// tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedApprover(pub Decision);

#[async_trait]
impl Approver for FixedApprover {
    async fn approve(&self, _request: &ApprovalRequest) -> Decision {
        self.0
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
        let p: PermissionPolicy =
            serde_json::from_str(r#"{"external": "deny", "tools": {"shell": "ask"}}"#).unwrap();
        assert_eq!(p.read_only, Permission::Allow);
        assert_eq!(p.mutating, Permission::Ask);
        assert_eq!(p.external, Permission::Deny);
        assert_eq!(p.tools.get("shell"), Some(&Permission::Ask));
        assert!(!p.auto_approve);
        let back: PermissionPolicy = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
