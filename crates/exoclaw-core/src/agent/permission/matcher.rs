//! [`RuleSet`]: rules compiled for checking, so that a call is checked against a thousand of them
//! in microseconds — one glob set over the tool names, one over path patterns, one over host
//! patterns and an index of command patterns by first word, instead of a loop over the rules.

use super::Permission;
use super::command::SimpleCommand;
use super::rule::{Rule, RuleEntry, RuleError, command_words};
use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::sync::Arc;

/// What a rule looks at besides the tool's name.
#[derive(Debug, Clone)]
enum Kind {
    /// Nothing: every call of its tools.
    Any,
    /// A path glob (in [`RuleSet::paths`]).
    Path,
    /// A host glob (in [`RuleSet::hosts`]).
    Host,
    /// A command's first words.
    Command(Vec<String>),
}

/// A resource ready to be matched: globs' candidates are built once per check, not per rule set.
pub(crate) enum Prepared<'a> {
    /// The path as given, and as a candidate.
    Path(&'a str, Candidate<'a>),
    Host(Candidate<'a>),
    Command(SimpleCommand),
}

/// The strictest rule a set found, with its place for ties.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub permission: Permission,
    pub entry: Arc<RuleEntry>,
}

/// What one rule set says about a call: the strictest rule without a resource pattern, and the
/// strictest rule for each resource (in the order given).
pub(crate) struct Found {
    pub any: Option<Hit>,
    pub each: Vec<Option<Hit>>,
}

impl Found {
    pub fn new(resources: usize) -> Self {
        Self { any: None, each: vec![None; resources] }
    }
}

/// Globs and the rule of each.
#[derive(Debug, Clone)]
struct Globs {
    set: GlobSet,
    rules: Vec<usize>,
}

impl Default for Globs {
    fn default() -> Self {
        Self { set: GlobSet::empty(), rules: Vec::new() }
    }
}

/// Path globs by their first component when it is literal (`src/**` under `src`), so that a path
/// is matched against the few globs that can match it, not every one: a set of hundreds of globs
/// is a regex set, slow to run; the rest (`**/.env`, `*.md`) are matched all together.
#[derive(Debug, Clone, Default)]
struct PathIndex {
    by_first: HashMap<String, Globs>,
    wild: Globs,
}

impl PathIndex {
    fn is_empty(&self) -> bool {
        self.by_first.is_empty() && self.wild.rules.is_empty()
    }

    /// The rules whose globs match `path`, in rule order.
    fn matches(&self, path: &str, candidate: &Candidate<'_>, into: &mut Vec<usize>) {
        into.clear();
        let mut found = Vec::new();
        let first = path.split('/').next().unwrap_or(path);
        for globs in self.by_first.get(first).into_iter().chain([&self.wild]) {
            globs.set.matches_candidate_into(candidate, &mut found);
            into.extend(found.iter().map(|&glob| globs.rules[glob]));
        }
        into.sort_unstable();
    }
}

/// A path glob's first component, when it has no glob syntax (`src` of `src/**/*.rs`).
fn literal_first(glob: &str) -> Option<String> {
    let first = glob.split('/').next().unwrap_or(glob);
    (!first.contains(['*', '?', '[', ']', '{', '}', '\\'])).then(|| first.to_owned())
}

/// Rules compiled for checking.
#[derive(Debug, Clone)]
pub(crate) struct RuleSet {
    entries: Vec<Arc<RuleEntry>>,
    kinds: Vec<Kind>,
    tools: GlobSet,
    paths: PathIndex,
    hosts: GlobSet,
    host_rules: Vec<usize>,
    /// Command rules by their first word.
    commands: HashMap<String, Vec<usize>>,
}

impl Default for RuleSet {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            kinds: Vec::new(),
            tools: GlobSet::empty(),
            paths: PathIndex::default(),
            hosts: GlobSet::empty(),
            host_rules: Vec::new(),
            commands: HashMap::new(),
        }
    }
}

fn glob_error(field: &'static str, pattern: &str, e: &globset::Error) -> RuleError {
    RuleError::Glob { field, pattern: pattern.to_owned(), message: e.kind().to_string() }
}

impl RuleSet {
    /// Compiles `entries`, in order (which decides ties, see [`crate::Permissions`]).
    pub fn compile(entries: Vec<RuleEntry>) -> Result<Self, RuleError> {
        let mut tools = GlobSetBuilder::new();
        let mut paths: HashMap<Option<String>, (GlobSetBuilder, Vec<usize>)> = HashMap::new();
        let mut hosts = GlobSetBuilder::new();
        let mut set = Self::default();
        for (index, entry) in entries.into_iter().enumerate() {
            let rule: &Rule = &entry.rule;
            rule.validate()?;
            let tool =
                GlobBuilder::new(&rule.tool).build().map_err(|e| glob_error("tool", &rule.tool, &e))?;
            tools.add(tool);
            let kind = if let Some(path) = &rule.path {
                let glob = GlobBuilder::new(path)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| glob_error("path", path, &e))?;
                let (builder, rules) =
                    paths.entry(literal_first(path)).or_insert_with(|| (GlobSetBuilder::new(), Vec::new()));
                builder.add(glob);
                rules.push(index);
                Kind::Path
            } else if let Some(host) = &rule.host {
                let glob = GlobBuilder::new(host)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| glob_error("host", host, &e))?;
                hosts.add(glob);
                set.host_rules.push(index);
                Kind::Host
            } else if let Some(prefix) = &rule.command {
                let words = command_words(prefix)?;
                set.commands.entry(words[0].clone()).or_default().push(index);
                Kind::Command(words)
            } else {
                Kind::Any
            };
            set.kinds.push(kind);
            set.entries.push(Arc::new(entry));
        }
        let built = |builder: GlobSetBuilder, field| {
            builder.build().map_err(|e| RuleError::Glob {
                field,
                pattern: String::new(),
                message: e.to_string(),
            })
        };
        set.tools = built(tools, "tool")?;
        for (first, (builder, rules)) in paths {
            let globs = Globs { set: built(builder, "path")?, rules };
            match first {
                Some(first) => {
                    set.paths.by_first.insert(first, globs);
                }
                None => set.paths.wild = globs,
            }
        }
        set.hosts = built(hosts, "host")?;
        Ok(set)
    }

    /// The rules, in order.
    pub fn entries(&self) -> &[Arc<RuleEntry>] {
        &self.entries
    }

    /// Adds what this set says about a call of `tool` touching `resources` to `found`: a rule
    /// replaces what was found only when it is stricter, so earlier sets and rules win ties.
    pub fn find(&self, tool: &Candidate<'_>, resources: &[Prepared<'_>], found: &mut Found) {
        if self.entries.is_empty() {
            return;
        }
        let mut matched = Vec::new();
        self.tools.matches_candidate_into(tool, &mut matched);
        if matched.is_empty() {
            return;
        }
        let mut of_tool = vec![0_u64; self.entries.len().div_ceil(64)];
        for &index in &matched {
            of_tool[index / 64] |= 1 << (index % 64);
            if matches!(self.kinds[index], Kind::Any) {
                self.consider(index, &mut found.any);
            }
        }
        let applies = |index: usize| of_tool[index / 64] & (1 << (index % 64)) != 0;
        for (resource, slot) in resources.iter().zip(found.each.iter_mut()) {
            match resource {
                Prepared::Path(path, candidate) if !self.paths.is_empty() => {
                    self.paths.matches(path, candidate, &mut matched);
                    for &index in &matched {
                        if applies(index) {
                            self.consider(index, slot);
                        }
                    }
                }
                Prepared::Host(host) if !self.host_rules.is_empty() => {
                    self.hosts.matches_candidate_into(host, &mut matched);
                    for &glob in &matched {
                        let index = self.host_rules[glob];
                        if applies(index) {
                            self.consider(index, slot);
                        }
                    }
                }
                Prepared::Command(command) if !self.commands.is_empty() => {
                    self.find_command(command, &applies, slot);
                }
                Prepared::Path(..) | Prepared::Host(_) | Prepared::Command(_) => {}
            }
        }
    }

    /// Command rules matching `command` from its first word (any rule), or from where the
    /// command proper starts past its wrappers (deny and ask rules only). A command found inside
    /// another's `sh -c` is judged by deny and ask rules only.
    fn find_command(&self, command: &SimpleCommand, applies: &dyn Fn(usize) -> bool, slot: &mut Option<Hit>) {
        let starts: &[usize] = if command.core == 0 { &[0] } else { &[0, command.core] };
        for &start in starts {
            let Some(first) = command.words.get(start) else { continue };
            let Some(candidates) = self.commands.get(first) else { continue };
            let only_strict = start != 0 || command.nested;
            for &index in candidates {
                let Kind::Command(words) = &self.kinds[index] else { continue };
                if !applies(index) || !command.words[start..].starts_with(words) {
                    continue;
                }
                if only_strict && self.entries[index].rule.permission == Permission::Allow {
                    continue;
                }
                self.consider(index, slot);
            }
        }
    }

    fn consider(&self, index: usize, slot: &mut Option<Hit>) {
        let permission = self.entries[index].rule.permission;
        if slot.as_ref().is_none_or(|hit| permission.rank() > hit.permission.rank()) {
            *slot = Some(Hit { permission, entry: Arc::clone(&self.entries[index]) });
        }
    }
}
