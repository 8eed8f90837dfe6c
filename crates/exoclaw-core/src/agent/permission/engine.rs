//! [`Permissions`]: every scope's rules together, the defaults under them, the answers given
//! "for this session" and "always" — and [`Permissions::check`], which decides a call.

use super::matcher::{Found, Hit, Prepared, RuleSet};
use super::policy::PermissionPolicy;
use super::resource::Resource;
use super::rule::{Rule, RuleEntry, RuleError, Scope};
use super::{Permission, command};
use exoclaw_types::{SessionId, ToolEffect};
use globset::Candidate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Why a call got its permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Reason {
    /// A rule matched: the strictest one (the first of them, in scope order, on a tie).
    Rule(
        #[serde(with = "shared_entry")]
        #[schemars(with = "RuleEntry")]
        Arc<RuleEntry>,
    ),
    /// No rule matched: the tool's entry in `[permissions] tools`.
    ToolDefault,
    /// No rule matched: `[permissions] read_only`, `mutating` or `external`.
    EffectDefault {
        /// The tool's effect.
        effect: ToolEffect,
    },
    /// The call would have asked, and `auto_approve` (`--yes`) approved it.
    AutoApprove,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rule(entry) => write!(f, "rule {entry}"),
            Self::ToolDefault => f.write_str("the tool's default ([permissions] tools)"),
            Self::EffectDefault { effect } => write!(f, "the default for {} tools", effect_key(*effect)),
            Self::AutoApprove => f.write_str("auto_approve (--yes)"),
        }
    }
}

fn effect_key(effect: ToolEffect) -> &'static str {
    match effect {
        ToolEffect::ReadOnly => "read_only",
        ToolEffect::Mutating => "mutating",
        ToolEffect::External => "external",
    }
}

/// `Arc<RuleEntry>` through serde without serde's `rc` feature.
mod shared_entry {
    use super::RuleEntry;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(entry: &Arc<RuleEntry>, s: S) -> Result<S::Ok, S::Error> {
        entry.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<RuleEntry>, D::Error> {
        RuleEntry::deserialize(d).map(Arc::new)
    }
}

/// A call's permission and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Run it, ask, or refuse it.
    pub permission: Permission,
    /// Who decided.
    pub reason: Reason,
}

impl Verdict {
    /// Whether an explicit `ask` rule asks (rather than a default): answers "for this session"
    /// and "always" are then not offered, since the rule says to ask every time.
    pub fn asked_by_rule(&self) -> bool {
        self.permission == Permission::Ask && matches!(self.reason, Reason::Rule(_))
    }
}

/// Where answers "always" are kept: `~/.exoclaw/permissions.toml` in the CLI.
pub trait AnswerStore: Send + Sync {
    /// The file (or other place) answers go to, for people.
    fn location(&self) -> String;

    /// Adds `rules` to the kept answers, for good. Called off the async runtime's threads.
    fn remember(&self, rules: &[Rule]) -> std::io::Result<()>;
}

/// How long an answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Remember {
    /// Until the session ends (in this process).
    Session,
    /// For good: written to the [`AnswerStore`].
    Always,
}

/// Why an answer could not be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RememberError {
    /// "Always" with nowhere to keep it.
    #[error("answers cannot be kept for good here (no permissions file); it holds for this session only")]
    NoStore,
    /// The answers file could not be written.
    #[error("the answer could not be written to {file}: {source}; it holds for this session only")]
    Write {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rule to remember does not compile (a bug: answers build their own rules).
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// Answers "for this session" and "always", shared by every agent of a runtime.
pub struct Answers {
    store: Option<Arc<dyn AnswerStore>>,
    always: RwLock<Remembered>,
    sessions: Mutex<HashMap<SessionId, Remembered>>,
}

/// Rules answered so far, and their compiled set.
#[derive(Default, Clone)]
struct Remembered {
    entries: Vec<RuleEntry>,
    set: Arc<RuleSet>,
}

impl Remembered {
    fn with(&self, more: impl IntoIterator<Item = RuleEntry>) -> Result<Self, RuleError> {
        let mut entries = self.entries.clone();
        for entry in more {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        let set = Arc::new(RuleSet::compile(entries.clone())?);
        Ok(Self { entries, set })
    }
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("store", &self.store.as_ref().map(|s| s.location()))
            .finish_non_exhaustive()
    }
}

impl Answers {
    /// Nothing answered, and nowhere to keep "always": it holds for the session only.
    pub fn in_memory() -> Arc<Self> {
        Arc::new(Self { store: None, always: RwLock::default(), sessions: Mutex::default() })
    }

    /// Answers kept in `store`, which holds `kept` already (read from its file).
    pub fn kept_in(store: Arc<dyn AnswerStore>, kept: Vec<Rule>) -> Result<Arc<Self>, RuleError> {
        let file = Some(store.location());
        let entries =
            kept.into_iter().map(|rule| RuleEntry { rule, scope: Scope::Global, file: file.clone() });
        let always = Remembered::default().with(entries)?;
        Ok(Arc::new(Self { store: Some(store), always: RwLock::new(always), sessions: Mutex::default() }))
    }

    /// Where "always" answers go, if anywhere.
    pub fn location(&self) -> Option<String> {
        self.store.as_ref().map(|s| s.location())
    }

    fn always_set(&self) -> Arc<RuleSet> {
        Arc::clone(&self.always.read().unwrap_or_else(PoisonError::into_inner).set)
    }

    fn session_set(&self, session: SessionId) -> Option<Arc<RuleSet>> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.get(&session).map(|r| Arc::clone(&r.set))
    }

    /// Remembers `rules` for `session`, and with [`Remember::Always`] for good too. A session
    /// answer always holds; an error says why one meant for good could not be kept.
    pub fn remember(&self, session: SessionId, rules: &[Rule], how: Remember) -> Result<(), RememberError> {
        for rule in rules {
            rule.validate()?;
        }
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            let current = sessions.entry(session).or_default();
            let entries =
                rules.iter().map(|rule| RuleEntry { rule: rule.clone(), scope: Scope::Session, file: None });
            *current = current.with(entries)?;
        }
        if how == Remember::Session {
            return Ok(());
        }
        let Some(store) = &self.store else { return Err(RememberError::NoStore) };
        store.remember(rules).map_err(|source| RememberError::Write { file: store.location(), source })?;
        let file = Some(store.location());
        let mut always = self.always.write().unwrap_or_else(PoisonError::into_inner);
        let entries = rules.iter().map(|rule| RuleEntry {
            rule: rule.clone(),
            scope: Scope::Global,
            file: file.clone(),
        });
        *always = always.with(entries)?;
        Ok(())
    }

    /// Forgets `session`'s answers (its rules stop applying).
    pub fn forget_session(&self, session: SessionId) {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&session);
    }
}

/// A rule in effect or not, with where it comes from: what `exoclaw permissions` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Listed {
    /// The rule, its scope and file.
    #[serde(flatten)]
    pub entry: RuleEntry,
    /// `false`: ignored, because an untrusted project may only tighten (deny or ask).
    pub in_effect: bool,
}

/// Who may run which tool call: every scope's rules, the defaults under them and the answers
/// given, checked by [`Permissions::check`].
///
/// # How a call is decided
///
/// 1. Its tool names what the call touches ([`crate::Tool::resources`]): paths, hosts, command
///    lines. A command line counts as each simple command in it (`a && b | c` is three).
/// 2. Every rule of every scope whose tool glob matches the tool's name, and whose resource
///    pattern (if it has one) matches the resource, is found: the configuration's
///    (`[permissions] rules`, and every `deny` in `[permissions] tools`), the answers kept
///    "always", the workspace's `.exoclaw/permissions.toml`, and the session's answers.
/// 3. For each resource, the strictest matching rule decides: **deny beats ask beats allow**,
///    whatever scope each comes from, so no scope can loosen what another denies. A resource no
///    rule matches gets the tool's default (`tools`), else its effect's default (`read_only`,
///    `mutating`, `external`).
/// 4. The call gets the strictest of its resources' permissions.
/// 5. `auto_approve` (`--yes`) turns an `ask` into `allow`; a `deny` stays.
///
/// An untrusted workspace may only tighten: its allow rules are ignored (listed, not in effect)
/// until the folder is trusted. An explicit `ask` rule means "ask every time", so answers "for
/// this session" and "always" are offered only when a default asked.
///
/// Cheap to clone: clones share everything, answers included.
#[derive(Clone)]
pub struct Permissions {
    inner: Arc<Inner>,
}

struct Inner {
    /// The defaults and `auto_approve` (its rules are in `policy_rules`).
    defaults: PermissionPolicy,
    /// `[permissions] rules` and `tools` denials.
    policy_rules: RuleSet,
    /// The workspace's rules in effect.
    project: RuleSet,
    /// Every project rule, ignored ones included, for listings.
    project_listed: Vec<Listed>,
    answers: Arc<Answers>,
}

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permissions")
            .field("defaults", &self.inner.defaults)
            .field("rules", &self.inner.policy_rules.entries().len())
            .field("project_rules", &self.inner.project.entries().len())
            .field("answers", &self.inner.answers)
            .finish()
    }
}

impl Default for Permissions {
    fn default() -> Self {
        Self::new(PermissionPolicy::default())
    }
}

impl From<PermissionPolicy> for Permissions {
    fn from(policy: PermissionPolicy) -> Self {
        Self::new(policy)
    }
}

impl Permissions {
    /// The permissions `policy` sets (the global scope), with answers kept in memory only.
    ///
    /// A rule that does not compile (only possible for rules built in code: files are checked
    /// when read) fails closed: every call is denied, and the error is logged. Use
    /// [`Permissions::try_new`] to see it.
    pub fn new(policy: PermissionPolicy) -> Self {
        match Self::try_new(policy) {
            Ok(permissions) => permissions,
            Err(err) => {
                tracing::error!(%err, "a permission rule cannot be used; every tool call is denied");
                let deny_all = PermissionPolicy::default().with_rule(Rule::new("*", Permission::Deny));
                Self::try_new(deny_all).unwrap_or_else(|_| Self::empty())
            }
        }
    }

    /// The permissions `policy` sets, or why one of its rules cannot be used.
    pub fn try_new(policy: PermissionPolicy) -> Result<Self, RuleError> {
        let mut entries: Vec<RuleEntry> = Vec::new();
        for (tool, permission) in &policy.tools {
            if *permission == Permission::Deny {
                let rule = Rule::new(globset::escape(tool), Permission::Deny);
                entries.push(RuleEntry { rule, scope: Scope::Global, file: None });
            }
        }
        entries.extend(policy.rules.iter().map(|rule| RuleEntry {
            rule: rule.clone(),
            scope: Scope::Global,
            file: None,
        }));
        let policy_rules = RuleSet::compile(entries)?;
        let defaults = PermissionPolicy { rules: Vec::new(), ..policy };
        Ok(Self {
            inner: Arc::new(Inner {
                defaults,
                policy_rules,
                project: RuleSet::default(),
                project_listed: Vec::new(),
                answers: Answers::in_memory(),
            }),
        })
    }

    fn empty() -> Self {
        Self {
            inner: Arc::new(Inner {
                defaults: PermissionPolicy {
                    read_only: Permission::Deny,
                    mutating: Permission::Deny,
                    external: Permission::Deny,
                    ..PermissionPolicy::default()
                },
                policy_rules: RuleSet::default(),
                project: RuleSet::default(),
                project_listed: Vec::new(),
                answers: Answers::in_memory(),
            }),
        }
    }

    fn change(self, f: impl FnOnce(&mut Inner)) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            defaults: shared.defaults.clone(),
            policy_rules: shared.policy_rules.clone(),
            project: shared.project.clone(),
            project_listed: shared.project_listed.clone(),
            answers: Arc::clone(&shared.answers),
        });
        let mut inner = inner;
        f(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// The same permissions with the configuration's rules (and every `deny` in `tools`) given as
    /// read from `file` (config.toml), so listings and the audit log name it.
    pub fn with_config_file(self, file: impl Into<String>) -> Self {
        let file = file.into();
        let entries: Vec<RuleEntry> = self
            .inner
            .policy_rules
            .entries()
            .iter()
            .map(|entry| RuleEntry { file: Some(file.clone()), ..RuleEntry::clone(entry) })
            .collect();
        match RuleSet::compile(entries) {
            Ok(set) => self.change(|inner| inner.policy_rules = set),
            Err(_) => self,
        }
    }

    /// The same permissions answering into `answers` (shared with other agents, kept "always" in
    /// its store).
    pub fn with_answers(self, answers: Arc<Answers>) -> Self {
        self.change(|inner| inner.answers = answers)
    }

    /// The same permissions with a workspace's rules (its `.exoclaw/permissions.toml`, `file`).
    /// Unless the folder is `trusted`, its allow rules are ignored: a folder may be anybody's
    /// (a repository just cloned), so it may only tighten.
    pub fn with_project(
        self,
        file: Option<String>,
        rules: Vec<Rule>,
        trusted: bool,
    ) -> Result<Self, RuleError> {
        let listed: Vec<Listed> = rules
            .into_iter()
            .map(|rule| Listed {
                in_effect: trusted || rule.permission != Permission::Allow,
                entry: RuleEntry { rule, scope: Scope::Project, file: file.clone() },
            })
            .collect();
        let set = RuleSet::compile(listed.iter().filter(|l| l.in_effect).map(|l| l.entry.clone()).collect())?;
        Ok(self.change(|inner| {
            inner.project = set;
            inner.project_listed = listed;
        }))
    }

    /// The same permissions with `auto_approve` set to `yes`.
    pub fn with_auto_approve(self, yes: bool) -> Self {
        self.change(|inner| inner.defaults.auto_approve = yes)
    }

    /// The defaults (effects, tools, `auto_approve`), without the rules.
    pub fn defaults(&self) -> &PermissionPolicy {
        &self.inner.defaults
    }

    /// The answers given through these permissions.
    pub fn answers(&self) -> &Arc<Answers> {
        &self.inner.answers
    }

    /// Decides a call of `tool` (with effect `effect`) touching `resources` (resolved, see
    /// [`Resource::in_workspace`]) in `session`: see the type's docs.
    pub fn check(
        &self,
        session: Option<SessionId>,
        tool: &str,
        effect: ToolEffect,
        resources: &[Resource],
    ) -> Verdict {
        let inner = &*self.inner;
        let mut prepared: Vec<Prepared<'_>> = Vec::with_capacity(resources.len());
        for resource in resources {
            match resource {
                Resource::Path(path) => prepared.push(Prepared::Path(path, Candidate::new(path))),
                Resource::Host(host) => prepared.push(Prepared::Host(Candidate::new(host))),
                Resource::Command(line) => {
                    prepared.extend(command::parse(line).into_iter().map(Prepared::Command));
                }
            }
        }
        let tool_name = Candidate::new(tool);
        let mut found = Found::new(prepared.len());
        let always = inner.answers.always_set();
        let session_set = session.and_then(|s| inner.answers.session_set(s));
        for set in [Some(&inner.policy_rules), Some(&*always), Some(&inner.project), session_set.as_deref()]
            .into_iter()
            .flatten()
        {
            set.find(&tool_name, &prepared, &mut found);
        }
        let default = || {
            let defaults = &inner.defaults;
            match defaults.tools.get(tool) {
                Some(permission) => (*permission, Reason::ToolDefault),
                None => (defaults.effect_default(effect), Reason::EffectDefault { effect }),
            }
        };
        let Found { any, each } = found;
        let mut decided: Option<(Permission, Reason)> = None;
        let mut stricter = |permission: Permission, reason: &dyn Fn() -> Reason| {
            if decided.as_ref().is_none_or(|(p, _)| permission.rank() > p.rank()) {
                decided = Some((permission, reason()));
            }
        };
        let from_hit = |hit: &Hit| Reason::Rule(Arc::clone(&hit.entry));
        if prepared.is_empty() {
            match &any {
                Some(hit) => stricter(hit.permission, &|| from_hit(hit)),
                None => {
                    let (permission, reason) = default();
                    stricter(permission, &|| reason.clone());
                }
            }
        }
        for (resource, hit) in prepared.iter().zip(&each) {
            let best = match (&any, hit) {
                (Some(a), Some(h)) if h.permission.rank() > a.permission.rank() => Some(h),
                (Some(a), _) => Some(a),
                (None, h) => h.as_ref(),
            };
            match best {
                Some(hit) => stricter(hit.permission, &|| from_hit(hit)),
                // A command found inside another's `sh -c` only adds denials and questions.
                None if matches!(resource, Prepared::Command(c) if c.nested) => {}
                None => {
                    let (permission, reason) = default();
                    stricter(permission, &|| reason.clone());
                }
            }
        }
        let (permission, reason) = decided.unwrap_or_else(default);
        match permission {
            Permission::Ask if inner.defaults.auto_approve => {
                Verdict { permission: Permission::Allow, reason: Reason::AutoApprove }
            }
            _ => Verdict { permission, reason },
        }
    }

    /// Every rule these permissions hold, in the order checked (configuration, answers kept
    /// "always", the workspace's, then `session`'s answers when given), with whether each is in
    /// effect.
    pub fn rules(&self, session: Option<SessionId>) -> Vec<Listed> {
        let inner = &*self.inner;
        let in_effect = |entry: &Arc<RuleEntry>| Listed { entry: RuleEntry::clone(entry), in_effect: true };
        let mut listed: Vec<Listed> = inner.policy_rules.entries().iter().map(in_effect).collect();
        listed.extend(inner.answers.always_set().entries().iter().map(in_effect));
        listed.extend(inner.project_listed.iter().cloned());
        if let Some(set) = session.and_then(|s| inner.answers.session_set(s)) {
            listed.extend(set.entries().iter().map(in_effect));
        }
        listed
    }
}
