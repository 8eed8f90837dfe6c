//! Embedding search without a vector extension, the same for both backends: each owner's
//! embeddings are held in memory, normalised, as sign bits and as signed bytes; a search narrows
//! them in three steps, each on fewer entries and more exact than the one before.
//!
//! 1. **Sign bits** (one bit per dimension: 48 bytes for 384 dimensions) of every entry are
//!    compared with the query's, counting the bits that differ (a popcount of the XOR): the
//!    number is an estimate of the angle between them. (The bits are taken about the entries'
//!    mean, see [`Group::centre`].) The [`shortlist`] closest, a sixteenth of a large owner's
//!    entries, go on.
//! 2. **Byte scores** (one signed byte per dimension, scaled per vector) of the shortlist pick
//!    [`candidates`]: a quarter more than what was asked for, or more.
//! 3. Those entries are read back from the database with their stored f32 embeddings, which give
//!    the exact cosine similarities returned.
//!
//! # Why
//!
//! 100,000 entries of 384 dimensions are 154 MB of f32: reading them once per search is bound by
//! memory bandwidth, about 6 ms on the AMD EPYC this was measured on, over the 5 ms a hybrid
//! search may take. As bytes they are 38 MB, still about 1.5 ms of a 2-core machine shared with
//! the text search running at the same time; as sign bits they are 4.8 MB (held in the cache
//! as well, an eighth more memory) and compared in a fraction of that. Step 2 then reads only
//! the shortlist's bytes.
//!
//! What is lost: an entry that is near the query (cosine 0.4 or more above the background of
//! unrelated ones) differs from it in far fewer bits than the unrelated ones, so it is shortlisted
//! (the unit tests check recall against an exhaustive exact search on clustered embeddings); the
//! order among entries that are all about equally unrelated to the query (a question about
//! nothing stored) is not kept, as their differing bits vary more than their similarities do. An
//! owner with fewer entries than the shortlist skips step 1: its search is as exact as before.
//! The byte scores' rounding error is far smaller than the margin the extra candidates of step 2
//! leave, so steps 2 and 3 return the exact order of what step 1 kept.
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

/// How many entries the byte scores pick for exact rescoring when `limit` are asked for: a
/// quarter more, and at least 16 more. Each costs reading its row and stored embedding back, the
/// largest part of a search once the vectors are cached (76 for a search for 60, what a hybrid
/// search for 20 asks for; twice as many were read before). The byte scores' error is about
/// 0.001 of cosine, which moves an entry a few places at most among random vectors, where they
/// are closest together: inside the margin (the unit test checks it for 20 and for 60).
pub(crate) fn candidates(limit: usize) -> usize {
    limit.saturating_add((limit / 4).max(16))
}

/// How many of `rows` entries the sign bits pick for byte scoring when `count` candidates are
/// wanted: a sixteenth of them, at least sixteen times `count` and at least 2,048 (an owner with
/// no more entries than that is byte-scored whole). The bits that differ estimate an entry's
/// angle to the query with a spread of about ±10 of 384 bits; an entry of cosine 0.4 above the
/// unrelated ones differs in about 50 fewer: a sixteenth of the entries reaches far enough into
/// the unrelated ones for a near entry to be kept (the unit tests measure recall@10 of 0.96 to 1
/// with it). The shortlist's rows are scattered, so byte-scoring them is bound by memory latency
/// rather than bandwidth: a sixteenth costs about a quarter of scoring all, which is why it is
/// not larger.
fn shortlist(rows: usize, count: usize) -> usize {
    (rows / 16).max(count.saturating_mul(16)).max(2_048)
}

/// Entries of an owner from which its scoring runs on a thread of its own (Tokio's blocking
/// pool) rather than in the search's task: a millisecond or more of computation, during which the
/// task could not poll anything else. `exoclaw_memory::Memory::search` runs the full-text search
/// beside this one in the same task, and its next statement would wait for the scoring to end:
/// scored apart, a hybrid search over 100,000 entries takes about the longer of the two searches
/// rather than their sum. A smaller owner is scored in a fraction of the thread hop.
const SCORED_APART: usize = 10_000;

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
    let count = candidates(limit);
    let (picked, query) = if vectors.len() < SCORED_APART {
        (vectors.nearest(&query, count), query)
    } else {
        tokio::task::spawn_blocking(move || (vectors.nearest(&query, count), query))
            .await
            .map_err(|e| StoreError::database_from("the search by embedding stopped", e))?
    };
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

/// `u64`s holding the sign bits of a vector of `dim` values.
fn words(dim: usize) -> usize {
    dim.div_ceil(64)
}

/// The sign bits of `v` less `centre` (zero where `centre` is shorter), one per value (set for a
/// positive one), [`words`] of them; the unused bits of the last word are clear, so they never
/// differ.
fn sign_bits(v: impl ExactSizeIterator<Item = f32>, centre: &[f32]) -> Vec<u64> {
    let mut bits = vec![0u64; words(v.len())];
    for (i, x) in v.enumerate() {
        if x > centre.get(i).copied().unwrap_or(0.0) {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

/// Rows a group has before its sign bits are first taken about the rows' mean rather than zero.
const FIRST_CENTRING: usize = 1_024;

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

/// Embeddings of one dimension, normalised: as bytes, one row of [`stride`] bytes each, and as
/// sign bits, one row of [`words`] each.
#[derive(Debug, Clone)]
struct Group {
    dim: usize,
    ids: Vec<i64>,
    scales: Vec<f32>,
    codes: Vec<i8>,
    signs: Vec<u64>,
    /// What the sign bits are taken about: the rows' mean when there were `centred_at` of them
    /// (empty, zero, before). Embedders' vectors share a common direction (unrelated sentences
    /// have cosines of 0.1 to 0.3, not 0), which makes most bits the same for every row; about
    /// the mean, the bits of unrelated rows differ as if they were random. Any centre gives
    /// consistent bits (the query's are taken about the same one): it is recomputed when the rows
    /// have doubled.
    centre: Vec<f32>,
    centred_at: usize,
}

impl Group {
    /// Row `row` as values (its bytes scaled back), less its padding.
    fn values(&self, row: usize) -> impl ExactSizeIterator<Item = f32> + '_ {
        let (stride, scale) = (stride(self.dim), self.scales[row]);
        self.codes[row * stride..row * stride + self.dim].iter().map(move |c| f32::from(*c) * scale)
    }

    /// Takes the sign bits about the rows' mean now.
    fn recentre(&mut self) {
        let mut sum = vec![0.0f64; self.dim];
        for row in 0..self.ids.len() {
            for (sum, x) in sum.iter_mut().zip(self.values(row)) {
                *sum += f64::from(x);
            }
        }
        let rows = self.ids.len().max(1) as f64;
        self.centre = sum.into_iter().map(|s| (s / rows) as f32).collect();
        self.centred_at = self.ids.len();
        let signs: Vec<u64> =
            (0..self.ids.len()).flat_map(|row| sign_bits(self.values(row), &self.centre)).collect();
        self.signs = signs;
    }
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
                    signs: Vec::new(),
                    centre: Vec::new(),
                    centred_at: 0,
                });
                let last = self.groups.len() - 1;
                &mut self.groups[last]
            }
        };
        let (codes, scale) = quantised(&unit, stride(group.dim));
        group.ids.push(id);
        group.scales.push(scale);
        group.codes.extend_from_slice(&codes);
        group.signs.extend_from_slice(&sign_bits(unit.iter().copied(), &group.centre));
        if group.ids.len() >= FIRST_CENTRING.max(2 * group.centred_at) {
            group.recentre();
        }
    }

    /// Drops the rows of `ids`, keeping the others in order.
    fn remove(&mut self, ids: &HashSet<i64>) {
        if ids.is_empty() {
            return;
        }
        for group in &mut self.groups {
            let (stride, words) = (stride(group.dim), words(group.dim));
            let mut kept = 0;
            for row in 0..group.ids.len() {
                if ids.contains(&group.ids[row]) {
                    continue;
                }
                if kept != row {
                    group.ids[kept] = group.ids[row];
                    group.scales[kept] = group.scales[row];
                    group.codes.copy_within(row * stride..(row + 1) * stride, kept * stride);
                    group.signs.copy_within(row * words..(row + 1) * words, kept * words);
                }
                kept += 1;
            }
            group.ids.truncate(kept);
            group.scales.truncate(kept);
            group.codes.truncate(kept * stride);
            group.signs.truncate(kept * words);
        }
        self.groups.retain(|g| !g.ids.is_empty());
    }

    /// The ids of the (about) `count` rows nearest the normalised `query`, best first: by their
    /// byte scores among the [`shortlist`] closest by sign bits (all rows when there are no more
    /// than that), a bounded heap over the scores rather than a sort of them all.
    fn nearest(&self, query: &[f32], count: usize) -> Vec<i64> {
        let rows = self.groups.iter().find(|g| g.dim == query.len()).map_or(0, |g| g.ids.len());
        self.nearest_among(query, count, shortlist(rows, count))
    }

    /// [`Self::nearest`] with a shortlist of `keep` rows.
    fn nearest_among(&self, query: &[f32], count: usize, keep: usize) -> Vec<i64> {
        let Some(group) = self.groups.iter().find(|g| g.dim == query.len()) else { return Vec::new() };
        let kernel = Kernel::detect();
        let rows: Vec<usize> = if group.ids.len() <= keep {
            (0..group.ids.len()).collect()
        } else {
            let mut differing = vec![0u32; group.ids.len()];
            let mut rows_with = vec![0u32; words(group.dim) * 64 + 1];
            kernel.run(Hamming {
                signs: &group.signs,
                words: words(group.dim),
                query: &sign_bits(query.iter().copied(), &group.centre),
                out: &mut differing,
                rows_with: &mut rows_with,
            });
            closest(&differing, &rows_with, keep)
        };
        let stride = stride(group.dim);
        let (codes, _) = quantised(query, stride);
        let mut scores = vec![0.0f32; rows.len()];
        kernel.run(Score {
            codes: &group.codes,
            stride,
            scales: &group.scales,
            query: &codes,
            rows: &rows,
            out: &mut scores,
        });
        let mut best: BinaryHeap<Reverse<(Ordered, usize)>> = BinaryHeap::with_capacity(count + 1);
        for (row, score) in rows.into_iter().zip(scores) {
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

/// The `keep` rows whose `differing` bit counts are smallest, in row order, given how many rows
/// differ by each number of bits (`rows_with`, as [`Hamming`] counts them): the counts find the
/// cut, then one pass takes the rows below it and as many at it as fit (which of those is
/// arbitrary: they are as close).
fn closest(differing: &[u32], rows_with: &[u32], keep: usize) -> Vec<usize> {
    let (mut cut, mut below) = (0, 0);
    while cut + 1 < rows_with.len() && below + (rows_with[cut] as usize) < keep {
        below += rows_with[cut] as usize;
        cut += 1;
    }
    let cut = cut as u32;
    let mut at_cut = keep.saturating_sub(below);
    let mut rows = Vec::with_capacity(keep);
    for (row, d) in differing.iter().enumerate() {
        // Rarely true (a sixteenth of the rows): one predictable branch per row.
        if *d <= cut && (*d < cut || at_cut > 0) {
            at_cut -= usize::from(*d == cut);
            rows.push(row);
        }
    }
    rows
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

/// Counting, for every row of sign bits, the bits that differ from the query's (`out`), and how
/// many rows differ by each number of bits (`rows_with`, one more than the bits of a row): a value
/// rather than a closure so that it runs inside [`pulp::x86::V3::vectorize`], where `count_ones`
/// is one `popcnt` instruction (the baseline x86-64 the workspace builds for has none).
struct Hamming<'a> {
    signs: &'a [u64],
    words: usize,
    query: &'a [u64],
    out: &'a mut [u32],
    rows_with: &'a mut [u32],
}

impl pulp::NullaryFnOnce for Hamming<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Hamming { signs, words, query, out, rows_with } = self;
        for (row, out) in signs.chunks_exact(words).zip(out) {
            *out = row.iter().zip(query).map(|(a, b)| (a ^ b).count_ones()).sum();
            if let Some(rows) = rows_with.get_mut(*out as usize) {
                *rows += 1;
            }
        }
    }
}

/// Scoring the `rows` of a group's bytes against the query: a value rather than a closure so that
/// it runs inside [`pulp::x86::V3::vectorize`] with [`dot_i8`] inlined, compiled for AVX2.
struct Score<'a> {
    codes: &'a [i8],
    stride: usize,
    scales: &'a [f32],
    query: &'a [i8],
    rows: &'a [usize],
    out: &'a mut [f32],
}

impl pulp::NullaryFnOnce for Score<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Score { codes, stride, scales, query, rows, out } = self;
        for (row, out) in rows.iter().zip(out) {
            // The query's own scale is the same for every row: left out, the order is the same.
            *out = dot_i8(&codes[row * stride..(row + 1) * stride], query) as f32 * scales[*row];
        }
    }
}

/// How the sign bits and byte scores are computed on this machine: with AVX2 and `popcnt` where
/// the CPU has them (detected at run time, as the workspace forbids `unsafe` and builds for the
/// baseline x86-64), else plainly.
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

    fn owner_of(vectors: &[(i64, Vec<f32>)]) -> OwnerVectors {
        let mut owner = OwnerVectors { state: VectorState::default(), groups: Vec::new() };
        for (id, v) in vectors {
            owner.push(*id, v);
        }
        owner
    }

    /// `v` plus `weight` times a random direction, normalised.
    fn near(rng: &mut u64, v: &[f32], weight: f32) -> Vec<f32> {
        let noise = random_unit(rng, v.len());
        normalised(&v.iter().zip(noise).map(|(a, b)| a + weight * b).collect::<Vec<f32>>()).unwrap()
    }

    #[test]
    fn byte_scores_keep_the_exact_nearest_among_the_candidates() {
        // No more entries than a shortlist: every one is byte-scored, whatever the query.
        let mut rng = 0x5eed_u64;
        let vectors: Vec<(i64, Vec<f32>)> = (1..=2_000).map(|id| (id, random_unit(&mut rng, 384))).collect();
        assert!(vectors.len() <= shortlist(vectors.len(), candidates(20)));
        let owner = owner_of(&vectors);
        for _ in 0..20 {
            // A query near one of them, and one near none.
            let near: Vec<f32> = vectors[(rng % 2_000) as usize]
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

    /// Recall of the fast path on clustered embeddings, as a sentence embedder gives: every entry
    /// shares a `common` direction, belongs to one of 500 topics (weight `topic`) and has its own
    /// part. Each question is a stored entry reworded (cosine about 0.8 with it), so its known
    /// nearest are that entry, then its topic's. Returns recall@10 and recall@60 against an
    /// exhaustive exact search, having checked that the entry asked about is always found.
    fn recall(common: f32, topic: f32) -> (f64, f64) {
        const ENTRIES: usize = 20_000;
        const DIM: usize = 384;
        const QUESTIONS: usize = 30;
        let mut rng = 0xc1a5_u64;
        let shared = random_unit(&mut rng, DIM);
        let topics: Vec<Vec<f32>> = (0..500).map(|_| random_unit(&mut rng, DIM)).collect();
        let vectors: Vec<(i64, Vec<f32>)> = (0..ENTRIES)
            .map(|i| {
                let own = random_unit(&mut rng, DIM);
                let of_topic = &topics[i % topics.len()];
                let v: Vec<f32> =
                    (0..DIM).map(|d| common * shared[d] + topic * of_topic[d] + own[d]).collect();
                (i as i64 + 1, normalised(&v).unwrap())
            })
            .collect();
        let owner = owner_of(&vectors);
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
        };
        let mut found = [0, 0];
        // The share of the entries a search shortlists of 100,000.
        let keep = |count| shortlist(100_000, count) * ENTRIES / 100_000;
        for _ in 0..QUESTIONS {
            let (asked_of, stored) = &vectors[(rng % ENTRIES as u64) as usize];
            let query = near(&mut rng, stored, 0.7);
            let mut exact: Vec<(f64, i64)> = vectors.iter().map(|(id, v)| (dot(&query, v), *id)).collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (found, limit) in found.iter_mut().zip([10, 60]) {
                // What `search` does: the candidates by byte scores, rescored exactly.
                let mut fast: Vec<(f64, i64)> = owner
                    .nearest_among(&query, candidates(limit), keep(candidates(limit)))
                    .into_iter()
                    .map(|id| (dot(&query, &vectors[id as usize - 1].1), id))
                    .collect();
                fast.sort_by(|a, b| b.0.total_cmp(&a.0));
                fast.truncate(limit);
                let fast: HashSet<i64> = fast.into_iter().map(|(_, id)| id).collect();
                assert!(fast.contains(asked_of), "the entry asked about was not found");
                *found += exact[..limit].iter().filter(|(_, id)| fast.contains(id)).count();
            }
        }
        (found[0] as f64 / (10 * QUESTIONS) as f64, found[1] as f64 / (60 * QUESTIONS) as f64)
    }

    #[test]
    fn the_fast_path_finds_the_exact_nearest_of_clustered_embeddings() {
        // Unrelated entries at cosine 0.09, a topic's at 0.44. Measured: recall@10 0.997,
        // recall@60 0.92.
        let (at_10, at_60) = recall(0.4, 0.8);
        assert!(at_10 >= 0.95, "recall@10 {at_10:.3}");
        // The 60 nearest are a question's topic (40 entries) and then unrelated ones, in an
        // order that is noise.
        assert!(at_60 >= 0.9, "recall@60 {at_60:.3}");
    }

    #[test]
    fn the_fast_path_finds_the_exact_nearest_of_embeddings_with_a_strong_common_direction() {
        // Unrelated entries at cosine 0.21, a topic's at 0.42: the bits are taken about the mean.
        // Measured: recall@10 0.963.
        let (at_10, _) = recall(0.6, 0.6);
        assert!(at_10 >= 0.95, "recall@10 {at_10:.3}");
    }

    #[test]
    fn closest_keeps_the_fewest_differing_bits_and_as_many_ties_as_fit() {
        let differing = [5, 1, 9, 1, 3, 3, 3, 0];
        let mut rows_with = [0; 10];
        for d in differing {
            rows_with[d as usize] += 1;
        }
        assert_eq!(closest(&differing, &rows_with, 3), vec![1, 3, 7]);
        // Two of the three rows at 3 fit.
        assert_eq!(closest(&differing, &rows_with, 5), vec![1, 3, 4, 5, 7]);
        assert_eq!(closest(&differing, &rows_with, 8), (0..8).collect::<Vec<_>>());
        assert_eq!(closest(&differing, &rows_with, 20), (0..8).collect::<Vec<_>>());
        assert_eq!(closest(&differing, &rows_with, 0), Vec::<usize>::new());
    }

    #[test]
    fn the_vectorised_and_plain_scores_agree() {
        let mut rng = 7_u64;
        let codes: Vec<i8> = (0..64 * 3).map(|i| ((i * 37 + 11) % 255) as i8).collect();
        let query = quantised(&random_unit(&mut rng, 64), 64).0;
        let scales = [1.0, 0.5, 2.0];
        let rows = [2, 0, 1];
        let score = |kernel: Kernel| {
            let mut out = [0.0; 3];
            kernel.run(Score {
                codes: &codes,
                stride: 64,
                scales: &scales,
                query: &query,
                rows: &rows,
                out: &mut out,
            });
            out
        };
        let plain = score(Kernel::Plain);
        assert_eq!(score(Kernel::detect()), plain);
        let by_hand: i32 = codes[..64].iter().zip(&query).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
        assert_eq!(plain[1], by_hand as f32);
    }

    #[test]
    fn the_vectorised_and_plain_bit_counts_agree() {
        let mut rng = 11_u64;
        let rows: Vec<f32> = (0..4).flat_map(|_| random_unit(&mut rng, 150)).collect();
        let signs: Vec<u64> = rows.chunks(150).flat_map(|row| sign_bits(row.iter().copied(), &[])).collect();
        let query = random_unit(&mut rng, 150);
        let count = |kernel: Kernel| {
            let mut out = [0; 4];
            let mut rows_with = vec![0; words(150) * 64 + 1];
            kernel.run(Hamming {
                signs: &signs,
                words: words(150),
                query: &sign_bits(query.iter().copied(), &[]),
                out: &mut out,
                rows_with: &mut rows_with,
            });
            (out, rows_with)
        };
        let (plain, rows_with) = count(Kernel::Plain);
        assert_eq!(count(Kernel::detect()), (plain, rows_with.clone()));
        for (row, differing) in rows.chunks(150).zip(plain) {
            let by_hand = row.iter().zip(&query).filter(|(a, b)| (**a > 0.0) != (**b > 0.0)).count();
            assert_eq!(differing as usize, by_hand);
        }
        for (bits, rows) in rows_with.iter().enumerate() {
            assert_eq!(*rows as usize, plain.iter().filter(|d| **d as usize == bits).count(), "{bits} bits");
        }
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
            assert_eq!(group.signs[row * words(40)..(row + 1) * words(40)], before.signs[old..old + 1]);
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
