//! Facts from what the user says: asked of a model as JSON that must match [`facts_schema`]
//! (structured outputs), or found by the [`patterns`] when no model is used or its answer does
//! not validate.

use regex::Regex;
use serde::Deserialize;
use std::sync::LazyLock;

/// The most characters of a fact's subject, predicate or object; longer ones are not facts but
/// paragraphs, and are dropped.
pub const MAX_FACT_CHARS: usize = 120;

/// Predicates a subject has one value of at a time: a new value supersedes the current one.
pub const SINGLE_VALUED: &[&str] = &[
    "name",
    "lives_in",
    "works_at",
    "age",
    "job",
    "email",
    "phone",
    "birthday",
    "timezone",
    "partner",
    "native_language",
];

/// A fact found in a message, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// What it is about (`user` for the speaker).
    pub subject: String,
    /// The relation, `snake_case`.
    pub predicate: String,
    /// The value.
    pub object: String,
    /// How sure the extraction is, 0 to 1.
    pub confidence: f32,
    /// Whether a new value replaces the old one.
    pub single_valued: bool,
}

/// The JSON schema a model's fact extraction must follow (strict-mode compatible).
pub fn facts_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "facts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "subject": {"type": "string"},
                        "predicate": {"type": "string"},
                        "object": {"type": "string"},
                        "confidence": {"type": "number"},
                        "single_valued": {"type": "boolean"}
                    },
                    "required": ["subject", "predicate", "object", "confidence", "single_valued"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["facts"],
        "additionalProperties": false
    })
}

/// The instructions that go with [`facts_schema`].
pub const EXTRACTION_PROMPT: &str = "You extract durable facts from the user's message for a \
long-term memory. Keep only facts the user states as true about themselves or their world \
(where they live, their name, job, employer, family, preferences, plans, projects) — not \
questions, not hypotheticals, not what the assistant said. The subject is `user` for the \
speaker. The predicate is snake_case; use name, lives_in, works_at, job, age, email, birthday, \
timezone, likes, dislikes, prefers where they fit. single_valued is true when a new value \
replaces the old one (lives_in, works_at, name), false when several can hold (likes). \
confidence is 0 to 1. Answer {\"facts\": []} when there are none.";

#[derive(Debug, Deserialize)]
struct ModelFacts {
    facts: Vec<ModelFact>,
}

#[derive(Debug, Deserialize)]
struct ModelFact {
    subject: String,
    predicate: String,
    object: String,
    confidence: f32,
    single_valued: bool,
}

/// Why a model's extraction was not used.
#[derive(Debug, thiserror::Error)]
#[error("the model's fact extraction does not match the schema: {0}")]
pub struct InvalidExtraction(#[from] serde_json::Error);

/// The facts in a model's answer, which must be JSON matching [`facts_schema`] (a fenced code
/// block around it is accepted). Facts with empty or overlong parts are dropped; predicates are
/// made `snake_case`, confidences kept within 0 to 1, and the known single-valued predicates are
/// single-valued whatever the model said.
pub fn parse_model_facts(answer: &str) -> Result<Vec<Extracted>, InvalidExtraction> {
    let json = answer.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```");
    let parsed: ModelFacts = serde_json::from_str(json.trim())?;
    Ok(parsed
        .facts
        .into_iter()
        .filter_map(|f| {
            let predicate = snake_case(&f.predicate);
            let fact = Extracted {
                subject: clean(&f.subject)?.to_lowercase(),
                single_valued: f.single_valued || SINGLE_VALUED.contains(&predicate.as_str()),
                predicate: clean(&predicate)?,
                object: clean(&f.object)?,
                confidence: if f.confidence.is_finite() { f.confidence.clamp(0.0, 1.0) } else { 0.5 },
            };
            Some(fact)
        })
        .collect())
}

fn clean(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches(['.', '!', ',', ';']).trim();
    (!text.is_empty() && text.chars().count() <= MAX_FACT_CHARS).then(|| text.to_owned())
}

/// `text` in `snake_case`: lower case, runs of anything but letters and digits made one `_`.
pub fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// One pattern: the regex (its last group is the object) and what a match means.
struct Pattern {
    regex: Regex,
    predicate: &'static str,
    single_valued: bool,
}

/// How confident a pattern match is: the phrasing is explicit, but a pattern cannot tell a
/// quotation or a hypothetical from a statement.
pub const PATTERN_CONFIDENCE: f32 = 0.7;

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let object = r"([^.,;!?\n]+?)";
    let end = r"(?:\s+(?:now|today|yesterday|recently|last (?:week|month|year)|this (?:week|month|year)|and\s.*|but\s.*|since\s.*|for\s.*))?\s*(?:[.,;!?\n]|$)";
    let table: &[(&str, &'static str, bool)] = &[
        (r"\bmy name is\s+", "name", true),
        (r"\b(?:call me|i am called|i'm called)\s+", "name", true),
        (r"\b(?:i live|i'm living|i am living|i now live|i reside)\s+in\s+", "lives_in", true),
        (r"\b(?:i(?:'ve| have)?\s+(?:just\s+)?(?:moved|relocated))\s+to\s+", "lives_in", true),
        (r"\b(?:i work|i'm working|i am working|i now work)\s+(?:at|for)\s+", "works_at", true),
        (r"\b(?:i work as|i'm working as|my job is)\s+(?:an?\s+)?", "job", true),
        (r"\b(?:i am|i'm)\s+(\d{1,3})\s+years?\s+old\b()", "age", true),
        (r"\bi\s+(?:really\s+)?(?:like|love|enjoy)\s+", "likes", false),
        (r"\bi\s+(?:don't|do not)\s+like\s+|\bi\s+(?:hate|dislike)\s+", "dislikes", false),
        (r"\bi\s+prefer\s+", "prefers", false),
    ];
    table
        .iter()
        .map(|(lead, predicate, single_valued)| {
            let regex = match lead.ends_with("()") {
                // The age pattern captures its number itself.
                true => Regex::new(&format!("(?i){lead}")),
                false => Regex::new(&format!("(?i)(?:{lead}){object}{end}")),
            };
            Pattern {
                regex: regex.unwrap_or_else(|e| unreachable!("pattern {lead}: {e}")),
                predicate,
                single_valued: *single_valued,
            }
        })
        .collect()
});

static MY_X_IS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bmy\s+((?:favou?rite\s+)?[a-z]+(?:\s+[a-z]+)?)\s+is\s+([^.,;!?\n]+?)\s*(?:[.,;!?\n]|$)")
        .unwrap_or_else(|e| unreachable!("my-x-is pattern: {e}"))
});

/// The facts a user's message states in common English phrasings: "my name is…", "I live in…",
/// "I moved to…", "I work at…", "I'm 34 years old", "I like…", "my favourite colour is…".
pub fn patterns(text: &str) -> Vec<Extracted> {
    let mut found: Vec<Extracted> = Vec::new();
    let mut push = |predicate: String, object: &str, single_valued: bool| {
        let Some(object) = clean(object) else { return };
        if found.iter().any(|f| f.predicate == predicate && f.object.eq_ignore_ascii_case(&object)) {
            return;
        }
        found.push(Extracted {
            subject: "user".into(),
            predicate,
            object,
            confidence: PATTERN_CONFIDENCE,
            single_valued,
        });
    };
    for pattern in PATTERNS.iter() {
        for captures in pattern.regex.captures_iter(text) {
            if let Some(object) = captures.get(1) {
                push(pattern.predicate.to_owned(), object.as_str(), pattern.single_valued);
            }
        }
    }
    for captures in MY_X_IS.captures_iter(text) {
        let (Some(what), Some(object)) = (captures.get(1), captures.get(2)) else { continue };
        let predicate = match snake_case(what.as_str()).as_str() {
            "name" => continue, // "my name is" has its own pattern.
            "job" => "job".to_owned(),
            other => other.replace("favourite", "favorite"),
        };
        let single = SINGLE_VALUED.contains(&predicate.as_str()) || predicate.starts_with("favorite_");
        push(predicate, object.as_str(), single);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn triples(text: &str) -> Vec<(String, String, bool)> {
        patterns(text).into_iter().map(|f| (f.predicate, f.object, f.single_valued)).collect()
    }

    fn t(p: &str, o: &str, single: bool) -> (String, String, bool) {
        (p.to_owned(), o.to_owned(), single)
    }

    #[test]
    fn where_the_user_lives_and_moves() {
        assert_eq!(triples("Hi! I live in Paris, near the river."), [t("lives_in", "Paris", true)]);
        assert_eq!(triples("Big news: I moved to Lyon last month."), [t("lives_in", "Lyon", true)]);
        assert_eq!(triples("i've just relocated to New York City"), [t("lives_in", "New York City", true)]);
    }

    #[test]
    fn names_work_age_and_tastes() {
        assert_eq!(triples("My name is Ada Lovelace."), [t("name", "Ada Lovelace", true)]);
        assert_eq!(
            triples("I work at Acme Corp and I love climbing"),
            [t("works_at", "Acme Corp", true), t("likes", "climbing", false)]
        );
        assert_eq!(triples("I'm 34 years old."), [t("age", "34", true)]);
        assert_eq!(triples("I don't like olives."), [t("dislikes", "olives", false)]);
        assert_eq!(triples("My favourite colour is green."), [t("favorite_colour", "green", true)]);
    }

    #[test]
    fn questions_and_small_talk_state_nothing() {
        assert_eq!(triples("Where do I live?"), []);
        assert_eq!(triples("What is the capital of France?"), []);
    }

    #[test]
    fn a_model_answer_is_validated_and_normalised() {
        let answer = r#"```json
{"facts": [
  {"subject": "User", "predicate": "Lives In", "object": "Lyon.", "confidence": 1.7, "single_valued": false},
  {"subject": "user", "predicate": "likes", "object": "", "confidence": 0.9, "single_valued": false}
]}
```"#;
        let facts = parse_model_facts(answer).unwrap();
        assert_eq!(
            facts,
            [Extracted {
                subject: "user".into(),
                predicate: "lives_in".into(),
                object: "Lyon".into(),
                confidence: 1.0,
                single_valued: true
            }]
        );
        assert!(parse_model_facts(r#"{"facts": [{"subject": "user"}]}"#).is_err());
        assert!(parse_model_facts("I think the user lives in Lyon.").is_err());
    }
}
