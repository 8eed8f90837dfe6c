//! The [`Tool`] trait: something an agent can call — a builtin, an MCP tool, a WASM plugin, a
//! sub-agent — and the [`ToolRegistry`] a run draws from.

use async_trait::async_trait;
use exoclaw_types::{ErrorCode, SessionId, ToolEffect, ToolSpec};
use schemars::JsonSchema;
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

/// The tools a run may call, by name, in name order.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
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

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Every tool's spec, in name order, for the model.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// The tools' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}
