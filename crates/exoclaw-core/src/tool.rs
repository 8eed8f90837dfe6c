//! The [`Tool`] trait: something an agent can call — a builtin, an MCP tool, a WASM plugin, a
//! sub-agent — and the [`ToolRegistry`] a run draws from.

use crate::agent::Resource;
use async_trait::async_trait;
use exoclaw_types::{ErrorCode, SessionId, ToolEffect, ToolSpec};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a tool may rely on while it runs.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The directory file tools are jailed to; commands start here.
    pub workspace_root: PathBuf,
    /// Cancelled when the turn is cancelled or the tool's time is up; long tools watch it.
    pub cancel: CancellationToken,
    /// The session the call is made in (`None` outside a session, as in a tool's own tests):
    /// tools that keep something per session or per user (memory) find it from here.
    pub session: Option<SessionId>,
}

impl ToolContext {
    /// A context rooted at `workspace_root` with a fresh cancellation token, in no session.
    pub fn new(workspace_root: impl Into<PathBuf>) -> Self {
        Self { workspace_root: workspace_root.into(), cancel: CancellationToken::new(), session: None }
    }

    /// The same context in `session`.
    pub fn in_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }
}

/// Why a tool call did not produce a result.
///
/// Two kinds, and a tool picks on purpose: every variant but [`ToolError::Abort`] is told to the
/// model as the call's (failed) result, so it can fix its arguments or try something else — bad
/// arguments, a refused path, a command that failed or timed out. [`ToolError::Abort`] is for
/// when the turn itself cannot go on (the tool's store is gone, a budget the tool spends from is
/// exhausted): the model is not called again and the turn ends `Failed` with an
/// [`AgentEvent::Error`](exoclaw_types::AgentEvent::Error) carrying its code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The call was refused (a path outside the workspace, a denied permission).
    #[error("refused: {0}")]
    Refused(String),
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The tool did not finish in time.
    #[error("timed out after {}", humantime(*.0))]
    Timeout(Duration),
    /// The turn was cancelled while the tool ran.
    #[error("cancelled")]
    Cancelled,
    /// The turn cannot go on; see the type's docs. Build with [`ToolError::abort`].
    #[error("{message}")]
    Abort {
        /// The code the turn's `Error` event carries ([`ErrorCode::ToolAborted`] unless a more
        /// precise one fits, such as [`ErrorCode::BudgetExceeded`]).
        code: ErrorCode,
        /// What happened and what to do, for the user.
        message: String,
    },
}

impl ToolError {
    /// An error that ends the turn with [`ErrorCode::ToolAborted`].
    pub fn abort(message: impl Into<String>) -> Self {
        Self::Abort { code: ErrorCode::ToolAborted, message: message.into() }
    }

    /// Whether this error ends the turn rather than being told to the model.
    pub fn aborts_turn(&self) -> bool {
        matches!(self, Self::Abort { .. })
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}

/// A tool the model can call. Object-safe; a run holds tools as `Arc<dyn Tool>`.
///
/// Most tools implement [`TypedTool`] instead and get this trait from its blanket impl.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and JSON schema of the arguments, as the model sees them.
    fn spec(&self) -> ToolSpec;

    /// Whether the tool only reads, changes things, or reaches outside; drives permission prompts.
    fn effect(&self) -> ToolEffect;

    /// What a call with `args` touches — paths as the model wrote them, hosts, command lines —
    /// for permission rules and the audit log. Default: nothing, so only rules on the tool's name
    /// apply to it.
    fn resources(&self, args: &Value) -> Vec<Resource> {
        let _ = args;
        Vec::new()
    }

    /// How its calls are confined (the shell's sandbox: `workspace-write, no network`), shown
    /// when the user is asked to approve one. Default: nothing to say.
    fn confinement(&self) -> Option<String> {
        None
    }

    /// Runs the tool with the model's arguments. The returned text goes back to the model.
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError>;
}

/// A tool with typed arguments; its JSON schema comes from `Args`.
#[async_trait]
pub trait TypedTool: Send + Sync {
    /// The arguments, deserialised from the model's JSON.
    type Args: DeserializeOwned + JsonSchema + Send;

    /// The tool's name (`read_file`).
    const NAME: &'static str;

    /// What the tool does, for the model.
    fn description(&self) -> String;

    /// Whether the tool only reads, changes things, or reaches outside.
    fn effect(&self) -> ToolEffect;

    /// What a call touches (see [`Tool::resources`]); arguments that do not parse touch nothing
    /// (the call fails before it runs). Default: nothing.
    fn resources(&self, args: &Self::Args) -> Vec<Resource> {
        let _ = args;
        Vec::new()
    }

    /// How its calls are confined (see [`Tool::confinement`]). Default: nothing to say.
    fn confinement(&self) -> Option<String> {
        None
    }

    /// Runs the tool.
    async fn run(&self, args: Self::Args, ctx: &ToolContext) -> Result<String, ToolError>;
}

#[async_trait]
impl<T: TypedTool> Tool for T {
    fn spec(&self) -> ToolSpec {
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.meta_schema = None)
            .into_generator()
            .into_root_schema_for::<T::Args>();
        let mut input_schema = schema.to_value();
        if let Some(obj) = input_schema.as_object_mut() {
            obj.remove("title");
        }
        ToolSpec { name: T::NAME.to_owned(), description: self.description(), input_schema }
    }

    fn effect(&self) -> ToolEffect {
        TypedTool::effect(self)
    }

    fn resources(&self, args: &Value) -> Vec<Resource> {
        match T::Args::deserialize(args) {
            Ok(args) => TypedTool::resources(self, &args),
            Err(_) => Vec::new(),
        }
    }

    fn confinement(&self) -> Option<String> {
        TypedTool::confinement(self)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<String, ToolError> {
        // A model that produced unparseable JSON has it kept as a string: say so plainly.
        if let Value::String(raw) = &args {
            return Err(ToolError::InvalidArguments(format!(
                "the arguments are not a JSON object: {}",
                raw.chars().take(200).collect::<String>()
            )));
        }
        let args: T::Args =
            serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        self.run(args, ctx).await
    }
}

/// Tools that come and go while exoclaw runs: an MCP server's, offered once the server is ready
/// and refreshed when it says its list changed. A [`ToolRegistry`] asks its sources at the start
/// of every turn, so an implementation answers from memory and never waits on IO.
pub trait ToolSource: Send + Sync {
    /// The tools available now, to offer the model.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;

    /// The tool called `name`, available or not: a tool offered at the start of a turn whose
    /// server went down since is still found, and its call says why it cannot run.
    fn get(&self, name: &str) -> Option<Arc<dyn Tool>>;
}

/// Which tools, by name, a [`ToolRegistry::narrowed`] registry keeps.
pub type ToolFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A source seen through a [`ToolFilter`], less the names its registry shadowed.
struct NarrowedSource {
    inner: Arc<dyn ToolSource>,
    keep: ToolFilter,
    shadowed: Arc<std::collections::BTreeSet<String>>,
}

impl NarrowedSource {
    fn kept(&self, name: &str) -> bool {
        !self.shadowed.contains(name) && (self.keep)(name)
    }
}

impl ToolSource for NarrowedSource {
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.inner.tools().into_iter().filter(|tool| self.kept(&tool.spec().name)).collect()
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        if self.kept(name) { self.inner.get(name) } else { None }
    }
}

/// The tools a run may call, by name, in name order: tools registered once, and the current
/// tools of each [`ToolSource`] (a registered tool wins over a source's of the same name).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tool`, replacing any tool of the same name.
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
    }

    /// Adds a source of tools that come and go.
    pub fn register_source(&mut self, source: Arc<dyn ToolSource>) {
        self.sources.push(source);
    }

    /// The tool called `name`: a registered one, else the first source's that knows it.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        match self.tools.get(name) {
            Some(tool) => Some(Arc::clone(tool)),
            None => self.sources.iter().find_map(|source| source.get(name)),
        }
    }

    /// The registered tools, in name order (without the sources' tools).
    pub fn registered(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.values()
    }

    /// The sources' tools available now, in name order, less those a registered tool shadows.
    pub fn from_sources(&self) -> Vec<Arc<dyn Tool>> {
        let mut found: BTreeMap<String, Arc<dyn Tool>> = BTreeMap::new();
        for tool in self.sources.iter().flat_map(|source| source.tools()) {
            let name = tool.spec().name;
            if !self.tools.contains_key(&name) {
                found.entry(name).or_insert(tool);
            }
        }
        found.into_values().collect()
    }

    /// Every available tool's spec, in name order, for the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self.tools.values().map(|t| t.spec()).collect();
        specs.extend(self.from_sources().iter().map(|t| t.spec()));
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        specs
    }

    /// The available tools' names, in order.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tools.keys().cloned().collect();
        names.extend(self.from_sources().iter().map(|t| t.spec().name));
        names.sort();
        names
    }

    /// The same tools less those `keep` refuses by name: the registered ones filtered now, each
    /// source's at every turn (a tool a source adds later is judged too). A tool left out can be
    /// neither offered nor called, and a source's tool a left-out registered one shadowed stays
    /// shadowed. How agents are narrowed to baskets.
    pub fn narrowed(&self, keep: ToolFilter) -> ToolRegistry {
        let tools: BTreeMap<String, Arc<dyn Tool>> = self
            .tools
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, tool)| (name.clone(), Arc::clone(tool)))
            .collect();
        let shadowed: Arc<std::collections::BTreeSet<String>> =
            Arc::new(self.tools.keys().cloned().collect());
        let sources = self
            .sources
            .iter()
            .map(|inner| {
                Arc::new(NarrowedSource {
                    inner: Arc::clone(inner),
                    keep: Arc::clone(&keep),
                    shadowed: Arc::clone(&shadowed),
                }) as Arc<dyn ToolSource>
            })
            .collect();
        ToolRegistry { tools, sources }
    }

    /// How many tools are registered (the sources' not counted).
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are no tools, registered or from a source.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Named(&'static str);

    #[async_trait]
    impl Tool for Named {
        fn spec(&self) -> ToolSpec {
            ToolSpec {
                name: self.0.into(),
                description: String::new(),
                input_schema: json!({"type": "object"}),
            }
        }

        fn effect(&self) -> ToolEffect {
            ToolEffect::ReadOnly
        }

        async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
            Ok(self.0.into())
        }
    }

    struct Source(Vec<&'static str>);

    impl ToolSource for Source {
        fn tools(&self) -> Vec<Arc<dyn Tool>> {
            self.0.iter().map(|n| Arc::new(Named(n)) as Arc<dyn Tool>).collect()
        }

        fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
            self.0.iter().find(|n| **n == name).map(|n| Arc::new(Named(n)) as Arc<dyn Tool>)
        }
    }

    #[test]
    fn a_narrowed_registry_neither_offers_nor_finds_what_it_left_out() {
        let mut registry = ToolRegistry::new();
        registry.register(Arc::new(Named("read_file")));
        registry.register(Arc::new(Named("shell")));
        registry.register_source(Arc::new(Source(vec!["shell", "docs__search", "db__query"])));
        let narrowed = registry.narrowed(Arc::new(|name: &str| name != "shell" && name != "db__query"));
        assert_eq!(narrowed.names(), ["docs__search", "read_file"]);
        assert!(narrowed.get("shell").is_none(), "the source's shell stays shadowed by the left-out one");
        assert!(narrowed.get("db__query").is_none());
        assert!(narrowed.get("docs__search").is_some());
        assert_eq!(
            registry.names(),
            ["db__query", "docs__search", "read_file", "shell"],
            "the original is kept"
        );
    }
}
