//! What both backends' long-term memory (`sqlite/memory.rs`, `postgres/memory.rs`) share: turning
//! a plain-text query into words, preparing a batch of entries to index, and comparing facts'
//! objects. The embeddings' cache and search are `memory_vectors.rs`.

use std::collections::HashMap;

use exoclaw_core::{EntryKind, NewEntry, StoreError};
use exoclaw_types::SessionId;

use crate::codec::from_i64;

/// Words of a query searched at most: a pasted page must not become a query of thousands of terms.
const MAX_QUERY_WORDS: usize = 32;

/// Entries per `INSERT` when indexing (9 values each, far under either database's limit on
/// bound parameters).
pub(crate) const ENTRIES_PER_INSERT: usize = 200;

/// The words of a plain-text query: runs of letters and digits (in any script), lower-cased,
/// each once, at most [`MAX_QUERY_WORDS`]. Everything else (quotes, `*`, `:`, parentheses, emoji)
/// separates words, so no query language's syntax survives into the query.
pub(crate) fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_QUERY_WORDS {
            break;
        }
    }
    words
}

/// English stop words: PostgreSQL's list (`english.stop`, Snowball's), which its `english`
/// text-search configuration drops from queries.
const STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
];

/// `words` without the [`STOP_WORDS`], unless nothing else is left: SQLite's FTS5 keeps stop words,
/// and a query of alternatives that includes "the" or "my" matches most entries, each of which
/// must then be ranked (over 100 ms for 100,000 entries), while adding next to nothing to the
/// ranking (BM25 weighs a word that most entries have at about zero). Dropping them also makes
/// SQLite find what PostgreSQL finds.
pub(crate) fn without_stop_words(words: Vec<String>) -> Vec<String> {
    let kept: Vec<String> = words.iter().filter(|w| !STOP_WORDS.contains(&w.as_str())).cloned().collect();
    if kept.is_empty() { words } else { kept }
}

/// An FTS5 query matching any of `words`: each a quoted string (`"lyon" OR "moved"`), so none is
/// read as an operator (`NEAR`, `OR`) or a column filter.
pub(crate) fn fts5_query(words: &[String]) -> String {
    words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" OR ")
}

/// `entries` with each (session, kind, seq) once, the last given winning: one `INSERT` cannot
/// hold a key twice.
pub(crate) fn distinct_entries(entries: &[NewEntry]) -> Vec<&NewEntry> {
    let mut last: HashMap<(SessionId, EntryKind, u64), usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        last.insert((entry.session, entry.kind, entry.seq), i);
    }
    entries
        .iter()
        .enumerate()
        .filter(|(i, e)| last.get(&(e.session, e.kind, e.seq)) == Some(i))
        .map(|(_, e)| e)
        .collect()
}

/// The positions of `entries` by session and kind, for one `DELETE` of the entries they replace
/// per pair (a batch is nearly always one session's messages).
pub(crate) fn by_session_and_kind(entries: &[&NewEntry]) -> Vec<((SessionId, EntryKind), Vec<u64>)> {
    let mut groups: Vec<((SessionId, EntryKind), Vec<u64>)> = Vec::new();
    for entry in entries {
        let key = (entry.session, entry.kind);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, seqs)) => seqs.push(entry.seq),
            None => groups.push((key, vec![entry.seq])),
        }
    }
    groups
}

/// An entry's embedding, unless it has none or an empty one (which nothing can be near).
pub(crate) fn embedding_of(entry: &NewEntry) -> Option<&[f32]> {
    entry.embedding.as_deref().filter(|e| !e.is_empty())
}

/// An entry kind from its stored name.
pub(crate) fn kind_from_str(name: &str) -> Result<EntryKind, StoreError> {
    EntryKind::parse(name).ok_or_else(|| {
        StoreError::corrupt(format!("unknown memory entry kind {name:?} (written by a newer exoclaw?)"))
    })
}

/// A fact's source from its two nullable columns: both or neither.
pub(crate) fn source_from_columns(
    session: Option<SessionId>,
    seq: Option<i64>,
) -> Result<Option<(SessionId, u64)>, StoreError> {
    match (session, seq) {
        (Some(session), Some(seq)) => Ok(Some((session, from_i64(seq, "fact source seq")?))),
        (None, None) => Ok(None),
        _ => Err(StoreError::corrupt("a fact's source is only partly stored")),
    }
}

/// A fact's confidence as stored: within 0 to 1 (NaN as 0, which no database keeps as a number).
pub(crate) fn stored_confidence(confidence: f32) -> f32 {
    if confidence.is_nan() { 0.0 } else { confidence.clamp(0.0, 1.0) }
}

/// `limit` as a bound for `LIMIT`.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A fact's object as compared: trimmed, case-insensitively.
pub(crate) fn same_object(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Whether `text` contains `needle`, case-insensitively. An empty needle contains nothing here:
/// "forget everything" is never one empty string away.
pub(crate) fn contains_text(text: &str, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    !needle.is_empty() && text.to_lowercase().contains(&needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_keep_only_letters_and_digits() {
        assert_eq!(query_words("Where did I move? \"Lyon\" *"), vec!["where", "did", "i", "move", "lyon"]);
        assert_eq!(
            query_words("NEAR(a b) col:x 'it''s' 🎉 lyon lyon"),
            vec!["near", "a", "b", "col", "x", "it", "s", "lyon"]
        );
        assert_eq!(query_words("Zürich 東京 42"), vec!["zürich", "東京", "42"]);
        assert!(query_words("").is_empty());
        assert!(query_words("\" * : ' 🎉 ( )").is_empty());
        assert_eq!(query_words(&"word ".repeat(10)).len(), 1);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_words(&many).len(), MAX_QUERY_WORDS);
    }

    #[test]
    fn stop_words_go_unless_nothing_else_is_left() {
        let words = |q| without_stop_words(query_words(q));
        assert_eq!(words("when did my sister move to Lyon?"), vec!["sister", "move", "lyon"]);
        assert_eq!(words("the who"), vec!["the", "who"]);
    }

    #[test]
    fn fts5_queries_quote_every_word() {
        let words = vec!["lyon".to_owned(), "or".to_owned(), "a\"b".to_owned()];
        assert_eq!(fts5_query(&words), "\"lyon\" OR \"or\" OR \"a\"\"b\"");
    }

    #[test]
    fn objects_compare_trimmed_and_case_insensitively() {
        assert!(same_object(" Lyon ", "lyon"));
        assert!(same_object("ÉCOLE", "école"));
        assert!(!same_object("Lyon", "Paris"));
    }

    #[test]
    fn an_empty_needle_contains_nothing() {
        assert!(contains_text("My Sister lives in Lyon", "sister"));
        assert!(!contains_text("anything", ""));
    }
}
