//! Everything the CLI prints: the streamed answer (text or JSON lines), progress, errors.
//! The only module allowed to write to stdout and stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use exoclaw_types::StreamEvent;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Prints one streamed answer.
pub struct Answer {
    json: bool,
    wrote_text: bool,
    ends_with_newline: bool,
}

impl Answer {
    /// Text to stdout, or JSON lines when `json`.
    pub fn new(json: bool) -> Self {
        Self { json, wrote_text: false, ends_with_newline: true }
    }

    /// A spinner on stderr until the first token, when stderr is a terminal and output is text.
    pub fn spinner(&self) -> Option<ProgressBar> {
        if self.json || !std::io::stderr().is_terminal() {
            return None;
        }
        let spinner = ProgressBar::new_spinner();
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner.set_message("thinking…");
        Some(spinner)
    }

    /// Prints one event.
    pub fn event(&mut self, event: &StreamEvent) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", serde_json::to_string(event)?)?;
            return Ok(());
        }
        match event {
            StreamEvent::TextDelta { text } => {
                write!(stdout, "{text}")?;
                stdout.flush()?;
                self.wrote_text = true;
                self.ends_with_newline = text.ends_with('\n');
            }
            StreamEvent::Finish { .. } => {
                drop(stdout);
                self.end_line();
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the answer's last line, if it has text.
    pub fn end_line(&mut self) {
        if self.wrote_text && !self.ends_with_newline && !self.json {
            println!();
            self.ends_with_newline = true;
        }
    }

    /// Says the answer was interrupted.
    pub fn interrupted(&mut self) {
        self.end_line();
        eprintln!("interrupted");
    }
}

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

/// Prints an error and its causes.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}
