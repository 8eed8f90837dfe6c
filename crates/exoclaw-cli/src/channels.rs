//! `exoclaw channels status`: each configured chat channel (and each installed channel plugin),
//! how its messages arrive, what is missing for `exoclaw gateway` to serve it, and — for the
//! channels that keep a connection — what a gateway sharing the store last reported of it.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use exoclaw::config::Config;
use exoclaw::runtime::channels::channel_states;
use exoclaw_core::{ChannelHealth, ChannelHealthStore as _};
use std::path::Path;
use std::process::ExitCode;

/// `exoclaw channels …`.
#[derive(Debug, clap::Subcommand)]
pub enum ChannelsCommand {
    /// Each chat channel: how its messages arrive, whether its secrets are set, and whether a
    /// running gateway's connection to it (Discord's Gateway, the KĀDI broker…) is up.
    Status,
}

/// Runs `exoclaw channels …`; exit 1 when a configured channel is missing something.
pub async fn run(config: Option<&Path>, command: ChannelsCommand) -> anyhow::Result<ExitCode> {
    let ChannelsCommand::Status = command;
    let loaded = Config::load_after_dotenv(config)?;
    let plugins = exoclaw::runtime::plugins::plugin_dir(&loaded.home);
    let channel_plugins: Vec<String> = plugins
        .list()
        .into_iter()
        .filter_map(|(name, installed)| {
            installed.ok().filter(|i| i.manifest.kind == exoclaw_wasm::Kind::Channel).map(|_| name)
        })
        .collect();
    let states = channel_states(&loaded.config, &channel_plugins);
    if states.is_empty() {
        println!(
            "no chat channels configured: add [channels.slack], [channels.telegram], [channels.discord] or [channels.kadi] (docs/channels.md)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let connections: Vec<ChannelHealth> = crate::providers::gateway_records(
        &loaded.storage_url(),
        "the gateway's recorded connections",
        async |store| store.channel_health().await,
    )
    .await;
    let now = chrono::Utc::now();
    let width = states.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for state in &states {
        let status = match &state.missing {
            None => "ready".to_owned(),
            Some(missing) => format!("NOT SERVED: {missing}"),
        };
        println!("{:width$}  {status}\n{:width$}  {}", state.name, "", state.arrives);
        if let Some(seen) = connections.iter().find(|c| c.channel == state.name) {
            let since = crate::providers::ago(now - seen.since);
            let connection = match (seen.connected, &seen.error) {
                (true, _) => format!("connected (since {since}, as the gateway last reported)"),
                (false, Some(error)) => format!("NOT CONNECTED (since {since}): {error}"),
                (false, None) => format!("NOT CONNECTED (since {since})"),
            };
            println!("{:width$}  {connection}", "");
        }
    }
    Ok(if states.iter().all(|s| s.missing.is_none()) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
