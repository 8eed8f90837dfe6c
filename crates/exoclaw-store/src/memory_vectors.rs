//! Embedding search without a vector extension, the same for both backends: each owner's
//! embeddings are held in memory, normalised and quantised, scored in process, and the best
//! candidates rescored exactly from the database.
//!
//! # Why quantised
//!
//! 100,000 entries of 384 dimensions are 154 MB of f32: reading them once per search is bound by
//! memory bandwidth, about 6 ms on the AMD EPYC this was measured on, over the 5 ms a hybrid
//! search may take. As one signed byte per dimension (scaled per vector) they are 38 MB and
//! score in about 1.5 ms with AVX2, using a quarter of the memory. The byte scores pick
//! [`candidates`] (twice what was asked for, or more); those entries are read back with their
//! stored f32 embeddings, which give the exact cosine similarities returned. The rounding error of
//! a byte score is far smaller than the margin the extra candidates leave, so the results are
//! those of an exact search (the unit tests compare the two).
//!
//! # Keeping the cache current
//!
//! The database keeps, per owner, a [`VectorState`] (`memory_vector_state`, maintained by
//! triggers): how many entries have an embedding, the largest id ever given to one, and how many
//! were ever removed or changed. Ids are never reused, so before each search one primary-key
//! lookup says whether the cache is current; whether only new rows were added (load those); or
//! whether something was removed or changed (load everything again). This store's own writes
//! update the cache directly when they can tell it was current before them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use exoclaw_core::{MemoryEntry, ScoredEntry, StoreError};

/// What the database says about an owner's embedded entries (`memory_vector_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VectorState {
    /// Entries with an embedding.
    pub(crate) embedded: i64,
    /// The largest id ever given to an entry with an embedding.
    pub(crate) max_id: i64,
    /// Entries with an embedding ever deleted or changed in place.
    pub(crate) removed: i64,
}

/// What a backend gives the search: the state, the embeddings and the candidates' rows.
#[async_trait]
pub(crate) trait VectorRows: Sync {
    /// The owner's [`VectorState`] now (all zero when it has no embeddings).
    async fn vector_state(&self, owner: &str) -> Result<VectorState, StoreError>;

    /// The owner's state and its embeddings with ids above `after`, by id, read in one snapshot.
    async fn vector_rows(
        &self,
        owner: &str,
        after: i64,
    ) -> Result<(VectorState, Vec<(i64, Vec<u8>)>), StoreError>;

    /// The owner's entries among `ids` that still have an embedding, with it (in any order).
    async fn embedded_entries(
        &self,
        owner: &str,
        ids: &[i64],
    ) -> Result<Vec<(MemoryEntry, Vec<u8>)>, StoreError>;
}

/// The owners' embeddings, shared by the clones of a store.
#[derive(Default)]
pub(crate) struct VectorCache {
    owners: Mutex<HashMap<String, Arc<OwnerVectors>>>,
}

impl std::fmt::Debug for VectorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `try_lock`: formatting a store while its cache is being changed must not deadlock.
        match self.owners.try_lock() {
            Ok(owners) => {
                let vectors: usize = owners.values().map(|v| v.len()).sum();
                f.debug_struct("VectorCache")
                    .field("owners", &owners.len())
                    .field("vectors", &vectors)
                    .finish()
            }
            Err(_) => f.debug_struct("VectorCache").finish_non_exhaustive(),
        }
    }
}

/// What a write did to one owner's embedded entries, to bring its cached vectors along.
#[derive(Debug, Default)]
pub(crate) struct VectorChanges {
    /// The owner's state read in the write's transaction, after its changes.
    pub(crate) after: VectorState,
    /// Ids of removed entries that had an embedding.
    pub(crate) removed: Vec<i64>,
    /// Added entries with an embedding.
    pub(crate) added: Vec<(i64, Vec<f32>)>,
}

impl VectorCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OwnerVectors>>> {
        // The map is only ever replaced or changed whole under the lock, so it is consistent
        // even if a holder panicked.
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings a cached owner along with a committed write, or forgets it when the cache was not
    /// current just before the write (another process wrote too): the next search reloads it.
    pub(crate) fn written(&self, owner: &str, changes: VectorChanges) {
        let mut owners = self.lock();
        let Some(cached) = owners.get_mut(owner) else { return };
        let VectorChanges { after, removed, added } = changes;
        let (removed_count, added_count) = (removed.len() as i64, added.len() as i64);
        let before = cached.state;
        let current_before = before.removed + removed_count == after.removed
            && before.embedded - removed_count + added_count == after.embedded
            && added.iter().all(|(id, _)| *id > before.max_id)
            && added.iter().map(|(id, _)| *id).max().unwrap_or(before.max_id) == after.max_id;
        if !current_before {
            owners.remove(owner);
            return;
        }
        let vectors = Arc::make_mut(cached);
        vectors.remove(&removed.into_iter().collect());
        for (id, embedding) in added {
            vectors.push(id, &embedding);
        }
        vectors.state = after;
    }

    /// The owner's vectors, current with the database (loading what is missing).
    async fn current(&self, rows: &impl VectorRows, owner: &str) -> Result<Arc<OwnerVectors>, StoreError> {
        let state = rows.vector_state(owner).await?;
        let cached = self.lock().get(owner).cloned();
        match cached {
            Some(vectors) if vectors.state == state => return Ok(vectors),
            Some(vectors)
                if vectors.state.removed == state.removed && vectors.state.max_id < state.max_id =>
            {
                let before = vectors.state;
                // Not held while loading: a write would have to copy the vectors to change them.
                drop(vectors);
                let (snapshot, new_rows) = rows.vector_rows(owner, before.max_id).await?;
                if let Some(extended) = self.extend(owner, before, snapshot, new_rows) {
                    return Ok(extended);
                }
            }
            _ => {}
        }
        let (snapshot, all_rows) = rows.vector_rows(owner, 0).await?;
        let mut vectors = OwnerVectors { state: snapshot, groups: Vec::new() };
        for (id, blob) in all_rows {
            if let Some(embedding) = decode_embedding(&blob) {
                vectors.push(id, &embedding);
            }
        }
        let vectors = Arc::new(vectors);
        self.lock().insert(owner.to_owned(), Arc::clone(&vectors));
        Ok(vectors)
    }

    /// Appends rows loaded after `before.max_id` when they make the cache current with `snapshot`;
    /// `None` when they do not (something was also removed: everything must be loaded).
    fn extend(
        &self,
        owner: &str,
        before: VectorState,
        snapshot: VectorState,
        rows: Vec<(i64, Vec<u8>)>,
    ) -> Option<Arc<OwnerVectors>> {
        let mut owners = self.lock();
        let cached = owners.get_mut(owner)?;
        if cached.state == snapshot {
            // Another search got there first.
            return Some(Arc::clone(cached));
        }
        let adds_up = cached.state == before
            && snapshot.removed == before.removed
            && before.embedded + rows.len() as i64 == snapshot.embedded;
        if !adds_up {
            return None;
        }
        let vectors = Arc::make_mut(cached);
        for (id, blob) in rows {
            if let Some(embedding) = decode_embedding(&blob) {
                vectors.push(id, &embedding);
            }
        }
        vectors.state = snapshot;
        Some(Arc::clone(cached))
    }
}

/// How many entries the byte scores pick for exact rescoring when `limit` are asked for: twice
/// as many, and at least 32 more. Each costs reading its row and stored embedding back, and a
/// search for 60 (what a hybrid search for 20 asks for) read 240 with four times as many; the byte
/// scores' rounding moves an entry a few places at most, far inside the margin (the unit test
/// checks it for 20 and for 60).
pub(crate) fn candidates(limit: usize) -> usize {
    limit.saturating_mul(2).max(limit.saturating_add(32))
}

/// The owner's entries nearest `embedding`, best first, at most `limit`.
pub(crate) async fn search(
    cache: &VectorCache,
    rows: &impl VectorRows,
    owner: &str,
    embedding: &[f32],
    limit: usize,
) -> Result<Vec<ScoredEntry>, StoreError> {
    let Some(query) = normalised(embedding) else { return Ok(Vec::new()) };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let vectors = cache.current(rows, owner).await?;
    let picked = vectors.nearest(&query, candidates(limit));
    drop(vectors);
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let mut scored: Vec<ScoredEntry> = rows
        .embedded_entries(owner, &picked)
        .await?
        .into_iter()
        .filter_map(|(entry, blob)| {
            let stored = decode_embedding(&blob)?;
            let score = cosine(&query, &stored)?;
            Some(ScoredEntry { entry, score })
        })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.entry.id.cmp(&a.entry.id)));
    scored.truncate(limit);
    Ok(scored)
}

/// An embedding as stored: its values as little-endian f32s.
pub(crate) fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// A stored embedding; `None` for an empty or malformed one (not a whole number of f32s).
pub(crate) fn decode_embedding(blob: &[u8]) -> Option<Vec<f32>> {
    let (values, rest) = blob.as_chunks::<4>();
    (rest.is_empty() && !values.is_empty()).then(|| values.iter().map(|b| f32::from_le_bytes(*b)).collect())
}

/// `v` scaled to length 1; `None` for a zero, empty or non-finite vector, which is near nothing.
fn normalised(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// The cosine similarity of a normalised `query` and `stored`; `None` when `stored` has another
/// dimension or no direction.
fn cosine(query: &[f32], stored: &[f32]) -> Option<f32> {
    if stored.len() != query.len() {
        return None;
    }
    let stored = normalised(stored)?;
    let dot: f64 = query.iter().zip(&stored).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    Some(dot as f32)
}

/// Bytes a quantised row takes: its dimension rounded up to whole lanes of [`dot_i8`].
fn stride(dim: usize) -> usize {
    dim.next_multiple_of(LANES)
}

/// `v` (normalised) as signed bytes and the scale that turns them back into values.
fn quantised(v: &[f32], stride: usize) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |max, x| max.max(x.abs()));
    let scale = max / 127.0;
    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let mut codes: Vec<i8> = v.iter().map(|x| (x * inverse).round() as i8).collect();
    codes.resize(stride, 0);
    (codes, scale)
}

/// One owner's embeddings, by dimension (a changed embedder leaves entries of two), as of
/// `state`.
#[derive(Debug, Clone)]
struct OwnerVectors {
    state: VectorState,
    groups: Vec<Group>,
}

/// Embeddings of one dimension: normalised, quantised, one row of [`stride`] bytes each.
#[derive(Debug, Clone)]
struct Group {
    dim: usize,
    ids: Vec<i64>,
    scales: Vec<f32>,
    codes: Vec<i8>,
}

impl OwnerVectors {
    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.ids.len()).sum()
    }

    /// Adds entry `id`'s embedding; one with no direction is left out (it is near nothing).
    fn push(&mut self, id: i64, embedding: &[f32]) {
        let Some(unit) = normalised(embedding) else { return };
        let group = match self.groups.iter_mut().position(|g| g.dim == unit.len()) {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push(Group {
                    dim: unit.len(),
                    ids: Vec::new(),
                    scales: Vec::new(),
                    codes: Vec::new(),
                });
                let last = self.groups.len() - 1;
                &mut self.groups[last]
            }
        };
        let (codes, scale) = quantised(&unit, stride(group.dim));
        group.ids.push(id);
        group.scales.push(scale);
        group.codes.extend_from_slice(&codes);
    }

    /// Drops the rows of `ids`, keeping the others in order.
    fn remove(&mut self, ids: &HashSet<i64>) {
        if ids.is_empty() {
            return;
        }
        for group in &mut self.groups {
            let stride = stride(group.dim);
            let mut kept = 0;
            for row in 0..group.ids.len() {
                if ids.contains(&group.ids[row]) {
                    continue;
                }
                if kept != row {
                    group.ids[kept] = group.ids[row];
                    group.scales[kept] = group.scales[row];
                    group.codes.copy_within(row * stride..(row + 1) * stride, kept * stride);
                }
                kept += 1;
            }
            group.ids.truncate(kept);
            group.scales.truncate(kept);
            group.codes.truncate(kept * stride);
        }
        self.groups.retain(|g| !g.ids.is_empty());
    }

    /// The ids of the (about) `count` rows nearest the normalised `query`, by their byte scores,
    /// best first: a bounded heap over the scores, not a sort of them all.
    fn nearest(&self, query: &[f32], count: usize) -> Vec<i64> {
        let Some(group) = self.groups.iter().find(|g| g.dim == query.len()) else { return Vec::new() };
        let stride = stride(group.dim);
        let (codes, _) = quantised(query, stride);
        let mut scores = vec![0.0f32; group.ids.len()];
        Kernel::detect().run(Score {
            rows: &group.codes,
            stride,
            scales: &group.scales,
            query: &codes,
            out: &mut scores,
        });
        let mut best: BinaryHeap<Reverse<(Ordered, usize)>> = BinaryHeap::with_capacity(count + 1);
        for (row, score) in scores.into_iter().enumerate() {
            if best.len() < count {
                best.push(Reverse((Ordered(score), row)));
            } else if best.peek().is_some_and(|Reverse((worst, _))| score > worst.0) {
                best.pop();
                best.push(Reverse((Ordered(score), row)));
            }
        }
        best.into_sorted_vec().into_iter().map(|Reverse((_, row))| group.ids[row]).collect()
    }
}

/// An f32 ordered by [`f32::total_cmp`], for the heap.
#[derive(Debug, Clone, Copy)]
struct Ordered(f32);

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Bytes multiplied per step of [`dot_i8`]: one AVX2 register's worth.
const LANES: usize = 32;

/// The dot product of two rows of bytes (whole [`LANES`]); `i32` holds it for any dimension up to
/// 130,000 (127² per lane).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // Independent sums per lane, so the loop compiles to vector multiply-adds.
    let mut sums = [0i32; LANES];
    for (a, b) in a.as_chunks::<LANES>().0.iter().zip(b.as_chunks::<LANES>().0) {
        for ((sum, a), b) in sums.iter_mut().zip(a).zip(b) {
            *sum += i32::from(*a) * i32::from(*b);
        }
    }
    sums.iter().sum()
}

/// Scoring every row of a group against the query: a value rather than a closure so that it runs
/// inside [`pulp::x86::V3::vectorize`] with [`dot_i8`] inlined, compiled for AVX2.
struct Score<'a> {
    rows: &'a [i8],
    stride: usize,
    scales: &'a [f32],
    query: &'a [i8],
    out: &'a mut [f32],
}

impl pulp::NullaryFnOnce for Score<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Score { rows, stride, scales, query, out } = self;
        for ((row, scale), out) in rows.chunks_exact(stride).zip(scales).zip(out) {
            // The query's own scale is the same for every row: left out, the order is the same.
            *out = dot_i8(row, query) as f32 * scale;
        }
    }
}

/// How the byte scores are computed on this machine: with AVX2 where the CPU has it (detected at
/// run time, as the workspace forbids `unsafe` and builds for the baseline x86-64), else plainly.
#[derive(Clone, Copy)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Plain,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return Self::Avx2(simd);
        }
        Self::Plain
    }

    fn run<W: pulp::NullaryFnOnce>(self, work: W) -> W::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx2(simd) => simd.vectorize(work),
            Self::Plain => work.call(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(rng: &mut u64, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                (*rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        normalised(&v).unwrap()
    }

    fn exact_top(vectors: &[(i64, Vec<f32>)], query: &[f32], k: usize) -> Vec<i64> {
        let mut scored: Vec<(f32, i64)> =
            vectors.iter().map(|(id, v)| (cosine(query, v).unwrap(), *id)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(k).map(|(_, id)| id).collect()
    }

    #[test]
    fn byte_scores_keep_the_exact_nearest_among_the_candidates() {
        let mut rng = 0x5eed_u64;
        let vectors: Vec<(i64, Vec<f32>)> = (1..=5_000).map(|id| (id, random_unit(&mut rng, 384))).collect();
        let mut owner = OwnerVectors { state: VectorState::default(), groups: Vec::new() };
        for (id, v) in &vectors {
            owner.push(*id, v);
        }
        for _ in 0..20 {
            // A query near one of them, and one near none.
            let near: Vec<f32> = vectors[(rng % 5_000) as usize]
                .1
                .iter()
                .zip(random_unit(&mut rng, 384))
                .map(|(a, b)| a + 0.5 * b)
                .collect();
            for query in [normalised(&near).unwrap(), random_unit(&mut rng, 384)] {
                for limit in [20, 60] {
                    let picked: HashSet<i64> = owner.nearest(&query, candidates(limit)).into_iter().collect();
                    for id in exact_top(&vectors, &query, limit) {
                        assert!(picked.contains(&id), "exact top-{limit} entry {id} was not a candidate");
                    }
                }
            }
        }
    }

    #[test]
    fn the_vectorised_and_plain_scores_agree() {
        let mut rng = 7_u64;
        let rows: Vec<i8> = (0..64 * 3).map(|i| ((i * 37 + 11) % 255) as i8).collect();
        let query = quantised(&random_unit(&mut rng, 64), 64).0;
        let scales = [1.0, 0.5, 2.0];
        let mut fast = [0.0; 3];
        let mut plain = [0.0; 3];
        Kernel::detect().run(Score {
            rows: &rows,
            stride: 64,
            scales: &scales,
            query: &query,
            out: &mut fast,
        });
        Kernel::Plain.run(Score { rows: &rows, stride: 64, scales: &scales, query: &query, out: &mut plain });
        assert_eq!(fast, plain);
        let by_hand: i32 = rows[..64].iter().zip(&query).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
        assert_eq!(plain[0], by_hand as f32);
    }

    #[test]
    fn removing_keeps_the_other_rows_and_their_order() {
        let mut rng = 3_u64;
        let mut owner = OwnerVectors { state: VectorState::default(), groups: Vec::new() };
        for id in 1..=6 {
            owner.push(id, &random_unit(&mut rng, 40));
        }
        owner.push(7, &random_unit(&mut rng, 8));
        let before = owner.groups[0].clone();
        owner.remove(&[2, 5, 7].into_iter().collect());
        assert_eq!(owner.groups.len(), 1, "the emptied group goes");
        let group = &owner.groups[0];
        assert_eq!(group.ids, vec![1, 3, 4, 6]);
        let s = stride(40);
        for (row, old) in [(0, 0), (1, 2), (2, 3), (3, 5)] {
            assert_eq!(group.codes[row * s..(row + 1) * s], before.codes[old * s..(old + 1) * s]);
            assert_eq!(group.scales[row], before.scales[old]);
        }
    }

    #[test]
    fn embeddings_round_trip_and_malformed_ones_are_none() {
        let v = vec![0.25, -1.5, f32::MIN_POSITIVE];
        assert_eq!(decode_embedding(&encode_embedding(&v)), Some(v));
        assert_eq!(decode_embedding(&[1, 2, 3]), None);
        assert_eq!(decode_embedding(&[]), None);
        assert_eq!(normalised(&[0.0, 0.0]), None);
        assert_eq!(normalised(&[f32::NAN, 1.0]), None);
    }
}
