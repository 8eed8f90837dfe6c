//! Hybrid ranking: full-text and embedding results fused by reciprocal rank, weighted towards
//! recent entries. Pure, so every store backend gets the same order from the same candidates.

use chrono::{DateTime, Utc};
use exoclaw_core::{MemoryEntry, ScoredEntry};
use std::collections::HashMap;

/// The rank constant of reciprocal rank fusion (Cormack et al. 2009): a result at rank `r`
/// (0 first) scores `1 / (K + r + 1)`, so the first few ranks of each list weigh about the same
/// and one list's outlier cannot dominate.
pub const FUSION_K: f32 = 60.0;

/// How search results are weighed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranking {
    /// Weight of the full-text list.
    pub text_weight: f32,
    /// Weight of the embedding list.
    pub embedding_weight: f32,
    /// How much a brand-new entry is boosted over an old one: its score is multiplied by
    /// `1 + recency_boost · 2^(−age / half_life)`.
    pub recency_boost: f32,
    /// The age at which the recency boost has halved.
    pub half_life: chrono::Duration,
    /// The least cosine similarity an embedding result needs to count ([`DEFAULT_MIN_SIMILARITY`]):
    /// the nearest entries are not always related ones, and an unrelated excerpt costs the
    /// context tokens and can mislead the model.
    pub min_similarity: f32,
}

/// The least cosine similarity of an embedding result by default. Measured with
/// all-MiniLM-L6-v2 (sentence-transformers): related question and statement pairs score 0.28 to
/// 0.77 ("where do I live" / "I moved to Lyon." 0.33, "How do I install it?" / "Run cargo install
/// exoclaw to get it." 0.28), unrelated ones mostly below 0.2. OpenAI's text-embedding-3 models
/// score on a like scale; a model whose unrelated texts score higher needs a higher bar
/// (`[memory] min_similarity`).
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.25;

impl Default for Ranking {
    fn default() -> Self {
        Self {
            text_weight: 1.0,
            embedding_weight: 1.0,
            recency_boost: 0.25,
            half_life: chrono::Duration::days(30),
            min_similarity: DEFAULT_MIN_SIMILARITY,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The entry.
    pub entry: MemoryEntry,
    /// Its fused score; higher is better.
    pub score: f32,
    /// Its rank in the full-text results (0 first), if it was there.
    pub text_rank: Option<usize>,
    /// Its rank in the embedding results, if it was there.
    pub embedding_rank: Option<usize>,
}

/// Fuses the two result lists (each best first) into at most `limit` hits, best first; ties go
/// to the newer entry. Embedding results below the ranking's least similarity are left out.
pub fn fuse(
    text: Vec<ScoredEntry>,
    embedding: Vec<ScoredEntry>,
    ranking: &Ranking,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<Hit> {
    let mut hits: HashMap<i64, Hit> = HashMap::with_capacity(text.len() + embedding.len());
    let mut add = |list: Vec<ScoredEntry>, weight: f32, is_text: bool| {
        for (rank, scored) in list.into_iter().enumerate() {
            let gain = weight / (FUSION_K + rank as f32 + 1.0);
            let hit = hits.entry(scored.entry.id).or_insert_with(|| Hit {
                entry: scored.entry,
                score: 0.0,
                text_rank: None,
                embedding_rank: None,
            });
            hit.score += gain;
            match is_text {
                true => hit.text_rank = Some(rank),
                false => hit.embedding_rank = Some(rank),
            }
        }
    };
    add(text, ranking.text_weight, true);
    let related = embedding.into_iter().filter(|s| s.score >= ranking.min_similarity).collect();
    add(related, ranking.embedding_weight, false);
    let half_life = ranking.half_life.num_seconds().max(1) as f32;
    let mut hits: Vec<Hit> = hits
        .into_values()
        .map(|mut hit| {
            let age = (now - hit.entry.created_at).num_seconds().max(0) as f32;
            hit.score *= 1.0 + ranking.recency_boost * (-age / half_life).exp2();
            hit
        })
        .collect();
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.entry.created_at.cmp(&a.entry.created_at))
            .then(b.entry.id.cmp(&a.entry.id))
    });
    hits.truncate(limit);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_core::EntryKind;
    use exoclaw_types::SessionId;

    fn entry(id: i64, days_ago: i64, now: DateTime<Utc>) -> MemoryEntry {
        MemoryEntry {
            id,
            owner: "u".into(),
            session: SessionId::new(),
            kind: EntryKind::Message,
            seq: id as u64,
            role: None,
            text: format!("entry {id}"),
            created_at: now - chrono::Duration::days(days_ago),
        }
    }

    fn scored(entries: &[MemoryEntry]) -> Vec<ScoredEntry> {
        entries.iter().map(|e| ScoredEntry { entry: e.clone(), score: 1.0 }).collect()
    }

    #[test]
    fn an_entry_both_lists_found_beats_one_only_one_found() {
        let now = Utc::now();
        let [a, b, c] = [entry(1, 1, now), entry(2, 1, now), entry(3, 1, now)];
        let hits = fuse(
            scored(&[a.clone(), b.clone()]),
            scored(&[c.clone(), b.clone()]),
            &Ranking::default(),
            now,
            10,
        );
        assert_eq!(hits[0].entry.id, 2, "b is second in both lists, first overall");
        assert_eq!((hits[0].text_rank, hits[0].embedding_rank), (Some(1), Some(1)));
        assert_eq!(hits.len(), 3);
    }

    #[test]
    fn embedding_results_below_the_least_similarity_are_left_out() {
        let now = Utc::now();
        let [near, far] = [entry(1, 1, now), entry(2, 1, now)];
        let embedding = vec![
            ScoredEntry { entry: near.clone(), score: 0.33 },
            ScoredEntry { entry: far.clone(), score: 0.12 },
        ];
        let hits = fuse(Vec::new(), embedding.clone(), &Ranking::default(), now, 10);
        assert_eq!(hits.iter().map(|h| h.entry.id).collect::<Vec<_>>(), [1]);
        // Found by its words, an entry counts whatever its similarity.
        let hits = fuse(scored(&[far]), embedding, &Ranking::default(), now, 10);
        let far_hit = hits.iter().find(|h| h.entry.id == 2).unwrap();
        assert_eq!((far_hit.text_rank, far_hit.embedding_rank), (Some(0), None));
    }

    #[test]
    fn between_equal_matches_the_recent_one_wins() {
        let now = Utc::now();
        let old = entry(1, 365, now);
        let new = entry(2, 0, now);
        // The old one is first in one list, the new one first in the other: equal fusion scores.
        let hits = fuse(
            scored(std::slice::from_ref(&old)),
            scored(std::slice::from_ref(&new)),
            &Ranking::default(),
            now,
            10,
        );
        assert_eq!(hits[0].entry.id, 2);
        // Without the boost, the tie goes to the newer too, but by a hair: the boost makes a gap.
        assert!(hits[0].score > hits[1].score * 1.2);
    }

    #[test]
    fn the_limit_cuts_the_tail() {
        let now = Utc::now();
        let entries: Vec<_> = (0..30).map(|i| entry(i, 1, now)).collect();
        let hits = fuse(scored(&entries), Vec::new(), &Ranking::default(), now, 5);
        assert_eq!(hits.iter().map(|h| h.entry.id).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    }
}
