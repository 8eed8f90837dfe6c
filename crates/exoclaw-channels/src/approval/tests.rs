//! The waiting list and the prompts, without a platform: a place that records what it was asked
//! to post and edit.

#![allow(clippy::unwrap_used)]

use super::*;
use exoclaw_core::{Permission, Resource, Rule};
use exoclaw_types::{ToolCall, ToolEffect};
use serde_json::json;

/// A prompt's text and buttons.
type Posted = (String, Vec<Button>);

/// Records the prompts posted and the edits made.
#[derive(Clone, Default)]
struct Recorder {
    posted: Arc<Mutex<Vec<Posted>>>,
    closed: Arc<Mutex<Vec<String>>>,
    fail: bool,
}

#[async_trait]
impl Place for Recorder {
    fn markup(&self) -> Markup {
        Markup::Slack
    }

    async fn post(&self, text: &str, buttons: &[Button]) -> Result<String, String> {
        if self.fail {
            return Err("channel_not_found".into());
        }
        self.posted.lock().unwrap().push((text.to_owned(), buttons.to_vec()));
        Ok("1.1".into())
    }

    async fn close(&self, _posted: &str, text: &str) {
        self.closed.lock().unwrap().push(text.to_owned());
    }
}

fn request(remember: bool) -> ApprovalRequest {
    let call =
        ToolCall { id: "c1".into(), name: "shell".into(), arguments: json!({"command": "rm -rf <target>"}) };
    let mut request = ApprovalRequest::new(call, ToolEffect::Mutating);
    request.resources = vec![Resource::Command("rm -rf <target>".into())];
    request.confinement = Some("the sandbox & no network".into());
    if remember {
        request.remember = vec![Rule::new("shell", Permission::Allow).command("rm")];
    }
    request
}

/// Starts asking on its own task; the buttons once the prompt is posted.
async fn asked(
    approvals: &Approvals,
    place: &Recorder,
    remember: bool,
) -> (tokio::task::JoinHandle<Decision>, Vec<Button>) {
    let approver = approvals.approver("U1", "<@U1>".into(), "C1", place.clone()).unwrap();
    let task = tokio::spawn(async move { approver.approve(&request(remember)).await });
    for _ in 0..200 {
        if let Some((_, buttons)) = place.posted.lock().unwrap().first() {
            return (task, buttons.clone());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no prompt was posted");
}

#[tokio::test]
async fn only_the_asker_answers_and_a_second_press_is_stale() {
    let approvals = Approvals::default();
    let place = Recorder::default();
    let (task, buttons) = asked(&approvals, &place, true).await;
    let labels: Vec<&str> = buttons.iter().map(|b| b.choice.label()).collect();
    assert_eq!(labels, ["Approve", "Approve for this session", "Deny"]);
    let session = &buttons[1].value;
    assert!(session.len() <= 64, "within Telegram's callback data: {session}");

    assert_eq!(approvals.press(session, "U2", "C1"), Pressed::NotYours { asker: "U1".into() });
    assert_eq!(approvals.press(session, "U1", "C9"), Pressed::Stale, "a press from another conversation");
    let Pressed::Answered { decision, prompt } = approvals.press(session, "U1", "C1") else { panic!() };
    assert_eq!(decision, Decision::ApproveForSession);
    assert!(prompt.contains("`shell`"), "{prompt}");
    assert_eq!(task.await.unwrap(), Decision::ApproveForSession);
    assert_eq!(approvals.press(&buttons[2].value, "U1", "C1"), Pressed::Stale);
    assert!(place.closed.lock().unwrap().is_empty(), "the press's platform edits the prompt");
}

#[tokio::test]
async fn the_askers_reaction_to_the_prompt_answers_it_and_others_change_nothing() {
    let approvals = Approvals::default();
    let place = Recorder::default();
    let (task, _) = asked(&approvals, &place, true).await;
    // The prompt's id is kept once its post returns.
    while !approvals.lock().values().any(|request| request.posted.is_some()) {
        tokio::task::yield_now().await;
    }
    assert_eq!(approvals.react("1.1", "👍🏽", "U2", "C1"), Pressed::NotYours { asker: "U1".into() });
    assert_eq!(approvals.react("1.1", "eyes", "U1", "C1"), Pressed::Stale, "not an answer");
    assert_eq!(approvals.react("9.9", "✅", "U1", "C1"), Pressed::Stale, "another message");
    assert_eq!(approvals.react("1.1", "x", "U1", "C9"), Pressed::Stale, "another conversation");
    let Pressed::Answered { decision, .. } = approvals.react("1.1", "x", "U1", "C1") else { panic!() };
    assert_eq!(decision, Decision::Deny);
    assert_eq!(task.await.unwrap(), Decision::Deny);
    assert_eq!(approvals.react("1.1", "white_check_mark", "U1", "C1"), Pressed::Stale, "answered already");
}

#[test]
fn reactions_read_as_approve_or_deny_in_both_spellings() {
    for emoji in ["✅", "👍", "👍🏿", "+1", "+1::skin-tone-3", "white_check_mark", ":heavy_check_mark:"]
    {
        assert_eq!(reaction_choice(emoji), Some(Choice::Approve), "{emoji}");
    }
    for emoji in ["❌", "👎", "-1", "x", "no_entry", "⛔"] {
        assert_eq!(reaction_choice(emoji), Some(Choice::Deny), "{emoji}");
    }
    for emoji in ["eyes", "🎉", "heart", ""] {
        assert_eq!(reaction_choice(emoji), None, "{emoji}");
    }
}

#[tokio::test]
async fn for_this_session_is_offered_only_when_the_call_can_be_remembered() {
    let approvals = Approvals::default();
    let place = Recorder::default();
    let (task, buttons) = asked(&approvals, &place, false).await;
    let labels: Vec<&str> = buttons.iter().map(|b| b.choice.label()).collect();
    assert_eq!(labels, ["Approve", "Deny"]);
    // A forged "session" press approves this call once.
    let id = parse_button(&buttons[0].value).unwrap().0.to_owned();
    let forged = format!("approval:{id}:session");
    assert!(matches!(
        approvals.press(&forged, "U1", "C1"),
        Pressed::Answered { decision: Decision::Approve, .. }
    ));
    assert_eq!(task.await.unwrap(), Decision::Approve);
}

#[tokio::test]
async fn nobody_answering_in_time_denies_and_says_so() {
    let approvals = Approvals::new(ApprovalMode::Ask, Duration::from_millis(50));
    let place = Recorder::default();
    let (task, buttons) = asked(&approvals, &place, true).await;
    assert_eq!(task.await.unwrap(), Decision::Deny);
    let closed = place.closed.lock().unwrap().clone();
    assert_eq!(closed.len(), 1);
    assert!(closed[0].ends_with("Nobody answered within 50 ms: denied."), "{}", closed[0]);
    assert_eq!(approvals.press(&buttons[0].value, "U1", "C1"), Pressed::Stale, "too late");
}

#[tokio::test]
async fn a_prompt_that_cannot_be_posted_asks_nobody_and_refuses() {
    let approvals = Approvals::default();
    let place = Recorder { fail: true, ..Recorder::default() };
    let approver = approvals.approver("U1", "<@U1>".into(), "C1", place).unwrap();
    assert_eq!(approver.approve(&request(true)).await, Decision::Unattended);
    assert!(approvals.lock().is_empty(), "nothing is left waiting");
}

#[test]
fn refusing_gives_no_approver() {
    let approvals = Approvals::new(ApprovalMode::Refuse, Duration::from_secs(1));
    assert!(approvals.approver("U1", "<@U1>".into(), "C1", Recorder::default()).is_none());
}

#[test]
fn the_prompt_escapes_what_the_model_wrote_in_each_markup() {
    let slack = prompt::render(Markup::Slack, &request(true), "<@U1>");
    assert!(slack.contains("```{\n  \"command\": \"rm -rf &lt;target&gt;\"\n}```"), "{slack}");
    assert!(slack.contains("Touches: command `rm -rf &lt;target&gt;`"), "{slack}");
    assert!(slack.contains("Runs in: the sandbox &amp; no network"), "{slack}");
    assert!(slack.ends_with("Only <@U1> can answer (a button, or react ✅ or ❌)."), "{slack}");

    let telegram = prompt::render(Markup::TelegramHtml, &request(true), "@alice");
    assert!(telegram.contains("<pre>{\n  \"command\": \"rm -rf &lt;target&gt;\"\n}</pre>"), "{telegram}");
    assert!(telegram.contains("<b>Approval needed:</b>"), "{telegram}");

    let mut fenced = request(true);
    fenced.call.arguments = json!({"text": "```\n@everyone"});
    let discord = prompt::render(Markup::Discord, &fenced, "<@U1>");
    assert!(!discord.contains("\\n```\\n@everyone"), "{discord}");
    assert_eq!(discord.matches("```").count(), 2, "the arguments cannot close the code block: {discord}");
}

#[test]
fn long_arguments_are_cut() {
    let mut long = request(true);
    long.call.arguments = json!({"text": "é".repeat(2_000)});
    let text = prompt::render(Markup::Discord, &long, "<@U1>");
    assert!(text.contains('…'));
    assert!(text.chars().count() < 1_200, "{}", text.chars().count());
}

#[test]
fn the_timeout_reads_as_people_say_it() {
    assert_eq!(prompt::timed_out(Duration::from_secs(300)), "⌛ Nobody answered within 5 minutes: denied.");
    assert_eq!(prompt::timed_out(Duration::from_secs(90)), "⌛ Nobody answered within 90 seconds: denied.");
}
