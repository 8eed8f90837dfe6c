//! Attention of new positions against the KV cache, each row on its own as a generated token's.
//!
//! With a single query row per head the products are tiny (a few hundred keys of 64 values), and
//! handing them to a general matrix kernel — on a strided view of the cache, on one thread — cost
//! about an eighth of a generated token's time at a few hundred tokens of context. Here each head
//! is plain loops over the cache's memory, compiled with AVX2 where there is AVX2 so that they
//! vectorise, and the heads are spread over the thread pool.
//!
//! The rows of a prompt after its last whole chunk go through the same loops, each row over the
//! positions up to its own: a position's attention is then the same number whether it came in a
//! prompt or was generated, which is what lets the prompt cache reuse an answer (see
//! [`crate::transformer`]).

use super::{Kernel, parallel_parts};
use std::ops::Range;

/// The KV cache of one layer: `(kv_heads, capacity, head_dim)` keys and values.
pub(crate) struct Cache<'a> {
    pub(crate) keys: &'a [f32],
    pub(crate) values: &'a [f32],
    pub(crate) capacity: usize,
    pub(crate) head_dim: usize,
}

/// `softmax(q · Kᵀ / √head_dim) · V` for every query head of every row of `q`
/// (`rows × n_head × head_dim`, the rows at positions `first..`, their keys and values already in
/// the cache), each row over the cached positions up to its own (the last `window` of them, for a
/// sliding-window layer); query heads `g·group .. (g+1)·group` of the `n_head` share KV head
/// `g`. Returns `rows × n_head × head_dim` values.
pub(crate) fn rows(
    q: &[f32],
    cache: &Cache<'_>,
    first: usize,
    window: Option<usize>,
    n_head: usize,
    group: usize,
) -> Vec<f32> {
    let kernel = Kernel::detect();
    let dim = cache.head_dim;
    let mut out = vec![0.0f32; q.len()];
    parallel_parts(&mut out, dim, |part, out| {
        let (row, head) = (part / n_head, part % n_head);
        let end = first + row + 1;
        let start = window.map_or(0, |w| end.saturating_sub(w));
        let query = &q[part * dim..(part + 1) * dim];
        kernel.run(Head { query, cache, kv_head: head / group, positions: start..end, out });
    });
    out
}

/// One query head's attention (a value rather than a closure, see [`super::Rows`]).
struct Head<'a> {
    query: &'a [f32],
    cache: &'a Cache<'a>,
    kv_head: usize,
    positions: Range<usize>,
    out: &'a mut [f32],
}

impl pulp::NullaryFnOnce for Head<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Head { query, cache, kv_head, positions, out } = self;
        let dim = cache.head_dim;
        let base = kv_head * cache.capacity * dim;
        let len = positions.len();
        let rows = base + positions.start * dim..base + positions.end * dim;
        let keys = &cache.keys[rows.clone()];
        let values = &cache.values[rows];
        let scale = 1.0 / (dim as f32).sqrt();
        // Plain loops, no closures: a closure may be compiled out of line, without AVX2.
        let mut scores = vec![0.0f32; len];
        let mut max = f32::NEG_INFINITY;
        for (score, key) in scores.iter_mut().zip(keys.chunks_exact(dim)) {
            *score = dot(query, key) * scale;
            max = max.max(*score);
        }
        let mut total = 0.0;
        for score in &mut scores {
            *score = (*score - max).exp();
            total += *score;
        }
        for (value, weight) in values.chunks_exact(dim).zip(&scores) {
            let weight = weight / total;
            for (o, v) in out.iter_mut().zip(value) {
                *o += weight * v;
            }
        }
    }
}

/// A dot product with eight running sums, so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut tail = 0.0;
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        tail += x * y;
    }
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for ((sum, x), y) in sums.iter_mut().zip(ca).zip(cb) {
            *sum += x * y;
        }
    }
    let mut total = tail;
    for sum in sums {
        total += sum;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows at positions 25..29, over the whole cache and through a sliding window of 11.
    #[test]
    fn matches_the_textbook_formula() {
        let (n_head, n_kv_head, head_dim, capacity, first, rows_n) = (6, 2, 64, 40, 25, 4);
        let random = |n, seed| super::super::tests::random(n, seed);
        let (q, keys, values) = (
            random(rows_n * n_head * head_dim, 1),
            random(n_kv_head * capacity * head_dim, 2),
            random(n_kv_head * capacity * head_dim, 3),
        );
        let cache = Cache { keys: &keys, values: &values, capacity, head_dim };
        for window in [None, Some(11)] {
            let out = rows(&q, &cache, first, window, n_head, n_head / n_kv_head);
            for (row, head) in (0..rows_n).flat_map(|r| (0..n_head).map(move |h| (r, h))) {
                let end = first + row + 1;
                let positions = window.map_or(0, |w| end - w)..end;
                let query = &q[(row * n_head + head) * head_dim..][..head_dim];
                let base = head / (n_head / n_kv_head) * capacity * head_dim;
                let at = |t: &[f32], j: usize, i: usize| f64::from(t[base + j * head_dim + i]);
                let scores: Vec<f64> = positions
                    .clone()
                    .map(|j| {
                        let dot: f64 = (0..head_dim).map(|i| f64::from(query[i]) * at(&keys, j, i)).sum();
                        (dot / (head_dim as f64).sqrt()).exp()
                    })
                    .collect();
                let total: f64 = scores.iter().sum();
                for i in 0..head_dim {
                    let expected: f64 = scores
                        .iter()
                        .zip(positions.clone())
                        .map(|(s, j)| s / total * at(&values, j, i))
                        .sum();
                    let actual = f64::from(out[(row * n_head + head) * head_dim + i]);
                    assert!(
                        (actual - expected).abs() < 1e-5,
                        "{window:?}, row {row}, head {head}, value {i}: {actual} vs {expected}"
                    );
                }
            }
        }
    }

    /// What the prompt cache relies on: a row's values are the same to the bit whether it is
    /// computed among a prompt's rows or alone, as a generated token.
    #[test]
    fn a_row_among_others_is_the_row_alone() {
        let (n_head, n_kv_head, head_dim, capacity, first, rows_n) = (4, 2, 64, 48, 7, 33);
        let random = |n, seed| super::super::tests::random(n, seed);
        let (q, keys, values) = (
            random(rows_n * n_head * head_dim, 4),
            random(n_kv_head * capacity * head_dim, 5),
            random(n_kv_head * capacity * head_dim, 6),
        );
        let cache = Cache { keys: &keys, values: &values, capacity, head_dim };
        let width = n_head * head_dim;
        for window in [None, Some(16)] {
            let together = rows(&q, &cache, first, window, n_head, n_head / n_kv_head);
            for row in 0..rows_n {
                let alone =
                    rows(&q[row * width..][..width], &cache, first + row, window, n_head, n_head / n_kv_head);
                assert_eq!(alone, together[row * width..][..width], "{window:?}, row {row}");
            }
        }
    }
}
