//! What every channel's tests share: a runtime whose model says back what it was asked (or, for
//! approvals, one whose model calls a tool that needs a person's approval), and waiting for a
//! recorded platform API to have been called.

#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use exoclaw_core::runtime::AgentRuntime;
use exoclaw_core::{AgentRunner, Resource, Tool, ToolContext, ToolError, ToolRegistry};
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use exoclaw_testkit::runtime::ScriptedRuntime;
use exoclaw_testkit::server::{Recorded, ScriptedServer};
use exoclaw_types::{Part, Role, ToolCall, ToolEffect, ToolSpec};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A model that says "you said: …" followed by every user message of the session so far.
pub fn echo_model() -> Arc<RespondingProvider> {
    Arc::new(RespondingProvider::new("echo", |request| {
        let said: Vec<String> =
            request.messages.iter().filter(|m| m.role == Role::User).map(|m| m.text()).collect();
        Outcome::Text(format!("you said: {}", said.join(" | ")))
    }))
}

/// A runtime whose `default` agent (described as `description`) answers with `model`, on a
/// session store in memory.
pub async fn runtime(model: &Arc<RespondingProvider>, description: Option<&str>) -> Arc<dyn AgentRuntime> {
    let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let runner = AgentRunner::new(model.clone(), "m", "echo/m").with_agent("default");
    Arc::new(ScriptedRuntime::new(store).agent("default", description.map(str::to_owned), runner))
}

/// A model that says what it was given in the last user message: "saw: TEXT + N image(s)", the
/// text parts joined with " / ".
pub fn seeing_model() -> Arc<RespondingProvider> {
    Arc::new(RespondingProvider::new("seeing", |request| {
        let last = request.messages.iter().rev().find(|m| m.role == Role::User).unwrap();
        let texts: Vec<&str> = last
            .parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let images = last.parts.iter().filter(|part| matches!(part, Part::Image { .. })).count();
        Outcome::Text(format!("saw: {} + {images} image(s)", texts.join(" / ")))
    }))
}

/// A runtime whose `default` agent answers with `model`, its tools working in `workspace`.
pub async fn runtime_in(
    model: Arc<RespondingProvider>,
    workspace: &std::path::Path,
) -> Arc<dyn AgentRuntime> {
    let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let runner =
        AgentRunner::new(model, "m", "caller/m").with_agent("default").with_workspace_root(workspace);
    Arc::new(ScriptedRuntime::new(store).agent("default", None, runner))
}

/// A workspace holding `report.csv`, and a runtime whose agent sends it (`send_file`, captioned
/// "Q3 totals") and then answers "the tool said: …".
pub async fn sending_runtime() -> (tempfile::TempDir, Arc<dyn AgentRuntime>) {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("report.csv"), REPORT).unwrap();
    let model = calling_model("send_file", json!({"path": "report.csv", "caption": "Q3 totals"}));
    let runtime = runtime_in(model, workspace.path()).await;
    (workspace, runtime)
}

/// The file [`sending_runtime`]'s agent sends.
pub const REPORT: &str = "region,total\nnorth,12\nsouth,30\n";

/// What [`sending_runtime`]'s agent answers.
pub const SENT: &str = "the tool said: `report.csv` (31 bytes) will be attached to your answer.";

/// A PNG's first bytes: enough for exoclaw to know it is one.
pub const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];

/// The calls `api` received, once at least `count` have arrived (within thirty seconds).
pub async fn calls(api: &ScriptedServer, count: usize) -> Vec<Recorded> {
    for _ in 0..300 {
        if api.requests().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = api.requests();
    assert!(requests.len() >= count, "{requests:?}");
    requests
}

/// A tool that deploys (a change, so the default permissions ask a person first): the targets
/// it deployed.
#[derive(Default)]
pub struct Deploy {
    pub deployed: Mutex<Vec<String>>,
}

impl Deploy {
    pub fn deployed(&self) -> Vec<String> {
        self.deployed.lock().unwrap().clone()
    }
}

#[async_trait]
impl Tool for Deploy {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "deploy".into(),
            description: "Deploys the service".into(),
            input_schema: json!({"type": "object", "properties": {"target": {"type": "string"}}}),
        }
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }

    fn resources(&self, args: &Value) -> Vec<Resource> {
        vec![Resource::Command(format!("deploy {}", args["target"].as_str().unwrap_or_default()))]
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let target = args["target"].as_str().unwrap_or_default().to_owned();
        self.deployed.lock().unwrap().push(target.clone());
        Ok(format!("deployed to {target}"))
    }
}

/// A model that asks to deploy to `<prod>` and, given the tool's result, says "the tool said: …".
pub fn deploying_model() -> Arc<RespondingProvider> {
    calling_model("deploy", json!({"target": "<prod>"}))
}

/// A model that calls `tool` with `arguments` and, given the tool's result, says "the tool
/// said: …".
pub fn calling_model(tool: &'static str, arguments: Value) -> Arc<RespondingProvider> {
    Arc::new(RespondingProvider::new("caller", move |request| {
        let result = request.messages.last().filter(|m| m.role == Role::Tool).and_then(|m| {
            m.parts.iter().find_map(|part| match part {
                Part::ToolResult(result) => Some(result.content.clone()),
                _ => None,
            })
        });
        match result {
            Some(content) => Outcome::Text(format!("the tool said: {content}")),
            None => Outcome::ToolCall(ToolCall {
                id: "call-1".into(),
                name: tool.into(),
                arguments: arguments.clone(),
            }),
        }
    }))
}

/// A tool that only reads (the default permissions let it run without asking anyone).
pub struct CountRows;

#[async_trait]
impl Tool for CountRows {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "count_rows".into(),
            description: "Counts the rows of a table".into(),
            input_schema: json!({"type": "object", "properties": {"table": {"type": "string"}}}),
        }
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }

    fn resources(&self, _args: &Value) -> Vec<Resource> {
        Vec::new()
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        Ok("42 rows".to_owned())
    }
}

/// What [`counting_runtime`]'s agent answers.
pub const COUNTED: &str = "the tool said: 42 rows";

/// A runtime whose `default` agent calls `count_rows` (which runs without asking) and then
/// answers [`COUNTED`].
pub async fn counting_runtime() -> Arc<dyn AgentRuntime> {
    let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(CountRows));
    let runner = AgentRunner::new(calling_model("count_rows", json!({"table": "users"})), "m", "caller/m")
        .with_agent("default")
        .with_tools(tools);
    Arc::new(ScriptedRuntime::new(store).agent("default", None, runner))
}

/// A runtime whose `default` agent answers with [`deploying_model`] and may call `deploy`, which
/// the default permissions ask about.
pub async fn deploying_runtime(deploy: &Arc<Deploy>) -> Arc<dyn AgentRuntime> {
    let store = Arc::new(exoclaw_store::Store::open("sqlite::memory:").await.unwrap());
    let mut tools = ToolRegistry::new();
    tools.register(deploy.clone());
    let runner = AgentRunner::new(deploying_model(), "m", "caller/m").with_agent("default").with_tools(tools);
    Arc::new(ScriptedRuntime::new(store).agent("default", None, runner))
}

/// The answer to a prompt the tests' asker gives, or not.
pub const DENIED: &str = "the tool said: permission denied: `deploy` was not run: the user denied this call";
