//! `exoclaw providers status`: each available provider checked once through the router's
//! circuit breakers — state, failures within the breaker's window, last error — and what a running
//! gateway's periodic checks of keyless servers last saw (recorded in the store).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use exoclaw::config::Config;
use exoclaw_core::{ProviderHealth, ProviderHealthStore, StoreError};
use exoclaw_providers::router::Router;
use exoclaw_store::Store;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// `exoclaw providers …`.
#[derive(Debug, clap::Subcommand)]
pub enum ProvidersCommand {
    /// Check every available provider now (a model listing each) and show its breaker: closed
    /// (healthy), open (failing; skipped by the router), with the last error. A one-shot command
    /// starts with closed breakers, so this is the state after one check each; the embedded
    /// model is not loaded for it. Below, the last check a gateway sharing this store made of
    /// each keyless server (it checks them every 30 seconds), and how long ago.
    Status {
        /// Seconds each check may take.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a providers command.
pub async fn run(config: Option<&Path>, command: ProvidersCommand) -> anyhow::Result<ExitCode> {
    let ProvidersCommand::Status { timeout, json } = command;
    let loaded = Config::load_after_dotenv(config)?;
    let config = &loaded.config;
    // One failed check opens a breaker here: the table shows at once which providers fail.
    let mut builder =
        Router::builder("status").breaker(1, Duration::from_secs(config.routing.breaker_cool_down_secs));
    let mut not_opened: Vec<(String, String)> = Vec::new();
    let mut local = Vec::new();
    for name in config.available_provider_names() {
        if config.is_local(&name) {
            local.push(name);
            continue;
        }
        match exoclaw::models::open_instance(config, &name, &mut |_, _| {}).await {
            Ok(provider) => builder = builder.provider(provider, true),
            Err(err) => not_opened.push((name, err.to_string())),
        }
    }
    let router = builder.build(exoclaw_providers::Routes::default());
    router.check_health(true, Duration::from_secs(timeout.max(1))).await;
    let status = router.status();
    let gateway_checks: Vec<ProviderHealth> =
        gateway_records(&loaded.storage_url(), "the gateway's recorded checks", async |store| {
            store.provider_health().await
        })
        .await;
    let gateway_check = |name: &str| gateway_checks.iter().find(|c| c.provider == name);
    if json {
        let rows: Vec<serde_json::Value> = status
            .iter()
            .map(|s| {
                serde_json::json!({"name": s.name, "state": s.state.as_str(), "failures": s.failures, "last_error": s.last_error})
            })
            .map(|mut row| {
                let check = row["name"].as_str().and_then(gateway_check);
                row["gateway_check"] = check.map_or(serde_json::Value::Null, |c| {
                    serde_json::json!({"checked_at": c.checked_at.to_rfc3339(), "error": c.error})
                });
                row
            })
            .chain(not_opened.iter().map(|(name, err)| serde_json::json!({"name": name, "state": "unconfigured", "failures": 0, "last_error": err})))
            .chain(local.iter().map(|name| serde_json::json!({"name": name, "state": "embedded", "failures": 0, "last_error": null})))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:<16} {:<12} {:>8}  LAST ERROR", "PROVIDER", "STATE", "FAILURES");
        for s in &status {
            println!(
                "{:<16} {:<12} {:>8}  {}",
                s.name,
                s.state.as_str(),
                s.failures,
                s.last_error.as_deref().unwrap_or("-")
            );
        }
        for (name, err) in &not_opened {
            println!("{name:<16} {:<12} {:>8}  {err}", "unconfigured", "-");
        }
        for name in &local {
            println!("{name:<16} {:<12} {:>8}  -", "embedded", "-");
        }
        if !gateway_checks.is_empty() {
            println!("\nThe gateway's last checks (keyless servers, every 30 s):");
            let now = chrono::Utc::now();
            for check in &gateway_checks {
                let ago = ago(now - check.checked_at);
                match &check.error {
                    None => println!("{:<16} {:<12} {ago:>8}", check.provider, "ok"),
                    Some(error) => println!("{:<16} {:<12} {ago:>8}  {error}", check.provider, "failed"),
                }
            }
        }
    }
    let healthy = status.iter().all(|s| s.failures == 0) && not_opened.is_empty();
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What a gateway sharing the store recorded, as `read` gets it from the store; none when there
/// is no store yet (which is not created) or it cannot be read (said on stderr, naming `what`: the
/// rest of the command's answer still stands).
pub(crate) async fn gateway_records<T>(
    url: &str,
    what: &str,
    read: impl AsyncFnOnce(&Store) -> Result<Vec<T>, StoreError>,
) -> Vec<T> {
    let records = async {
        let Some(store) = Store::open_existing(url).await? else { return Ok(Vec::new()) };
        let records = read(&store).await;
        store.close().await;
        records
    };
    match records.await {
        Ok(records) => records,
        Err(e) => {
            eprintln!("({what} could not be read: {e})");
            Vec::new()
        }
    }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub(crate) fn ago(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds().max(0);
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}
