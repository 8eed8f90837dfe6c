//! A tool that finds the turn cannot go on ends it, instead of telling the model.

use super::*;
use exoclaw_types::ErrorCode;
use pretty_assertions::assert_eq;

/// Fails the way a tool whose store is gone would.
struct StoreGone;

#[async_trait]
impl Tool for StoreGone {
    fn spec(&self) -> ToolSpec {
        spec("remember")
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        Err(ToolError::abort(
            "the memory store is unreachable; check its database and send the message again",
        ))
    }
}

#[tokio::test]
async fn an_aborting_tool_ends_the_turn_and_the_model_is_not_called_again() {
    let h = harness([
        Script::Answer(calls(&[("c1", "remember", json!({}))])),
        Script::Answer(text("Never sent.")),
    ]);
    let mut tools = h.runner.tools().clone();
    tools.register(Arc::new(StoreGone));
    let h = Harness { runner: h.runner.clone().with_tools(tools), ..h };
    let out = turn(&h, "remember this").await;
    assert_eq!(h.provider.requests().len(), 1);
    assert_eq!(out.result.outcome, TurnOutcome::Failed);
    assert_eq!(
        out.error(),
        Some((
            ErrorCode::ToolAborted.to_string(),
            "the tool `remember` stopped the turn: the memory store is unreachable; check its database and \
             send the message again"
                .to_owned()
        ))
    );
    // No call is left without a result in what is stored.
    assert!(tool_calls_paired(&out.result.messages), "{:#?}", out.result.messages);
}

#[tokio::test]
async fn a_failing_tool_is_still_told_to_the_model() {
    let h = harness([Script::Answer(calls(&[("c1", "fail", json!({}))])), Script::Answer(text("Sorry."))]);
    let out = turn(&h, "try").await;
    assert_eq!(out.result.outcome, TurnOutcome::Completed);
    assert!(!ToolError::Failed("x".into()).aborts_turn());
    assert!(ToolError::abort("x").aborts_turn());
    assert_eq!(h.provider.requests().len(), 2);
}
