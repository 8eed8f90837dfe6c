//! Composing a context within a token budget: the pure part of assembly, given what was read.
//!
//! The order is fixed — soul, what is known about the user (facts), passages of the agent's
//! knowledge bases, relevant excerpts of past conversations, the rolling summary of this one,
//! then the recent window — and so are the shares: the soul may take a quarter of the budget,
//! facts a tenth, knowledge an eighth, excerpts an eighth, the summary a sixth; what they leave
//! goes to the recent window, filled from the newest message back. The first five go in one
//! system message before the window.

use crate::rank::Hit;
use crate::tokens::{MESSAGE_OVERHEAD, TokenCounter};
use chrono::{DateTime, Utc};
use exoclaw_core::{Fact, Summary};
use exoclaw_types::{Message, Role};

/// What a context is composed from.
#[derive(Debug, Default)]
pub struct Parts<'a> {
    /// The agent's soul document.
    pub soul: Option<&'a str>,
    /// The owner's facts, current and superseded.
    pub facts: &'a [Fact],
    /// Passages of the agent's knowledge bases that match the new input, best first.
    pub knowledge: &'a [Hit],
    /// Search results for the new input, best first (entries already in the window are left
    /// out here).
    pub excerpts: &'a [Hit],
    /// The session's rolling summary.
    pub summary: Option<&'a Summary>,
    /// The session's messages, all of them.
    pub history: &'a [Message],
    /// The user's new message.
    pub input: &'a str,
}

/// A composed context.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    /// The messages before the user's new one: the memory system message (when there is
    /// anything to say), then the recent window.
    pub messages: Vec<Message>,
    /// Where the recent window starts in the session's history.
    pub window_start: usize,
    /// Tokens counted for `messages` and the input together; never more than the budget unless
    /// the input alone is.
    pub tokens: usize,
    /// How many facts and excerpts made it in.
    pub facts: usize,
    /// How many excerpts made it in.
    pub excerpts: usize,
    /// How many knowledge passages made it in.
    pub knowledge: usize,
}

/// The most characters of one excerpt shown.
pub const EXCERPT_CHARS: usize = 400;

/// The most characters of one knowledge passage shown (a passage is about 1,200 bytes).
pub const PASSAGE_CHARS: usize = 1_500;

/// Composes `parts` within `budget` tokens (for the returned messages and the input).
pub fn compose(parts: &Parts<'_>, budget: usize, counter: &dyn TokenCounter, now: DateTime<Utc>) -> Composed {
    let input = counter.count(parts.input) + MESSAGE_OVERHEAD;
    let mut left = budget.saturating_sub(input);
    let mut block = String::new();
    let add = |block: &mut String, left: &mut usize, section: &str, share: usize| -> bool {
        let cost = counter.count(section) + 2;
        if section.is_empty() || cost > share.min(*left) {
            return false;
        }
        if !block.is_empty() {
            block.push_str("\n\n");
        }
        block.push_str(section);
        *left -= cost;
        true
    };
    if let Some(soul) = parts.soul {
        let soul = fit(soul, (budget / 4).saturating_sub(4), counter);
        add(&mut block, &mut left, &soul, budget / 4);
    }
    let (facts_text, facts) = facts_section(parts.facts, budget / 10, counter);
    add(&mut block, &mut left, &facts_text, budget / 10);
    let (knowledge_text, knowledge) = knowledge_section(parts.knowledge, budget / 8, counter);
    add(&mut block, &mut left, &knowledge_text, budget / 8);
    let (excerpts_text, excerpts) = excerpts_section(parts.excerpts, budget / 8, counter, now);
    add(&mut block, &mut left, &excerpts_text, budget / 8);
    if let Some(summary) = parts.summary.filter(|s| !s.text.trim().is_empty()) {
        let head = "## Earlier in this conversation (summary)\n";
        let text = fit(summary.text.trim(), (budget / 6).saturating_sub(counter.count(head) + 4), counter);
        add(&mut block, &mut left, &format!("{head}{text}"), budget / 6);
    }
    let memory = (!block.is_empty())
        .then(|| Message::new(Role::System, vec![exoclaw_types::Part::text(block.clone())]));
    if memory.is_some() {
        left = left.saturating_sub(MESSAGE_OVERHEAD);
    }
    let archived = parts
        .summary
        .map_or(0, |s| usize::try_from(s.through).unwrap_or(usize::MAX))
        .min(parts.history.len());
    let mut start = parts.history.len();
    for (index, message) in parts.history.iter().enumerate().skip(archived).rev() {
        let cost = counter.message(message);
        if cost > left {
            break;
        }
        left -= cost;
        start = index;
    }
    // A window must not open on tool results whose call was cut off.
    while start < parts.history.len() && parts.history[start].role == Role::Tool {
        left += counter.message(&parts.history[start]);
        start += 1;
    }
    let mut messages = Vec::with_capacity(parts.history.len() - start + 1);
    messages.extend(memory);
    messages.extend_from_slice(&parts.history[start..]);
    Composed {
        messages,
        window_start: start,
        tokens: budget.max(input) - left.min(budget),
        facts,
        excerpts,
        knowledge,
    }
}

/// `text`, cut to about `tokens` tokens with a marker when longer.
fn fit(text: &str, tokens: usize, counter: &dyn TokenCounter) -> String {
    if counter.count(text) <= tokens {
        return text.to_owned();
    }
    let marker = " […]";
    let target = tokens.saturating_sub(counter.count(marker));
    // Halve the cut until it fits: few counts, whatever the counter.
    let (mut lo, mut hi) = (0, text.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let end = floor_char_boundary(text, mid);
        if counter.count(&text[..end]) <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let end = floor_char_boundary(text, lo);
    match end {
        0 => String::new(),
        _ => format!("{}{marker}", text[..end].trim_end()),
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The facts section, current facts first (with what they replaced), within `tokens`.
fn facts_section(facts: &[Fact], tokens: usize, counter: &dyn TokenCounter) -> (String, usize) {
    let head = "## What you remember about the user";
    let mut text = String::from(head);
    let mut used = counter.count(head);
    let mut count = 0;
    for fact in facts.iter().filter(|f| f.is_current()) {
        let before: Vec<&str> = facts
            .iter()
            .filter(|old| old.superseded_by == Some(fact.id))
            .map(|old| old.object.as_str())
            .collect();
        let mut line = format!("\n- {} {}: {}", fact.subject, fact.predicate.replace('_', " "), fact.object);
        if !before.is_empty() {
            line.push_str(&format!(" (previously: {})", before.join(", ")));
        }
        let cost = counter.count(&line);
        if used + cost > tokens {
            break;
        }
        used += cost;
        text.push_str(&line);
        count += 1;
    }
    (if count == 0 { String::new() } else { text }, count)
}

/// The knowledge section, best first, within `tokens`: each passage whole, up to
/// [`PASSAGE_CHARS`], under its document and section.
fn knowledge_section(hits: &[Hit], tokens: usize, counter: &dyn TokenCounter) -> (String, usize) {
    let blocks = hits.iter().map(|hit| {
        let passage = clipped(hit.entry.text.trim(), PASSAGE_CHARS);
        // The passage's first line names the document and section: a heading of its own.
        match passage.split_once('\n') {
            Some((source, body)) => format!("\n\n### {source}\n{body}"),
            None => format!("\n\n{passage}"),
        }
    });
    listed("## From the knowledge base", blocks, tokens, counter)
}

/// The excerpts section, best first, within `tokens`.
fn excerpts_section(
    hits: &[Hit],
    tokens: usize,
    counter: &dyn TokenCounter,
    now: DateTime<Utc>,
) -> (String, usize) {
    let lines = hits.iter().map(|hit| {
        let entry = &hit.entry;
        let who = match (entry.kind, entry.role) {
            (exoclaw_core::EntryKind::Summary, _) => "summary",
            (exoclaw_core::EntryKind::Note, _) => "note",
            (_, Some(Role::Assistant)) => "you said",
            (_, Some(Role::User)) => "the user said",
            _ => "",
        };
        let when = age(now, entry.created_at);
        let body: String = entry.text.split_whitespace().collect::<Vec<_>>().join(" ");
        format!("\n- ({when}, {who}) {}", clipped(&body, EXCERPT_CHARS))
    });
    listed("## Possibly relevant, from earlier conversations", lines, tokens, counter)
}

/// A section: `head`, then each of `items` that still fits within `tokens` (one that does not
/// is skipped, a smaller one after it may fit); empty when none does. Gives it and how many
/// items it holds.
fn listed(
    head: &str,
    items: impl Iterator<Item = String>,
    tokens: usize,
    counter: &dyn TokenCounter,
) -> (String, usize) {
    let mut text = String::from(head);
    let mut used = counter.count(head);
    let mut count = 0;
    for item in items {
        let cost = counter.count(&item);
        if used + cost > tokens {
            continue;
        }
        used += cost;
        text.push_str(&item);
        count += 1;
    }
    (if count == 0 { String::new() } else { text }, count)
}

/// `text` cut to its first `chars` characters, marked `[…]` when cut.
fn clipped(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{} […]", &text[..cut]),
        None => text.to_owned(),
    }
}

/// When, for a person: `today`, `3 days ago`, or the date.
fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    match (now - then).num_days() {
        ..=0 => "today".to_owned(),
        1 => "yesterday".to_owned(),
        days @ 2..=30 => format!("{days} days ago"),
        _ => then.format("%Y-%m-%d").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Estimate;
    use exoclaw_core::{EntryKind, MemoryEntry};
    use exoclaw_types::{Part, SessionId, ToolCall, ToolResult};

    fn history(n: usize) -> Vec<Message> {
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    Message::user(format!("question {i} {}", "words ".repeat(10)))
                } else {
                    Message::assistant(format!("answer {i} {}", "words ".repeat(10)))
                }
            })
            .collect()
    }

    fn total(composed: &Composed, input: &str) -> usize {
        composed.messages.iter().map(|m| Estimate.message(m)).sum::<usize>()
            + Estimate.count(input)
            + MESSAGE_OVERHEAD
    }

    #[test]
    fn a_long_history_is_cut_to_the_budget_newest_kept() {
        let history = history(200);
        let parts = Parts { history: &history, input: "next question", ..Parts::default() };
        let composed = compose(&parts, 1_000, &Estimate, Utc::now());
        assert!(total(&composed, "next question") <= 1_000);
        assert_eq!(composed.messages.last(), history.last(), "the newest message is kept");
        assert!(composed.window_start > 150, "only the recent window: {}", composed.window_start);
        assert_eq!(composed.messages.len(), 200 - composed.window_start);
    }

    #[test]
    fn a_short_history_goes_whole_and_nothing_else_is_added() {
        let history = history(4);
        let parts = Parts { history: &history, input: "hi", ..Parts::default() };
        let composed = compose(&parts, 10_000, &Estimate, Utc::now());
        assert_eq!(composed.messages, history);
    }

    #[test]
    fn the_memory_block_comes_first_in_its_order() {
        let now = Utc::now();
        let session = SessionId::new();
        let facts = [
            Fact {
                id: 2,
                owner: "u".into(),
                subject: "user".into(),
                predicate: "lives_in".into(),
                object: "Lyon".into(),
                confidence: 0.7,
                source: None,
                learned_at: now,
                valid_from: now,
                invalidated_at: None,
                superseded_by: None,
            },
            Fact {
                id: 1,
                object: "Paris".into(),
                invalidated_at: Some(now),
                superseded_by: Some(2),
                ..facts_template(now)
            },
        ];
        let excerpt = Hit {
            entry: MemoryEntry {
                id: 9,
                owner: "u".into(),
                session,
                kind: EntryKind::Message,
                seq: 3,
                role: Some(Role::User),
                text: "My sister lives in Lisbon.".into(),
                created_at: now,
            },
            score: 1.0,
            text_rank: Some(0),
            embedding_rank: None,
        };
        let summary = Summary {
            session,
            through: 2,
            text: "We talked about trains.".into(),
            model: "m".into(),
            created_at: now,
        };
        let passage = Hit {
            entry: MemoryEntry {
                id: 12,
                owner: "knowledge:*".into(),
                kind: EntryKind::Knowledge,
                seq: 0,
                role: None,
                text: "handbook.md › Trains\nThe 7:40 to Lyon leaves from platform 4.".into(),
                ..excerpt.entry.clone()
            },
            ..excerpt.clone()
        };
        let history = history(6);
        let parts = Parts {
            soul: Some("You are Ada."),
            facts: &facts,
            knowledge: std::slice::from_ref(&passage),
            excerpts: std::slice::from_ref(&excerpt),
            summary: Some(&summary),
            history: &history,
            input: "hi",
        };
        let composed = compose(&parts, 10_000, &Estimate, now);
        let block = composed.messages[0].text();
        assert_eq!(composed.messages[0].role, Role::System);
        let order = [
            "You are Ada.",
            "lives in: Lyon (previously: Paris)",
            "## From the knowledge base\n\n### handbook.md › Trains\nThe 7:40 to Lyon leaves from platform 4.",
            "(today, the user said) My sister lives in Lisbon.",
            "We talked about trains.",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|s| block.find(s).unwrap_or_else(|| panic!("{s} missing from {block}")))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{block}");
        assert_eq!(composed.window_start, 2, "archived messages are left to the summary");
        assert_eq!(&composed.messages[1..], &history[2..]);
        assert_eq!((composed.facts, composed.knowledge, composed.excerpts), (1, 1, 1));
    }

    #[test]
    fn a_knowledge_passage_over_its_share_is_left_out_and_a_smaller_one_kept() {
        let now = Utc::now();
        let passage = |id: i64, text: String| Hit {
            entry: MemoryEntry {
                id,
                owner: "knowledge:*".into(),
                session: SessionId::new(),
                kind: EntryKind::Knowledge,
                seq: 0,
                role: None,
                text,
                created_at: now,
            },
            score: 1.0,
            text_rank: Some(0),
            embedding_rank: None,
        };
        let hits = [
            passage(1, format!("big.md\n{}", "long ".repeat(300))),
            passage(2, "small.md › Hours\nOpen from nine to five.".into()),
        ];
        let parts = Parts { knowledge: &hits, input: "hours?", ..Parts::default() };
        // An eighth of 2,000 tokens is 250: the 1,500-byte passage (500 estimated) does not fit.
        let composed = compose(&parts, 2_000, &Estimate, now);
        let block = composed.messages[0].text();
        assert!(block.contains("### small.md › Hours\nOpen from nine to five."), "{block}");
        assert!(!block.contains("big.md"), "{block}");
        assert_eq!(composed.knowledge, 1);
    }

    fn facts_template(now: DateTime<Utc>) -> Fact {
        Fact {
            id: 0,
            owner: "u".into(),
            subject: "user".into(),
            predicate: "lives_in".into(),
            object: String::new(),
            confidence: 0.7,
            source: None,
            learned_at: now,
            valid_from: now,
            invalidated_at: None,
            superseded_by: None,
        }
    }

    #[test]
    fn a_huge_soul_is_cut_to_its_share() {
        let soul = "be kind ".repeat(5_000);
        let parts = Parts { soul: Some(&soul), input: "hi", ..Parts::default() };
        let composed = compose(&parts, 2_000, &Estimate, Utc::now());
        assert!(total(&composed, "hi") <= 2_000);
        assert!(composed.messages[0].text().ends_with("[…]"));
    }

    #[test]
    fn the_window_never_opens_on_orphaned_tool_results() {
        let call = Message::new(
            Role::Assistant,
            vec![Part::ToolCall(ToolCall {
                id: "c".into(),
                name: "read".into(),
                arguments: serde_json::json!({"path": "x".repeat(600)}),
            })],
        );
        let result = Message::new(
            Role::Tool,
            vec![Part::ToolResult(ToolResult { call_id: "c".into(), content: "ok".into(), is_error: false })],
        );
        let history = vec![Message::user("read it"), call, result, Message::assistant("done")];
        let parts = Parts { history: &history, input: "next", ..Parts::default() };
        // Room for the last two messages only: the call does not fit, so its result goes too.
        let budget = Estimate.message(&history[2])
            + Estimate.message(&history[3])
            + Estimate.count("next")
            + MESSAGE_OVERHEAD;
        let composed = compose(&parts, budget, &Estimate, Utc::now());
        assert_eq!(composed.messages, &history[3..]);
    }
}
