//! What every channel's tests share: a runtime whose model says back what it was asked, and
//! waiting for a recorded platform API to have been called.

#![allow(dead_code, clippy::unwrap_used)]

use exoclaw_core::AgentRunner;
use exoclaw_core::runtime::AgentRuntime;
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use exoclaw_testkit::runtime::ScriptedRuntime;
use exoclaw_testkit::server::{Recorded, ScriptedServer};
use exoclaw_types::Role;
use std::sync::Arc;
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
