//! `exoclaw config init|check|show`.

#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use exoclaw::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `exoclaw config …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Write a documented config file (every setting, commented out) to edit.
    Init {
        /// Where (default: --config, $EXOCLAW_CONFIG, else ~/.exoclaw/config.toml).
        path: Option<PathBuf>,
        /// Replace a file that is already there.
        #[arg(long)]
        force: bool,
    },
    /// Check the config file: errors name the line and column and say how to fix them.
    Check,
    /// Print the configuration in effect (file, environment, defaults), secrets redacted.
    Show,
}

/// Runs a config command.
pub fn run(config: Option<&Path>, command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Init { path, force } => {
            let path = match path.or_else(|| config.map(Path::to_path_buf)) {
                Some(path) => path,
                None => Config::default_path()?,
            };
            if path.exists() && !force {
                bail!("{} already exists; use --force to replace it", path.display());
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&path, Config::template())
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}: every setting is there, commented out, with what it does", path.display());
        }
        ConfigCommand::Check => {
            let loaded = Config::load_after_dotenv(config)?;
            let resolved = loaded.config.resolve_model(None)?;
            match &loaded.path {
                Some(path) => println!("{}: ok", path.display()),
                None => {
                    println!("no config file: the defaults are in effect (`exoclaw config init` writes one)")
                }
            }
            println!("default model: {}", resolved.model);
            println!("storage: {}", exoclaw_store::redact_url(&loaded.config.storage_url(&loaded.home)));
            let plugins = exoclaw::runtime::plugins::plugin_dir(&loaded.home);
            let installed = plugins.names();
            for (name, settings) in &loaded.config.plugins {
                if !installed.contains(name) {
                    println!(
                        "warning: [plugins.{name}] names a plugin that is not installed (`exoclaw plugin list`)"
                    );
                }
                for (key, variable) in &settings.config_env {
                    if std::env::var_os(variable).is_none() {
                        println!(
                            "warning: [plugins.{name}] config_env.{key}: the variable {variable} is not set"
                        );
                    }
                }
            }
        }
        ConfigCommand::Show => {
            let loaded = Config::load_after_dotenv(config)?;
            if let Some(path) = &loaded.path {
                println!("# from {}", path.display());
            }
            print!("{}", loaded.config.redacted_toml());
        }
    }
    Ok(ExitCode::SUCCESS)
}
