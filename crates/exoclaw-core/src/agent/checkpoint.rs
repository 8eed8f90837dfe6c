//! [`Checkpoints`]: where a turn's state goes after every step, so that a process killed mid-turn
//! resumes it instead of losing it.
//!
//! The runner saves the [`Run`] after it starts, after each model answer, after each approval
//! decision, when tool calls start and after each tool result
//! ([`crate::AgentRunner::drive_checkpointed`]). A turn that cannot be checkpointed is stopped
//! rather than run on without a safety net. The serialised run leaves out the session's history,
//! so a checkpoint's size depends on the turn alone; see [`Run::resume`] for restoring one.

use crate::StoreError;
use crate::agent::run::Run;
use async_trait::async_trait;

/// Stores a turn's checkpoints. Implemented by the session stores (one row per turn in flight,
/// replaced at every step and removed when the turn is committed) and by [`NoCheckpoints`].
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// Stores `run` as the turn's latest state, replacing the previous checkpoint.
    async fn save(&self, run: &Run) -> Result<(), StoreError>;
}

/// Keeps no checkpoints: a turn that is interrupted is lost, as [`crate::AgentRunner::drive`]
/// does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoCheckpoints;

#[async_trait]
impl Checkpoints for NoCheckpoints {
    async fn save(&self, _run: &Run) -> Result<(), StoreError> {
        Ok(())
    }
}
