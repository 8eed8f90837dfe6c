//! What both backends' long-term memory (`sqlite/memory.rs`, `postgres/memory.rs`) share: turning
//! a plain-text query into words, preparing a batch of entries to index, and comparing facts'
//! objects. The embeddings' cache and search are `memory_vectors.rs`.

use std::collections::HashMap;

use exoclaw_core::{EntryKind, NewEntry, StoreError};
use exoclaw_types::SessionId;

use crate::codec::{from_i64, to_i64};

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
    words.iter().map(|w| fts5_phrase(w)).collect::<Vec<_>>().join(" OR ")
}

/// `word` as an FTS5 string, quoted.
pub(crate) fn fts5_phrase(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\"\""))
}

/// Matches one full-text search ranks by BM25, about, when its words are in more entries than
/// that. SQLite's `bm25()` costs about a microsecond a match (it reads the match's positions and
/// length), and a question's common words are in thousands of entries out of 100,000 (ranking
/// them all took 5 to 40 ms), while the entries it should find are nearly always among those
/// with its rarer words.
pub(crate) const RANKED_MATCHES: u64 = 1_000;

/// How an SQLite full-text search runs (`sqlite/memory.rs`), from how many entries each of its
/// words is in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TextPlan {
    /// Every match of this FTS5 query is ranked.
    All(String),
    /// Only the entries with one of the rarer words are: those of `without_common` and of
    /// `with_common`, which never match the same entry, and each rank their matches as `full`
    /// (the query of all the words) would.
    Bounded { without_common: String, with_common: String, full: String },
}

impl TextPlan {
    /// The query of all the words (in some entry), which ranks every match.
    pub(crate) fn full(&self) -> &str {
        match self {
            Self::All(full) | Self::Bounded { full, .. } => full,
        }
    }
}

/// The plan for `counts` (each word with the entries it is in, counted up to a little over
/// [`RANKED_MATCHES`]) when `wanted` results are asked for; `None` when no word is in any entry.
///
/// When all the words' matches together are few, every match is ranked. Otherwise the rarest
/// words drive: added from the rarest up while their matches stay under [`RANKED_MATCHES`], and
/// at least until `wanted` matches are reached. The candidates are the entries with a driving
/// word, as two queries, `(driving) NOT (others)` and `(driving) AND (others)`: every phrase of
/// the whole query is in each expression, so each candidate gets exactly the score the whole
/// query would give it (BM25 weighs a word by its frequency in the whole index, not among the
/// matches). An entry with none of the rarer words, only common ones, ranks below nearly all of
/// them anyway (its words weigh little); it is not found unless too few candidates are.
pub(crate) fn text_plan(counts: &[(String, u64)], wanted: u64) -> Option<TextPlan> {
    let mut present: Vec<&(String, u64)> = counts.iter().filter(|(_, count)| *count > 0).collect();
    if present.is_empty() {
        return None;
    }
    present.sort_by_key(|(_, count)| *count);
    let words = |of: &[&(String, u64)]| of.iter().map(|(w, _)| w.clone()).collect::<Vec<_>>();
    let full = fts5_query(&words(&present));
    let mut driving = 0;
    let mut matches = 0u64;
    for (_, count) in &present {
        if driving > 0 && matches >= wanted && matches.saturating_add(*count) > RANKED_MATCHES {
            break;
        }
        driving += 1;
        matches = matches.saturating_add(*count);
    }
    if driving == present.len() {
        return Some(TextPlan::All(full));
    }
    let (rare, common) = present.split_at(driving);
    let (rare, common) = (fts5_query(&words(rare)), fts5_query(&words(common)));
    Some(TextPlan::Bounded {
        without_common: format!("({rare}) NOT ({common})"),
        with_common: format!("({rare}) AND ({common})"),
        full,
    })
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

/// The indexing marks `entries` raise: per session with messages among them, one past the
/// highest message position (see [`MemoryIndex::indexed_messages`](exoclaw_core::MemoryIndex)).
pub(crate) fn message_marks(entries: &[&NewEntry]) -> Result<Vec<(SessionId, i64)>, StoreError> {
    let mut marks: Vec<(SessionId, u64)> = Vec::new();
    for entry in entries.iter().filter(|e| e.kind == EntryKind::Message) {
        let next = entry.seq.saturating_add(1);
        match marks.iter_mut().find(|(session, _)| *session == entry.session) {
            Some((_, mark)) => *mark = (*mark).max(next),
            None => marks.push((entry.session, next)),
        }
    }
    marks.into_iter().map(|(session, mark)| Ok((session, to_i64(mark, "indexing mark")?))).collect()
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
    fn text_plans_leave_out_common_words_only_past_the_bound() {
        let counts = |c: &[(&str, u64)]| c.iter().map(|(w, n)| ((*w).to_owned(), *n)).collect::<Vec<_>>();
        assert_eq!(text_plan(&counts(&[("qux", 0)]), 60), None);
        let plan = text_plan(&counts(&[("sister", 400), ("qux", 0), ("lyon", 30)]), 60).unwrap();
        assert_eq!(plan, TextPlan::All("\"lyon\" OR \"sister\"".into()));
        // Common words are left out once the rarer ones match enough…
        let common = [("time", 1001), ("sister", 700), ("lyon", 200), ("dentist", 5)];
        assert_eq!(
            text_plan(&counts(&common), 60).unwrap(),
            TextPlan::Bounded {
                without_common: "(\"dentist\" OR \"lyon\" OR \"sister\") NOT (\"time\")".into(),
                with_common: "(\"dentist\" OR \"lyon\" OR \"sister\") AND (\"time\")".into(),
                full: "\"dentist\" OR \"lyon\" OR \"sister\" OR \"time\"".into(),
            }
        );
        // …but not before.
        let plan = text_plan(&counts(&[("time", 1001), ("good", 1001), ("dentist", 5)]), 60).unwrap();
        assert_eq!(plan.full(), "\"dentist\" OR \"time\" OR \"good\"");
        assert!(matches!(plan, TextPlan::Bounded { without_common, .. }
            if without_common == "(\"dentist\" OR \"time\") NOT (\"good\")"));
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
