//! What the CLI prints besides a turn's events (`render`): download progress, model listings,
//! completions, errors and hints.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use indicatif::{ProgressBar, ProgressStyle};

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

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, command: &mut clap::Command) {
    clap_complete::generate(shell, command, "exoclaw", &mut std::io::stdout());
}
