//! Shared set-up: a private exoclaw home and workspace per test, and the binary pointed at them.

mod agent;
mod channels;
mod config;
mod crash;
mod gateway;
mod gateway_ws;
mod local_model;
mod mcp;
mod memory;
mod peers;
mod permissions;
mod plugins;
mod routing;
mod sandbox;
mod sessions;
mod skills;
mod ssh;
mod trust;

use exoclaw_testkit::server::ScriptedServer;
use exoclaw_types::AgentEvent;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Variables that would make exoclaw use a real cloud provider or another home.
const FOREIGN_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "XAI_API_KEY",
    "OPENROUTER_API_KEY",
    "EXOCLAW_MODEL",
    "EXOCLAW_CONFIG",
    "EXOCLAW_STORAGE_URL",
    "OPENAI_BASE_URL",
];

/// A private exoclaw home (config, database, history) and workspace for one test.
pub struct Env {
    pub home: tempfile::TempDir,
    pub workspace: tempfile::TempDir,
    /// The model cache the binary is pointed at (`EXOCLAW_MODELS_DIR`): the one the project's
    /// peer scripts fill when it may use the embedded models, else an empty one (offline, memory
    /// then searches by words alone, as on a machine that never fetched the embedding model).
    models: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Self {
        Self { home: tempfile::tempdir().unwrap(), workspace: tempfile::tempdir().unwrap(), models: None }
    }

    /// An environment whose binary finds the embedded model in the cache the project's peer
    /// script fills (it stays offline: nothing is downloaded).
    pub fn with_embedded_model() -> Self {
        let model = exoclaw_testkit::peers::smollm2_gguf();
        Self { models: model.parent().map(Path::to_path_buf), ..Self::new() }
    }

    /// The workspace directory (canonical: temp dirs may sit behind a symlink).
    pub fn ws(&self) -> PathBuf {
        self.workspace.path().canonicalize().unwrap()
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.path().join("config.toml")
    }

    /// Writes the config file.
    pub fn config(&self, toml: &str) -> &Self {
        std::fs::write(self.config_path(), toml).unwrap();
        self
    }

    /// A config whose default model is the scripted one at `server`, with `extra` appended.
    pub fn scripted(&self, server: &ScriptedServer, extra: &str) -> &Self {
        self.config(&format!(
            "model = \"script/scripted\"\n{extra}\n[providers.script]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test-secret\"\n",
            server.url()
        ))
    }

    /// `exoclaw` in the workspace, with this home and no cloud keys.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("exoclaw"));
        cmd.current_dir(self.workspace.path())
            .env("EXOCLAW_HOME", self.home.path())
            .env("EXOCLAW_OFFLINE", "1")
            .env("NO_COLOR", "1");
        for var in FOREIGN_VARS {
            cmd.env_remove(var);
        }
        if self.config_path().exists() {
            cmd.env("EXOCLAW_CONFIG", self.config_path());
        }
        match &self.models {
            Some(models) => cmd.env("EXOCLAW_MODELS_DIR", models),
            None => cmd.env("EXOCLAW_MODELS_DIR", self.home.path().join("models")),
        };
        cmd
    }

    /// Runs `exoclaw ARGS` to the end, off the async runtime (the scripted server lives on it).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.std_cmd();
        cmd.args(args).stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the run succeeded, showing its output otherwise.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// The `--json` event lines.
pub fn events(out: &Output) -> Vec<AgentEvent> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// The tool results a Chat Completions request carried back to the model, as `(id, content)`.
pub fn tool_messages(body: &serde_json::Value) -> Vec<(String, String)> {
    exoclaw_testkit::script::request_messages(body)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or("").to_owned(),
                m["content"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
