//! Approvals of gated tool calls, asked in the chat. When a turn's tool call needs a person's
//! approval (the agent's permissions say `ask`), the channel posts a prompt where the message was
//! asked — what the tool would do, with "Approve", "Approve for this session" (when the call can
//! be remembered) and "Deny" buttons — and waits for the person whose message started the turn to
//! press one. [`Approvals`] owns the requests waiting: a press by anyone else is refused and
//! changes nothing, a press after the answer (or after the timeout) is ignored, and a prompt
//! nobody answers within the timeout denies the call and says so.
//!
//! "Always" is not offered in a chat: it would write the operator's permissions file on a chat
//! user's say-so.
//!
//! - `prompt.rs`: the prompt's text in each platform's markup.
//! - `slack.rs`, `telegram.rs`, `discord.rs`: posting the prompt and taking the presses there.

pub(crate) mod discord;
mod prompt;
pub(crate) mod slack;
pub(crate) mod telegram;

pub(crate) use prompt::Markup;

use async_trait::async_trait;
use exoclaw_core::{ApprovalRequest, Approver, Decision};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// `[channels] approval_timeout_secs` when unset: five minutes.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// The longest `[channels] approval_timeout_secs`: a day (a turn waiting longer holds its session).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// What a button's value starts with.
const BUTTON_PREFIX: &str = "approval:";

/// `[channels] approvals`: what the chat channels do with a tool call the agent's permissions say
/// to ask about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Ask the person whose message started the turn, with buttons in the chat (Slack, Telegram,
    /// Discord; the KĀDI broker has no buttons and refuses).
    #[default]
    Ask,
    /// Ask nobody: the call is refused and the model told it needs an approval that cannot be
    /// given here.
    Refuse,
}

/// The approval requests waiting in the chats, shared by every channel of a runtime (Discord's
/// Gateway and its Interactions endpoint take presses of each other's prompts), with the mode and
/// the timeout. Cheap to clone: clones share the requests.
#[derive(Clone)]
pub struct Approvals {
    mode: ApprovalMode,
    timeout: Duration,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("mode", &self.mode)
            .field("timeout", &self.timeout)
            .field("waiting", &self.lock().len())
            .finish()
    }
}

impl Default for Approvals {
    /// Asking, with the default timeout.
    fn default() -> Self {
        Self::new(ApprovalMode::Ask, Duration::from_secs(DEFAULT_TIMEOUT_SECS))
    }
}

/// One request waiting for its answer.
struct Waiting {
    answer: oneshot::Sender<Decision>,
    /// The platform's id of the only user who may answer.
    asker: String,
    /// The conversation (channel, chat) the prompt was posted in: a press from elsewhere is not
    /// an answer to it.
    conversation: String,
    /// The prompt's text as posted, to which the answer is added when it comes.
    prompt: String,
    /// Whether "for this session" was offered.
    for_session: bool,
    /// The posted prompt's id on its platform (Slack's `ts`, Discord's message id), once posted:
    /// a reaction to it answers it.
    posted: Option<String>,
}

/// What a press of a prompt's button did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pressed {
    /// The asker answered; `prompt` is what the prompt said, to be edited into the answer.
    Answered {
        /// Their answer.
        decision: Decision,
        /// The prompt's text as posted.
        prompt: String,
    },
    /// Someone else pressed: nothing changed, and they are told who may answer.
    NotYours {
        /// The platform's id of the user who may.
        asker: String,
    },
    /// No request waits under that id (answered, timed out, or not this runtime's): ignored.
    Stale,
}

/// A prompt's button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// "Approve": this call, once.
    Approve,
    /// "Approve for this session": this call and the calls like it, in this conversation.
    ForSession,
    /// "Deny".
    Deny,
}

impl Choice {
    fn key(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::ForSession => "session",
            Self::Deny => "deny",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "approve" => Some(Self::Approve),
            "session" => Some(Self::ForSession),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }

    /// The button's label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Approve => "Approve",
            Self::ForSession => "Approve for this session",
            Self::Deny => "Deny",
        }
    }
}

/// A button of a posted prompt: its choice and the value the platform hands back when pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Button {
    pub choice: Choice,
    /// `approval:{id}:{choice}`: at most 49 bytes, within Telegram's 64 for callback data and
    /// Discord's 100 for a custom id.
    pub value: String,
}

/// The request id and choice a button's value carries, if it is one of ours.
pub(crate) fn parse_button(value: &str) -> Option<(&str, Choice)> {
    let (id, choice) = value.strip_prefix(BUTTON_PREFIX)?.split_once(':')?;
    Some((id, Choice::from_key(choice)?))
}

/// Where one turn's prompts go, on one platform.
#[async_trait]
pub(crate) trait Place: Send + Sync + 'static {
    /// The platform's markup.
    fn markup(&self) -> Markup;
    /// Posts the prompt `text` with `buttons`; what identifies the posted message to
    /// [`Place::close`], or why it could not be posted.
    async fn post(&self, text: &str, buttons: &[Button]) -> Result<String, String>;
    /// Replaces the posted prompt with `text`, without buttons; a failure is logged.
    async fn close(&self, posted: &str, text: &str);
}

impl Approvals {
    /// Approvals in `mode`, a prompt waiting at most `timeout` for its answer.
    pub fn new(mode: ApprovalMode, timeout: Duration) -> Self {
        Self { mode, timeout, waiting: Arc::default() }
    }

    /// As `[channels]` configures them.
    pub fn from_config(config: &crate::ChannelsConfig) -> Self {
        Self::new(config.approvals, Duration::from_secs(config.approval_timeout_secs))
    }

    /// Whether calls are asked about in the chat or refused.
    pub fn mode(&self) -> ApprovalMode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The approver of a turn started by `asker` (shown as `shown`, in the platform's markup) in
    /// `conversation`, posting its prompts to `place`; `None` when approvals are refused (the
    /// agent's own approver then refuses, as for any unattended turn).
    pub(crate) fn approver(
        &self,
        asker: &str,
        shown: String,
        conversation: &str,
        place: impl Place,
    ) -> Option<Arc<dyn Approver>> {
        match self.mode {
            ApprovalMode::Ask => Some(Arc::new(ChatApprover {
                approvals: self.clone(),
                asker: asker.to_owned(),
                shown,
                conversation: conversation.to_owned(),
                place,
            })),
            ApprovalMode::Refuse => None,
        }
    }

    /// A press of the button `value` by `presser` in `conversation`: the request answered (and
    /// forgotten), or why not. A value that is not one of ours is [`Pressed::Stale`].
    pub(crate) fn press(&self, value: &str, presser: &str, conversation: &str) -> Pressed {
        let Some((id, choice)) = parse_button(value) else { return Pressed::Stale };
        self.answer(id, choice, presser, conversation)
    }

    /// A reaction `emoji` (as the platform names it: `✅` on Discord, `white_check_mark` on
    /// Slack) by `reactor` to the message `message` in `conversation`: an approval (✅ 👍) or a
    /// denial (❌ 👎 ⛔) of the prompt posted as that message, by the asker only; any other
    /// reaction, or one to another message, is [`Pressed::Stale`].
    pub(crate) fn react(&self, message: &str, emoji: &str, reactor: &str, conversation: &str) -> Pressed {
        let Some(choice) = reaction_choice(emoji) else { return Pressed::Stale };
        let id = self
            .lock()
            .iter()
            .find(|(_, request)| request.posted.as_deref() == Some(message))
            .map(|(id, _)| id.clone());
        match id {
            Some(id) => self.answer(&id, choice, reactor, conversation),
            None => Pressed::Stale,
        }
    }

    /// The request `id` answered with `choice` by `presser` in `conversation`, if they may.
    fn answer(&self, id: &str, choice: Choice, presser: &str, conversation: &str) -> Pressed {
        let mut waiting = self.lock();
        match waiting.get(id) {
            None => return Pressed::Stale,
            Some(request) if request.conversation != conversation => return Pressed::Stale,
            Some(request) if request.asker != presser => {
                return Pressed::NotYours { asker: request.asker.clone() };
            }
            Some(_) => {}
        }
        match waiting.remove(id) {
            None => Pressed::Stale,
            Some(request) => {
                let decision = match choice {
                    Choice::Approve => Decision::Approve,
                    // Not offered (an explicit `ask` rule): a forged press approves once only.
                    Choice::ForSession if request.for_session => Decision::ApproveForSession,
                    Choice::ForSession => Decision::Approve,
                    Choice::Deny => Decision::Deny,
                };
                // The turn may have ended meanwhile (cancelled): then nobody is listening.
                let _ = request.answer.send(decision);
                Pressed::Answered { decision, prompt: request.prompt }
            }
        }
    }

    /// Takes the request `id` off the waiting list; whether it was still there.
    fn forget(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }
}

/// The approver of one chat turn: asks its asker in its conversation.
struct ChatApprover<P> {
    approvals: Approvals,
    asker: String,
    shown: String,
    conversation: String,
    place: P,
}

/// Forgets a request when its approver stops waiting for any reason (the turn cancelled
/// included), so a later press finds nothing.
struct Forget<'a> {
    approvals: &'a Approvals,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.approvals.forget(self.id);
    }
}

#[async_trait]
impl<P: Place> Approver for ChatApprover<P> {
    async fn approve(&self, request: &ApprovalRequest) -> Decision {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let markup = self.place.markup();
        let text = prompt::render(markup, request, &self.shown);
        let for_session = !request.remember.is_empty();
        let buttons: Vec<Button> = [Choice::Approve, Choice::ForSession, Choice::Deny]
            .into_iter()
            .filter(|choice| *choice != Choice::ForSession || for_session)
            .map(|choice| Button { choice, value: format!("{BUTTON_PREFIX}{id}:{}", choice.key()) })
            .collect();
        let (answer, mut answered) = oneshot::channel();
        self.approvals.lock().insert(
            id.clone(),
            Waiting {
                answer,
                asker: self.asker.clone(),
                conversation: self.conversation.clone(),
                prompt: text.clone(),
                for_session,
                posted: None,
            },
        );
        let _forget = Forget { approvals: &self.approvals, id: &id };
        let posted = match self.place.post(&text, &buttons).await {
            Ok(posted) => posted,
            Err(error) => {
                tracing::warn!(tool = %request.call.name, "an approval prompt could not be posted: {error}");
                return Decision::Unattended;
            }
        };
        if let Some(request) = self.approvals.lock().get_mut(&id) {
            request.posted = Some(posted.clone());
        }
        match tokio::time::timeout(self.approvals.timeout, &mut answered).await {
            Ok(Ok(decision)) => decision,
            // The waiting list was dropped: nobody can answer any more.
            Ok(Err(_)) => Decision::Deny,
            Err(_) if self.approvals.forget(&id) => {
                let note = prompt::timed_out(self.approvals.timeout);
                self.place.close(&posted, &format!("{text}\n\n{note}")).await;
                Decision::Deny
            }
            // Answered just as the time ran out: the answer stands.
            Err(_) => answered.try_recv().unwrap_or(Decision::Deny),
        }
    }
}

/// What a reaction answers: ✅ ☑️ ✔️ 👍 approve this call once, ❌ ⛔ 🚫 👎 deny it (skin tones
/// and Slack's names for them alike).
fn reaction_choice(emoji: &str) -> Option<Choice> {
    const APPROVE: [&str; 8] =
        ["✅", "☑️", "✔️", "white_check_mark", "ballot_box_with_check", "heavy_check_mark", "+1", "thumbsup"];
    const DENY: [&str; 8] = ["❌", "⛔", "🚫", "x", "no_entry", "no_entry_sign", "-1", "thumbsdown"];
    // Slack adds the skin tone after `::`; Discord's emoji carry it as a modifier.
    let emoji = emoji.split("::").next().unwrap_or(emoji).trim_matches(':');
    if APPROVE.contains(&emoji) || emoji.starts_with('👍') {
        Some(Choice::Approve)
    } else if DENY.contains(&emoji) || emoji.starts_with('👎') {
        Some(Choice::Deny)
    } else {
        None
    }
}

/// The line a prompt ends with once `who` (in the platform's markup) answered `decision`.
pub(crate) fn answered_line(decision: Decision, who: &str) -> String {
    let what = match decision {
        Decision::Approve => "✅ Approved",
        Decision::ApproveForSession => "✅ Approved for this session",
        Decision::ApproveAlways => "✅ Approved from now on",
        Decision::Deny => "⛔ Denied",
        Decision::Unattended => "⛔ Not answered",
    };
    format!("{what} by {who}.")
}

/// What a press by someone other than the asker is told.
pub(crate) fn not_yours(asker_shown: &str) -> String {
    format!("Only {asker_shown}, whose message this is about, can answer it; your press changed nothing.")
}

/// `[channels] approval_timeout_secs`, read and checked: 1 s to a day.
pub(crate) fn timeout_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let secs = u64::deserialize(deserializer)?;
    match secs {
        1..=MAX_TIMEOUT_SECS => Ok(secs),
        _ => Err(serde::de::Error::custom(format!(
            "approval_timeout_secs must be between 1 and {MAX_TIMEOUT_SECS} (seconds; a day), not {secs}; the default is {DEFAULT_TIMEOUT_SECS}"
        ))),
    }
}

#[cfg(test)]
mod tests;
