//! `exoclaw keys create|list|revoke`: the gateway's virtual keys. A key is printed once, when it
//! is made; the database keeps only its SHA-256.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::app::App;
use anyhow::Context;
use exoclaw_core::{KeyStore, NewApiKey, StoreError};
use exoclaw_gateway::keys::generate_key;
use std::path::Path;
use std::process::ExitCode;

/// `exoclaw keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it (once: only its hash is kept).
    Create {
        /// Its name, to list and revoke it by.
        #[arg(long)]
        name: String,
        /// Models it may use, comma-separated; `*` matches anything (`openai/*,fast`). Default: all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Most US dollars it may spend in all (requests are priced with [prices]).
        #[arg(long, value_name = "USD")]
        budget: Option<f64>,
        /// Most requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Print only the key (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// Every key: name, prefix, models, budget and spend, limit, state.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name or id; the gateway refuses it within a second.
    Revoke {
        /// The key's name or id.
        key: String,
    },
}

/// Runs a keys command.
pub async fn run(config: Option<&Path>, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    let store = &app.store;
    match command {
        KeysCommand::Create { name, models, budget, rpm, quiet } => {
            if name.trim().is_empty() {
                anyhow::bail!("a key needs a name: --name NAME");
            }
            if let Some(budget) = budget.filter(|b| !b.is_finite() || *b < 0.0) {
                anyhow::bail!("--budget {budget} is not an amount of dollars; give a positive number");
            }
            if rpm == Some(0) {
                anyhow::bail!("--rpm 0 would refuse every request; give at least 1, or leave it out");
            }
            let generated =
                generate_key().context("the operating system gave no random bytes for the key")?;
            let new = NewApiKey {
                name: name.clone(),
                hash: generated.hash.clone(),
                prefix: generated.prefix.clone(),
                models: models.into_iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect(),
                budget_usd: budget,
                rpm,
            };
            let key = match store.create_key(new).await {
                Err(StoreError::KeyExists(name)) => anyhow::bail!(
                    "a key named `{name}` exists already; revoke it first (`exoclaw keys revoke {name}`) or choose another name"
                ),
                other => other?,
            };
            if quiet {
                println!("{}", generated.secret);
            } else {
                println!("{}", generated.secret);
                eprintln!(
                    "\nThis is the key `{}`; it is shown only now — store it somewhere safe. Use it as an \
                     OpenAI API key with base_url http://GATEWAY/v1. A running gateway that needed \
                     no key so far requires one within a second.",
                    key.name
                );
            }
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("No keys yet; make one with `exoclaw keys create --name NAME`.");
            } else {
                println!(
                    "{:<16} {:<14} {:<24} {:>18} {:>6}  STATE",
                    "NAME", "KEY", "MODELS", "SPENT / BUDGET", "RPM"
                );
                for key in keys {
                    let models = if key.models.is_empty() { "all".to_owned() } else { key.models.join(",") };
                    let budget = match key.budget_usd {
                        Some(budget) => format!("${:.4} / ${budget:.2}", key.spent_usd),
                        None => format!("${:.4}", key.spent_usd),
                    };
                    let rpm = key.rpm.map_or_else(|| "-".to_owned(), |r| r.to_string());
                    let state = match key.revoked_at {
                        Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                        None => "live".to_owned(),
                    };
                    println!(
                        "{:<16} {:<14} {models:<24} {budget:>18} {rpm:>6}  {state}",
                        key.name, key.prefix
                    );
                }
            }
        }
        KeysCommand::Revoke { key } => {
            if !store.revoke_key(&key).await? {
                anyhow::bail!(
                    "no live key is called `{key}` (or has that id); `exoclaw keys list` shows them"
                );
            }
            println!("Revoked `{key}`.");
        }
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
