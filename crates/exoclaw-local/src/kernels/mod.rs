//! Matrix kernels of our own, for weight types candle has no fast CPU kernel for.
//!
//! - [`q4_1`]: matrix-vector products straight from Q4_1 weights (what SmolLM2's GGUF ships), so
//!   that generating a token reads the 20-byte Q4_1 blocks instead of re-quantised 34-byte Q8_0
//!   ones.
//!
//! The work is spread over candle's CPU thread pool (the one its own matrix products use, so the
//! threads are already spinning between products and no thread is started per call).

pub(crate) mod q4_1;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Splits `out` into parts of `part_len` values (the last may be shorter) and runs `work` on
/// every part, with the part's index, on candle's thread pool. Threads take the next part from a
/// shared cursor, so one that is slowed down (another process on its core) leaves its share to the
/// others instead of holding everyone at the barrier.
pub(crate) fn parallel_parts<F>(out: &mut [f32], part_len: usize, work: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let parts: Vec<Mutex<&mut [f32]>> = out.chunks_mut(part_len.max(1)).map(Mutex::new).collect();
    if let [only] = parts.as_slice() {
        return work(0, &mut only.lock().unwrap_or_else(PoisonError::into_inner));
    }
    let next = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute(|_thread| {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = parts.get(index) else { break };
            // Each part is taken once, so its lock is never contended; it only lets two threads
            // hold disjoint `&mut` parts of one buffer without `unsafe`.
            let mut part = part.lock().unwrap_or_else(PoisonError::into_inner);
            work(index, &mut part);
        }
    });
}

/// Rows per part when `rows` rows of output are split over the pool: about four parts per
/// thread (enough to even out a straggler, few enough that taking a part costs nothing), and
/// never so few rows that a part is mostly overhead.
pub(crate) fn rows_per_part(rows: usize) -> usize {
    let threads = candle_core::utils::barrier_pool().n_workers() + 1;
    rows.div_ceil(threads * 4).max(16)
}
