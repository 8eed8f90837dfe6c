//! Progress while a turn's tools run, the same on every platform: when the turn starts its first
//! tool call, one short message says so ("Working… running `read_file`"), edited as further tools
//! run (at most once per [`INTERVAL`], changes in between coalesced into the next edit), and when
//! the turn ends the answer is edited into it — its first piece when it is longer than one
//! message, the rest posted after. A turn that calls no tool posts its answer as before, with no
//! progress message. An edit that fails is logged and the whole answer posted instead, so it is
//! never lost.
//!
//! When the turn asked for an approval, its prompt was posted below the progress message: the
//! answer is then posted below the prompt (where the asker is looking), and the progress message
//! is edited into the list of what ran.
//!
//! Each platform supplies only the posting and editing ([`Place`]).

use crate::split::split_message;
use async_trait::async_trait;
use exoclaw_core::runtime::{Outbox, OutgoingFile, TurnHandle};
use exoclaw_types::AgentEvent;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two progress edits of one message (platforms rate-limit edits;
/// Slack allows about one a second per channel). The final edit, with the answer, never waits.
pub(crate) const INTERVAL: Duration = Duration::from_millis(1_500);

/// How many kinds of tool a progress message names before it counts the earlier ones.
const SHOWN: usize = 6;

/// Where a turn's answer goes, on one platform: the calls progress needs.
#[async_trait]
pub(crate) trait Place: Send + Sync + 'static {
    /// What names a posted message for editing (Slack's `ts`, Telegram's `message_id`, …).
    type Id: Send + Sync;

    /// The characters of one message.
    fn limit(&self) -> usize;

    /// Posts `text` (short: within [`Place::limit`]) where the answer goes; the message's id.
    async fn post(&self, text: &str) -> Result<Self::Id, String>;

    /// Replaces the text of the message `id` with `text` (within [`Place::limit`]).
    async fn edit(&self, id: &Self::Id, text: &str) -> Result<(), String>;

    /// Posts one more piece of an answer whose first piece was edited in.
    async fn more(&self, text: &str) -> Result<(), String> {
        self.post(text).await.map(|_| ())
    }

    /// Sends the whole answer as new messages, cut at the limit; failures are logged. A turn
    /// without tools, and the fallback when an edit fails.
    async fn answer(&self, answer: &str);

    /// The largest file it takes from the agent (`send_file`); 0: none (the tool is not offered).
    fn max_file_bytes(&self) -> u64 {
        0
    }

    /// Uploads `file` (its content `bytes`) after the answer.
    async fn send_file(&self, file: &OutgoingFile, bytes: Vec<u8>) -> Result<(), String> {
        let _ = (file, bytes);
        Err("this chat takes no files".to_owned())
    }
}

/// What became of one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Ran,
    Failed,
}

/// One tool call of the turn.
#[derive(Debug)]
struct Step {
    id: String,
    name: String,
    state: State,
}

/// The tool calls of a turn so far, read from its events, and the progress text they make.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    steps: Vec<Step>,
    /// Whether the turn asked someone to approve a call (a prompt was posted after the progress
    /// message).
    asked: bool,
}

impl Steps {
    /// Takes in one event of the turn; whether the progress text changed.
    pub(crate) fn see(&mut self, event: &AgentEvent) -> bool {
        match event {
            AgentEvent::ToolUse { call } => {
                self.steps.push(Step { id: call.id.clone(), name: call.name.clone(), state: State::Running });
                true
            }
            AgentEvent::ToolResult { call_id, is_error, .. } => {
                let step = self.steps.iter_mut().find(|s| s.id == *call_id && s.state == State::Running);
                match step {
                    Some(step) => {
                        step.state = if *is_error { State::Failed } else { State::Ran };
                        true
                    }
                    None => false,
                }
            }
            AgentEvent::ApprovalNeeded { .. } => {
                self.asked = true;
                false
            }
            AgentEvent::TurnStarted { .. }
            | AgentEvent::Text { .. }
            | AgentEvent::Thinking { .. }
            | AgentEvent::Usage { .. }
            | AgentEvent::Warning { .. }
            | AgentEvent::Error { .. }
            | AgentEvent::Done { .. } => false,
        }
    }

    /// "Working… ran `read_file` ×2, running `shell`".
    pub(crate) fn text(&self) -> String {
        let done = self.groups(|state| state != State::Running);
        let running = self.groups(|state| state == State::Running);
        let mut parts = Vec::new();
        if !done.is_empty() {
            parts.push(format!("ran {done}"));
        }
        if !running.is_empty() {
            parts.push(format!("running {running}"));
        }
        format!("Working… {}", parts.join(", "))
    }

    /// What ran, once the turn is over: "Ran `read_file` ×2, `shell` (failed)."
    pub(crate) fn summary(&self) -> String {
        format!("Ran {}.", self.groups(|_| true))
    }

    /// The calls in `state`s `wanted`, one entry per run of the same tool ending the same way
    /// (`read_file` ×3), the earliest counted when there are many.
    fn groups(&self, wanted: impl Fn(State) -> bool) -> String {
        let mut groups: Vec<(&str, State, usize)> = Vec::new();
        for step in self.steps.iter().filter(|s| wanted(s.state)) {
            match groups.last_mut() {
                Some((name, state, count)) if *name == step.name && *state == step.state => *count += 1,
                _ => groups.push((&step.name, step.state, 1)),
            }
        }
        let earlier: usize = groups.len().saturating_sub(SHOWN);
        let earlier_calls: usize = groups[..earlier].iter().map(|(_, _, count)| count).sum();
        let mut shown: Vec<String> = groups[earlier..]
            .iter()
            .map(|(name, state, count)| {
                let times = if *count > 1 { format!(" ×{count}") } else { String::new() };
                let failed = if *state == State::Failed { " (failed)" } else { "" };
                format!("`{name}`{times}{failed}")
            })
            .collect();
        if earlier_calls > 0 {
            shown.insert(0, format!("{earlier_calls} earlier"));
        }
        shown.join(", ")
    }
}

/// Follows the turn `handle` to its end and delivers its answer to `place`, then the files its
/// agent sent (put in `outbox`): with a progress message while its tools run when `interval` is
/// given (the shortest time between two edits), without (the answer posted at the end, as before)
/// when it is `None`.
pub(crate) async fn follow<P: Place>(
    handle: TurnHandle,
    place: P,
    interval: Option<Duration>,
    outbox: Option<Outbox>,
) {
    answer(handle, &place, interval).await;
    if let Some(outbox) = outbox {
        crate::files::send_all(&place, outbox.take()).await;
    }
}

async fn answer<P: Place>(mut handle: TurnHandle, place: &P, interval: Option<Duration>) {
    let Some(interval) = interval else {
        place.answer(&handle.reply_text().await).await;
        return;
    };
    let mut steps = Steps::default();
    let mut message: Option<P::Id> = None;
    // A progress message that could not be posted is not tried again for this turn.
    let mut gave_up = false;
    // What the progress message shows, and when it was last posted or edited.
    let mut shown = String::new();
    let mut last = Instant::now();
    // Whether the progress text changed since it was last shown.
    let mut pending = false;
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                Some(event) => pending |= steps.see(&event) && !gave_up,
                None => break,
            },
            () = tokio::time::sleep_until(last + interval), if pending && message.is_some() => {}
        }
        if !pending {
            continue;
        }
        match &message {
            // The first tool call: shown at once.
            None => {
                let text = steps.text();
                match place.post(&text).await {
                    Ok(id) => {
                        message = Some(id);
                        shown = text;
                    }
                    Err(error) => {
                        tracing::warn!(
                            "a progress message could not be posted (the answer will be): {error}"
                        );
                        gave_up = true;
                    }
                }
                last = Instant::now();
                pending = false;
            }
            Some(id) if last.elapsed() >= interval => {
                let text = steps.text();
                if text != shown {
                    match place.edit(id, &text).await {
                        Ok(()) => shown = text,
                        Err(error) => tracing::warn!("a progress message could not be edited: {error}"),
                    }
                }
                last = Instant::now();
                pending = false;
            }
            // Too soon after the last edit: the timer above shows it when the interval is up.
            Some(_) => {}
        }
    }
    let answer = handle.reply_text().await;
    match message {
        None => place.answer(&answer).await,
        Some(id) if steps.asked => {
            // A prompt was posted below the progress message: the answer goes below the prompt,
            // where the asker is reading, and the progress message keeps the record of the tools.
            if let Err(error) = place.edit(&id, &steps.summary()).await {
                tracing::warn!("a progress message could not be edited: {error}");
            }
            place.answer(&answer).await;
        }
        Some(id) => deliver(place, &id, &answer).await,
    }
}

/// Edits `answer`'s first piece into the progress message `id` and posts the rest after it; when
/// the edit fails, posts the whole answer instead (the progress message stays as it was).
async fn deliver<P: Place>(place: &P, id: &P::Id, answer: &str) {
    let pieces = split_message(answer, place.limit());
    let (first, rest) = match pieces.split_first() {
        Some((first, rest)) => (first.as_str(), rest),
        None => (answer, &[][..]),
    };
    if let Err(error) = place.edit(id, first).await {
        tracing::warn!(
            "the answer could not be edited into the progress message; posting it instead: {error}"
        );
        place.answer(answer).await;
        return;
    }
    for piece in rest {
        if let Err(error) = place.more(piece).await {
            tracing::warn!("the rest of an answer could not be posted: {error}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_core::EventSink;
    use exoclaw_types::ToolCall;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// A place that records what a user would see happen: posts and edits, by message number.
    #[derive(Clone, Default)]
    struct Seen {
        log: Arc<Mutex<Vec<String>>>,
        /// Whether edits fail.
        refuse_edits: bool,
    }

    impl Seen {
        fn log(&self) -> Vec<String> {
            self.log.lock().map(|log| log.clone()).unwrap_or_default()
        }

        fn push(&self, line: String) -> usize {
            let mut log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            log.push(line);
            log.len()
        }
    }

    #[async_trait]
    impl Place for Seen {
        type Id = usize;

        fn limit(&self) -> usize {
            40
        }

        async fn post(&self, text: &str) -> Result<usize, String> {
            Ok(self.push(format!("post: {text}")))
        }

        async fn edit(&self, id: &usize, text: &str) -> Result<(), String> {
            if self.refuse_edits {
                return Err("refused".to_owned());
            }
            self.push(format!("edit {id}: {text}"));
            Ok(())
        }

        async fn answer(&self, answer: &str) {
            self.push(format!("answer: {answer}"));
        }
    }

    /// A finished turn whose events are `events`: its handle. Its report is lost, so its answer
    /// is "Sorry — that failed: …".
    fn turn(events: Vec<AgentEvent>) -> TurnHandle {
        let (handle, sender) = exoclaw_core::runtime::turn_channel(Default::default());
        for event in events {
            sender.emit(event);
        }
        drop(sender);
        handle
    }

    fn answer_of_a_lost_turn() -> String {
        format!("Sorry — that failed: {}", exoclaw_core::runtime::TurnError::Lost)
    }

    #[tokio::test]
    async fn changes_within_the_interval_are_not_edited_in_but_the_answer_always_is() {
        let seen = Seen::default();
        let events = vec![used("1", "a"), result("1", "a", false), used("2", "b"), result("2", "b", false)];
        follow(turn(events), seen.clone(), Some(Duration::from_secs(3_600)), None).await;
        let pieces = split_message(&answer_of_a_lost_turn(), 40);
        assert!(pieces.len() > 1, "the answer is longer than a message");
        let mut expected = vec!["post: Working… running `a`".to_owned(), format!("edit 1: {}", pieces[0])];
        expected.extend(pieces[1..].iter().map(|piece| format!("post: {piece}")));
        assert_eq!(seen.log(), expected);
    }

    #[tokio::test]
    async fn with_no_interval_every_change_is_shown() {
        let seen = Seen::default();
        let events = vec![used("1", "a"), result("1", "a", false), used("2", "b")];
        follow(turn(events), seen.clone(), Some(Duration::ZERO), None).await;
        let log = seen.log();
        assert_eq!(
            log[..3],
            [
                "post: Working… running `a`".to_owned(),
                "edit 1: Working… ran `a`".to_owned(),
                "edit 1: Working… ran `a`, running `b`".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_edit_sends_the_whole_answer_and_no_tools_no_progress() {
        let seen = Seen { refuse_edits: true, ..Seen::default() };
        follow(turn(vec![used("1", "a")]), seen.clone(), Some(Duration::ZERO), None).await;
        assert_eq!(
            seen.log(),
            ["post: Working… running `a`".to_owned(), format!("answer: {}", answer_of_a_lost_turn())]
        );

        let seen = Seen::default();
        follow(turn(vec![AgentEvent::Text { text: "hi".into() }]), seen.clone(), Some(Duration::ZERO), None)
            .await;
        assert_eq!(seen.log(), [format!("answer: {}", answer_of_a_lost_turn())]);
    }

    fn used(id: &str, name: &str) -> AgentEvent {
        AgentEvent::ToolUse { call: ToolCall { id: id.into(), name: name.into(), arguments: json!({}) } }
    }

    fn result(id: &str, name: &str, is_error: bool) -> AgentEvent {
        AgentEvent::ToolResult {
            call_id: id.into(),
            name: name.into(),
            content: String::new(),
            is_error,
            duration_ms: 1,
        }
    }

    #[test]
    fn the_progress_text_says_what_ran_and_what_runs() {
        let mut steps = Steps::default();
        assert!(!steps.see(&AgentEvent::Text { text: "hm".into() }));
        assert!(steps.see(&used("1", "read_file")));
        assert_eq!(steps.text(), "Working… running `read_file`");
        assert!(steps.see(&result("1", "read_file", false)));
        assert!(steps.see(&used("2", "read_file")));
        assert!(steps.see(&result("2", "read_file", false)));
        assert!(steps.see(&used("3", "shell")));
        assert_eq!(steps.text(), "Working… ran `read_file` ×2, running `shell`");
        assert!(steps.see(&result("3", "shell", true)));
        assert!(!steps.see(&result("3", "shell", false)), "a call ends once");
        assert_eq!(steps.text(), "Working… ran `read_file` ×2, `shell` (failed)");
        assert_eq!(steps.summary(), "Ran `read_file` ×2, `shell` (failed).");
    }

    #[test]
    fn many_tools_are_counted_not_listed() {
        let mut steps = Steps::default();
        for (i, name) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().enumerate() {
            steps.see(&used(&i.to_string(), name));
            steps.see(&result(&i.to_string(), name, false));
        }
        assert_eq!(steps.text(), "Working… ran 2 earlier, `c`, `d`, `e`, `f`, `g`, `h`");
    }
}
