//! [`TokenGuide`]: a hook that restricts which tokens may come next, for constrained decoding.

use crate::LocalError;

/// Restricts generation, one token at a time.
pub trait TokenGuide: Send {
    /// Which tokens may come next, given the tokens generated so far: `None` allows any, otherwise
    /// `allowed[id]` says whether token `id` may come next.
    fn allowed(&mut self, generated: &[u32]) -> Result<Option<Vec<bool>>, LocalError>;

    /// Records the token that was chosen.
    fn accept(&mut self, token: u32) -> Result<(), LocalError>;

    /// Whether the guided output is complete and generation should stop.
    fn is_complete(&self) -> bool;
}
