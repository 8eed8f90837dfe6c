//! The text of an approval prompt, in each platform's markup: which tool, its arguments
//! (truncated, as code), what it touches and how it would be confined, and who may answer.
//! Everything that comes from the model or a tool is escaped (or put in code, where nothing is
//! interpreted), so a crafted argument cannot forge a mention, a link or the prompt's own wording.

use exoclaw_core::ApprovalRequest;
use std::time::Duration;

/// The characters of the arguments shown; longer is cut with "…".
const ARGUMENTS_SHOWN: usize = 600;
/// The characters of one resource shown.
const RESOURCE_SHOWN: usize = 150;
/// The resources listed; more are counted.
const RESOURCES_SHOWN: usize = 5;
/// The characters of the confinement shown.
const CONFINEMENT_SHOWN: usize = 200;

/// A platform's message markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Markup {
    /// Slack's mrkdwn: `&`, `<` and `>` are entities, everywhere (code included).
    Slack,
    /// Telegram's HTML parse mode.
    TelegramHtml,
    /// Discord's markdown (mentions are not parsed: prompts are sent without allowed mentions).
    Discord,
}

impl Markup {
    /// `text` shown as itself.
    pub(crate) fn escape(self, text: &str) -> String {
        match self {
            Self::Slack | Self::TelegramHtml => {
                text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
            }
            Self::Discord => {
                let mut out = String::with_capacity(text.len());
                for c in text.chars() {
                    if matches!(
                        c,
                        '\\' | '*'
                            | '_'
                            | '~'
                            | '`'
                            | '|'
                            | '>'
                            | '#'
                            | '['
                            | ']'
                            | '('
                            | ')'
                            | '-'
                            | '@'
                            | '<'
                    ) {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out
            }
        }
    }

    /// `text` in bold.
    fn bold(self, text: &str) -> String {
        match self {
            Self::Slack => format!("*{}*", self.escape(text)),
            Self::TelegramHtml => format!("<b>{}</b>", self.escape(text)),
            Self::Discord => format!("**{}**", self.escape(text)),
        }
    }

    /// `text` as inline code (a backtick in it becomes `ˋ`: neither markdown can escape one).
    fn code(self, text: &str) -> String {
        let text = one_line(text);
        match self {
            Self::Slack => format!("`{}`", self.escape(&text.replace('`', "ˋ"))),
            Self::TelegramHtml => format!("<code>{}</code>", self.escape(&text)),
            Self::Discord => format!("`{}`", text.replace('`', "ˋ")),
        }
    }

    /// `text` as a code block (a fence in it is broken with a zero-width space).
    fn block(self, text: &str) -> String {
        let unfenced = text.replace("```", "`\u{200b}``");
        match self {
            Self::Slack => format!("```{}```", self.escape(&unfenced)),
            Self::TelegramHtml => format!("<pre>{}</pre>", self.escape(text)),
            Self::Discord => format!("```\n{unfenced}\n```"),
        }
    }
}

/// The prompt for `request`, which only `asker` (in the platform's markup) may answer.
pub(crate) fn render(markup: Markup, request: &ApprovalRequest, asker: &str) -> String {
    let mut lines = vec![format!(
        "🔐 {} {} wants to run {} ({}).",
        markup.bold("Approval needed:"),
        markup.escape("the agent"),
        markup.code(&request.call.name),
        markup.escape(effect(request.effect)),
    )];
    let arguments = serde_json::to_string_pretty(&request.call.arguments).unwrap_or_default();
    lines.push(markup.block(&cut(&arguments, ARGUMENTS_SHOWN)));
    if !request.resources.is_empty() {
        let mut touched: Vec<String> = request
            .resources
            .iter()
            .take(RESOURCES_SHOWN)
            .map(|resource| {
                format!("{} {}", resource.kind(), markup.code(&cut(resource.value(), RESOURCE_SHOWN)))
            })
            .collect();
        if request.resources.len() > RESOURCES_SHOWN {
            touched.push(format!("{} more", request.resources.len() - RESOURCES_SHOWN));
        }
        lines.push(format!("Touches: {}", touched.join(", ")));
    }
    if let Some(confinement) = &request.confinement {
        lines.push(format!("Runs in: {}", markup.escape(&cut(confinement, CONFINEMENT_SHOWN))));
    }
    lines.push(match markup {
        Markup::TelegramHtml => format!("Only {asker} can answer."),
        // The asker may also answer with a reaction to the prompt.
        Markup::Slack | Markup::Discord => format!("Only {asker} can answer (a button, or react ✅ or ❌)."),
    });
    lines.join("\n")
}

/// The line a prompt nobody answered within `timeout` ends with.
pub(crate) fn timed_out(timeout: Duration) -> String {
    format!("⌛ Nobody answered within {}: denied.", shown(timeout))
}

fn effect(effect: exoclaw_types::ToolEffect) -> &'static str {
    match effect {
        exoclaw_types::ToolEffect::ReadOnly => "reads only",
        exoclaw_types::ToolEffect::Mutating => "changes things",
        exoclaw_types::ToolEffect::External => "reaches outside",
    }
}

/// `text`, at most `limit` characters, "…" where it was cut.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `timeout` for people: "5 minutes", "90 seconds", "200 ms".
fn shown(timeout: Duration) -> String {
    let secs = timeout.as_secs();
    match secs {
        0 => format!("{} ms", timeout.as_millis()),
        60 => "a minute".to_owned(),
        _ if secs.is_multiple_of(60) => format!("{} minutes", secs / 60),
        1 => "a second".to_owned(),
        _ => format!("{secs} seconds"),
    }
}
