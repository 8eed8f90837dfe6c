//! What the CLI prints besides a turn's events (`render`): download progress, model listings,
//! completions, errors and hints.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use exoclaw_core::text::is_terminal_unsafe;
use indicatif::{ProgressBar, ProgressStyle};
use std::borrow::Cow;
use std::fmt::Write as _;

/// A download progress bar on stderr, shown only when something is downloaded.
pub struct Download {
    bar: Option<ProgressBar>,
}

impl Download {
    /// No bar until the first update.
    pub fn new() -> Self {
        Self { bar: None }
    }

    /// Bytes downloaded so far of `total`.
    pub fn update(&mut self, done: u64, total: Option<u64>) {
        let bar = self.bar.get_or_insert_with(|| {
            eprintln!("Downloading the embedded model (once; it is cached)…");
            let bar = ProgressBar::new(total.unwrap_or(0));
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        });
        bar.set_position(done);
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Prints a provider's models, or why they could not be listed.
pub fn models(provider: &str, result: anyhow::Result<Vec<String>>) {
    match result {
        Ok(models) if models.is_empty() => println!("{provider}: (the API does not list models)"),
        Ok(models) => {
            for model in models {
                println!("{provider}/{model}");
            }
        }
        Err(e) => eprintln!("{provider}: cannot list models: {e:#}"),
    }
}

/// Prints the embedded provider's models, one a line: the default model (whether its file is
/// here yet), then each cached GGUF with its architecture, quantisation and size.
pub fn local_models(provider: &str, models: &exoclaw::models::LocalModels) {
    let default_here = models.default_file.is_file();
    let mut rows = vec![(
        format!("{provider}/{}", models.default),
        format!("(default; {})", if default_here { "cached" } else { "fetched on first use" }),
    )];
    for m in models.cached.iter().filter(|m| m.path != models.default_file) {
        let note = if m.supported { "" } else { "  (architecture not supported)" };
        rows.push((
            format!("{provider}/{}", m.name),
            format!("{} {} {:.0} MB{note}", m.architecture, m.quantisation, m.size as f64 / 1e6),
        ));
    }
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 4;
    for (name, about) in rows {
        println!("{name:<width$}{about}");
    }
}

/// Prints an error and its causes.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

/// A spinner with `message` on stderr, when stderr is a terminal.
pub fn spinner(message: &str) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.enable_steady_tick(std::time::Duration::from_millis(100));
        spinner.set_message(message.to_owned());
        spinner
    })
}

/// Prints a hint for what to do next, on stderr.
pub fn hint(text: &str) {
    eprintln!("{text}");
}

/// Prints a warning on stderr (`warning: …`), control characters escaped: it may quote a file.
pub fn warning(text: &str) {
    eprintln!("warning: {}", escape_untrusted(text, false));
}

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, command: &mut clap::Command) {
    clap_complete::generate(shell, command, "exoclaw", &mut std::io::stdout());
}

/// `text` (from a message, a model or a stored session: anything exoclaw did not write itself)
/// made safe to print on a terminal: every character [`is_terminal_unsafe`] says so of is shown as an
/// escape (`\x1b`, `\r`, `\u{202e}`), visible and inert. With `keep_lines`, line breaks
/// (`\n`, `\r\n`) and tabs stay as they are, for multi-line text.
/// Asks `question` on the terminal with `[y/N]`; `Ok(true)` for y or yes. `Err(refusal)` when
/// stdin is not a terminal (nobody can answer): `refusal` says what to run instead.
pub fn confirm(question: &str, refusal: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{refusal}");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `text` from a model, a plugin or a remote server made safe for the terminal.
pub fn escape_untrusted(text: &str, keep_lines: bool) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' if keep_lines => out.push(c),
            '\r' if keep_lines && chars.peek() == Some(&'\n') => {}
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_terminal_unsafe(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_terminal_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_escape_characters_are_shown_escaped() {
        assert_eq!(escape_untrusted("plain title, é ✓", false), "plain title, é ✓");
        assert_eq!(
            escape_untrusted("a\x1b[2Jb\x07c\rd\te\x7f\u{9b}31m\u{202e}f", false),
            "a\\x1b[2Jb\\x07c\\rd\\te\\x7f\\u{9b}31m\\u{202e}f"
        );
        assert_eq!(
            escape_untrusted("one\r\ntwo\n\tthree\x1b]0;x\x07", true),
            "one\ntwo\n\tthree\\x1b]0;x\\x07"
        );
        assert_eq!(escape_untrusted("over\rwrite", true), "over\\rwrite");
    }
}
