//! `exoclaw plugin …`: WASM plugins. `install` shows what a plugin asks to reach in plain words and
//! asks before granting it; `grant` and `revoke` change the grant; `list` says which are loaded and
//! why not; `inspect` shows one's manifest, grant and tools; `remove` deletes it.

#![allow(clippy::print_stdout)]

use crate::output::escape_untrusted;
use anyhow::{Context, bail};
use exoclaw::config::Config;
use exoclaw::runtime::plugins::{plugin_dir, plugin_host};
use exoclaw_wasm::{Capabilities, Installed, Kind, Manifest, PathGrant, PluginDir};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `exoclaw plugin …`.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Install a plugin from its plugin.toml (or the folder holding it), after showing what it
    /// asks to reach and asking you to grant it.
    Install {
        /// The plugin's plugin.toml, or its folder.
        path: PathBuf,
        /// Grant what it asks for without asking.
        #[arg(long)]
        yes: bool,
    },
    /// The installed plugins: version, kind, and whether they load.
    List,
    /// One plugin: its manifest, what it was granted, and its tools.
    Inspect {
        /// The plugin's name.
        name: String,
    },
    /// Remove a plugin and its data folders.
    Remove {
        /// The plugin's name.
        name: String,
    },
    /// Grant a plugin more: hosts, folders, memory, time, fuel, settings.
    Grant(GrantArgs),
    /// Take back what a plugin was granted; a plugin that still asks for it is no longer loaded.
    Revoke(RevokeArgs),
}

/// The hosts, folders and settings a grant or a revocation names.
#[derive(Debug, clap::Args)]
pub struct GrantItems {
    /// A host it may send HTTP requests to (a glob: `*.example.org`). Repeatable.
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// A folder it may see, `HOST_PATH:GUEST_PATH`; `:rw` for writing. Repeatable.
    #[arg(long = "path", value_name = "HOST:GUEST[:rw]")]
    paths: Vec<String>,
    /// A configuration key it may read. Repeatable.
    #[arg(long = "setting", value_name = "KEY")]
    config: Vec<String>,
}

/// What `exoclaw plugin grant` adds.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// The plugin's name.
    name: String,
    /// Grant everything its manifest asks for now.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    items: GrantItems,
    /// Its memory cap, in MiB.
    #[arg(long, value_name = "MIB")]
    memory_mib: Option<u32>,
    /// How long one call may run, in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Its instruction budget per call.
    #[arg(long, value_name = "N", conflicts_with = "no_fuel_limit")]
    fuel: Option<u64>,
    /// No instruction budget (only the time limit).
    #[arg(long)]
    no_fuel_limit: bool,
}

/// What `exoclaw plugin revoke` takes back (`--path …:rw` takes back only writing).
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The plugin's name.
    name: String,
    /// Take back everything: hosts, folders and settings (memory and time go back to nothing).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    items: GrantItems,
}

/// Runs `exoclaw plugin …` with the configuration at `config` (or the default one).
pub async fn run(config: Option<&Path>, command: PluginCommand) -> anyhow::Result<ExitCode> {
    let loaded = Config::load_after_dotenv(config)?;
    let dir = plugin_dir(&loaded.home);
    let config = loaded.config;
    match command {
        PluginCommand::Install { path, yes } => install(&dir, &config, &path, yes).await,
        PluginCommand::List => list(&dir, &config).await,
        PluginCommand::Inspect { name } => inspect(&dir, &config, &name).await,
        PluginCommand::Remove { name } => {
            dir.remove(&name)?;
            println!("removed the plugin {name}");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Grant(args) => grant(&dir, args),
        PluginCommand::Revoke(args) => revoke(&dir, args),
    }
}

fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    escape_untrusted(text, false)
}

async fn install(dir: &PluginDir, config: &Config, path: &Path, yes: bool) -> anyhow::Result<ExitCode> {
    let manifest_path =
        if path.is_dir() { path.join(exoclaw_wasm::manifest::MANIFEST_FILE) } else { path.to_owned() };
    let manifest = Manifest::load(&manifest_path)?;
    let previous = dir.get(&manifest.name).ok();
    println!(
        "{} {} ({} plugin){}",
        manifest.name,
        plain(&manifest.version),
        manifest.kind,
        match manifest.description.is_empty() {
            true => String::new(),
            false => format!(": {}", plain(&manifest.description)),
        }
    );
    if let Some(previous) = &previous {
        println!("It replaces version {} (its data folders are kept).", plain(&previous.manifest.version));
    }
    println!("It asks to:");
    for line in manifest.capabilities.describe() {
        println!("  • {}", plain(&line));
    }
    if let Some(previous) = &previous {
        let new: Vec<String> =
            manifest.capabilities.beyond(&previous.grant).iter().map(ToString::to_string).collect();
        if !new.is_empty() {
            println!("Beyond what it was granted before: {}", plain(&new.join(", ")));
        }
    }
    if !yes {
        let refusal = format!(
            "not installed: read what it asks for above, then run `exoclaw plugin install {} --yes`",
            path.display()
        );
        if !crate::output::confirm("Install it and grant this?", &refusal)? {
            println!("not installed");
            return Ok(ExitCode::FAILURE);
        }
    }
    let installed = dir.install(&manifest_path, manifest.capabilities.clone())?;
    // Compile it and ask for its tools now, so a broken module is found here, not at the next chat.
    match check(dir, config, &installed).await {
        Ok(summary) => {
            println!("installed {} in {}{summary}", installed.name(), installed.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if previous.is_none() {
                let _ = dir.remove(installed.name());
                bail!("not installed: {error}");
            }
            bail!("installed, but it cannot be loaded: {error}");
        }
    }
}

/// Loads `plugin` as the runtime would; a line on what it offers.
async fn check(dir: &PluginDir, config: &Config, plugin: &Installed) -> anyhow::Result<String> {
    let tools = describe_tools(dir, config, plugin).await?;
    Ok(match plugin.manifest.kind {
        Kind::Tool => format!("; its tools: {}", tools.join(", ")),
        Kind::Channel => format!(
            "; the gateway serves it at POST /webhook/{} once [plugins.{}] webhook_secret_env names the variable \
             holding its signing secret",
            plugin.name(),
            plugin.name()
        ),
    })
}

/// Compiles `plugin` and lists its tools (as agents see them); none for a channel.
async fn describe_tools(dir: &PluginDir, config: &Config, plugin: &Installed) -> anyhow::Result<Vec<String>> {
    let host = plugin_host(dir);
    let values =
        config.plugins.get(plugin.name()).map(|s| s.values(|v| std::env::var(v).ok())).unwrap_or_default();
    let plugin = plugin.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let loaded = Arc::new(host.load(&plugin, &values)?);
        Ok(match plugin.manifest.kind {
            Kind::Tool => {
                let tools = exoclaw_wasm::plugin_tools(&loaded, "")?;
                tools.iter().map(|tool| exoclaw_core::Tool::spec(tool).name).collect()
            }
            Kind::Channel => Vec::new(),
        })
    })
    .await
    .context("the plugin check stopped")?
}

async fn list(dir: &PluginDir, config: &Config) -> anyhow::Result<ExitCode> {
    let plugins = dir.list();
    if plugins.is_empty() {
        println!(
            "no plugins installed in {}; install one with `exoclaw plugin install PATH`",
            dir.root().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (name, installed) in plugins {
        let installed = match installed {
            Ok(installed) => installed,
            Err(error) => {
                println!("{name}  cannot be read: {error}");
                continue;
            }
        };
        let status = if config.plugins.get(&name).is_some_and(|s| !s.enabled) {
            format!("disabled in [plugins.{name}]")
        } else {
            match describe_tools(dir, config, &installed).await {
                Ok(tools) if tools.is_empty() => "loads".to_owned(),
                Ok(tools) => format!("loads; tools: {}", tools.join(", ")),
                Err(error) => format!("NOT LOADED: {error}"),
            }
        };
        println!(
            "{name}  {}  {}  {}\n    {}",
            plain(&installed.manifest.version),
            installed.manifest.kind,
            plain(&installed.manifest.description),
            status
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(dir: &PluginDir, config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let installed = dir.get(name)?;
    let manifest = &installed.manifest;
    println!("{} {} ({} plugin)", manifest.name, plain(&manifest.version), manifest.kind);
    if !manifest.description.is_empty() {
        println!("  {}", plain(&manifest.description));
    }
    println!("folder: {}", installed.dir.display());
    println!("it asks to:");
    for line in manifest.capabilities.describe() {
        println!("  • {}", plain(&line));
    }
    println!("granted:");
    for line in installed.grant.describe() {
        println!("  • {}", plain(&line));
    }
    let excess = installed.excess();
    if !excess.is_empty() {
        println!("{}", exoclaw_wasm::PluginError::NotGranted { plugin: name.to_owned(), excess });
        return Ok(ExitCode::FAILURE);
    }
    match describe_tools(dir, config, &installed).await {
        Ok(tools) if manifest.kind == Kind::Tool => println!("tools: {}", tools.join(", ")),
        Ok(_) => println!("channel: POST /webhook/{name} on the gateway"),
        Err(error) => {
            println!("it cannot be loaded: {error}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn grant(dir: &PluginDir, args: GrantArgs) -> anyhow::Result<ExitCode> {
    let installed = dir.get(&args.name)?;
    let mut grant = if args.all {
        widest(&installed.grant, &installed.manifest.capabilities)
    } else {
        installed.grant.clone()
    };
    for host in args.items.hosts {
        if !grant.hosts.contains(&host) {
            grant.hosts.push(host);
        }
    }
    for path in &args.items.paths {
        let path = parse_path(path)?;
        grant.paths.retain(|p| !(p.host == path.host && p.guest == path.guest));
        grant.paths.push(path);
    }
    grant.memory_mib = args.memory_mib.map_or(grant.memory_mib, |mib| mib.max(grant.memory_mib));
    grant.timeout_ms = args.timeout_ms.map_or(grant.timeout_ms, |ms| ms.max(grant.timeout_ms));
    if args.no_fuel_limit {
        grant.fuel = None;
    } else if let Some(fuel) = args.fuel {
        grant.fuel = grant.fuel.map(|granted| granted.max(fuel));
    }
    for key in args.items.config {
        if !grant.config.contains(&key) {
            grant.config.push(key);
        }
    }
    save(dir, &args.name, grant)
}

/// Everything `granted` or `asked` allows.
fn widest(granted: &Capabilities, asked: &Capabilities) -> Capabilities {
    let mut widest = granted.clone();
    for host in &asked.hosts {
        if !widest.hosts.contains(host) {
            widest.hosts.push(host.clone());
        }
    }
    for path in &asked.paths {
        widest.paths.retain(|p| !(p.host == path.host && p.guest == path.guest && !p.write));
        if !widest.paths.iter().any(|p| p.host == path.host && p.guest == path.guest) {
            widest.paths.push(path.clone());
        }
    }
    widest.memory_mib = widest.memory_mib.max(asked.memory_mib);
    widest.timeout_ms = widest.timeout_ms.max(asked.timeout_ms);
    widest.fuel = match (widest.fuel, asked.fuel) {
        (Some(granted), Some(asked)) => Some(granted.max(asked)),
        _ => None,
    };
    for key in &asked.config {
        if !widest.config.contains(key) {
            widest.config.push(key.clone());
        }
    }
    widest
}

fn revoke(dir: &PluginDir, args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let installed = dir.get(&args.name)?;
    let mut grant = installed.grant.clone();
    if args.all {
        grant = Capabilities { memory_mib: 0, timeout_ms: 0, fuel: Some(0), ..Capabilities::default() };
    }
    grant.hosts.retain(|host| !args.items.hosts.contains(host));
    for path in &args.items.paths {
        let path = parse_path(path)?;
        for granted in grant.paths.iter_mut().filter(|p| p.host == path.host && p.guest == path.guest) {
            // `:rw` takes back writing only; without it the folder goes.
            granted.write = granted.write && !path.write;
        }
        if !path.write {
            grant.paths.retain(|p| !(p.host == path.host && p.guest == path.guest));
        }
    }
    grant.config.retain(|key| !args.items.config.contains(key));
    save(dir, &args.name, grant)
}

fn save(dir: &PluginDir, name: &str, grant: Capabilities) -> anyhow::Result<ExitCode> {
    let installed = dir.set_grant(name, grant)?;
    println!("{name} is now granted:");
    for line in installed.grant.describe() {
        println!("  • {}", plain(&line));
    }
    match installed.check_granted() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            println!("{error}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `HOST:GUEST` or `HOST:GUEST:rw`.
fn parse_path(text: &str) -> anyhow::Result<PathGrant> {
    let (rest, write) = match text.strip_suffix(":rw") {
        Some(rest) => (rest, true),
        None => (text.strip_suffix(":ro").unwrap_or(text), false),
    };
    let Some((host, guest)) = rest.rsplit_once(':') else {
        bail!("`{text}` is not HOST_PATH:GUEST_PATH[:rw] (such as `data:/data:rw` or `~/notes:/notes`)");
    };
    if host.is_empty() || !guest.starts_with('/') {
        bail!("`{text}`: the host path must not be empty and the guest path must be absolute (`/data`)");
    }
    Ok(PathGrant { host: host.to_owned(), guest: guest.to_owned(), write })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_with_and_without_write() {
        let path = parse_path("data:/data:rw").unwrap();
        assert_eq!((path.host.as_str(), path.guest.as_str(), path.write), ("data", "/data", true));
        let path = parse_path("~/notes:/notes").unwrap();
        assert_eq!((path.host.as_str(), path.guest.as_str(), path.write), ("~/notes", "/notes", false));
        assert!(parse_path("data").unwrap_err().to_string().contains("HOST_PATH:GUEST_PATH"));
        assert!(parse_path("data:relative").is_err());
    }
}
