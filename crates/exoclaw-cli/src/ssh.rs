//! `exoclaw ssh trust ALIAS`: accepting an SSH host's key, the way `ssh` asks on first contact.
//! It connects only to read the key the host shows, prints its fingerprint, asks (or takes
//! `--yes`), and appends it to `known_hosts` in exoclaw's home. A host whose recorded key differs is
//! never re-trusted here: the old record must be removed first, on purpose.

#![allow(clippy::print_stdout)]

use crate::output::escape_untrusted;
use anyhow::{Context, bail};
use exoclaw::config::Config;
use exoclaw_tools::ssh::known_hosts::{self, Verdict};
use std::path::Path;
use std::process::ExitCode;

/// `exoclaw ssh …`.
#[derive(Debug, clap::Subcommand)]
pub enum SshCommand {
    /// Fetch a host's key, show its fingerprint and, once confirmed, record it in exoclaw's
    /// known_hosts so the SSH tools accept it.
    Trust {
        /// The host's alias (`[ssh.hosts.ALIAS]` or a `Host` of ~/.ssh/config).
        alias: String,
        /// Record it without asking (compare the fingerprint with the host's first).
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `exoclaw ssh …` with the configuration at `config` (or the default one).
pub async fn run(config: Option<&Path>, command: SshCommand) -> anyhow::Result<ExitCode> {
    let loaded = Config::load_after_dotenv(config)?;
    let trust_file = loaded.home.join(exoclaw::runtime::ssh::TRUST_FILE);
    match command {
        SshCommand::Trust { alias, yes } => trust(&loaded.config, &trust_file, &alias, yes).await,
    }
}

async fn trust(config: &Config, trust_file: &Path, alias: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let target = config.ssh.target(alias)?;
    let key = exoclaw_tools::ssh::fetch_host_key(&target, config.ssh.connect_timeout()).await?;
    let fingerprint = known_hosts::fingerprint(&key);
    let mut files = config.ssh.known_hosts_files();
    files.push(trust_file.to_path_buf());
    let name = target.known_hosts_name();
    match known_hosts::verify(&target.hostname, target.port, &key, None, &files) {
        Verdict::Trusted => {
            println!("{name} ({fingerprint}) is already trusted");
            return Ok(ExitCode::SUCCESS);
        }
        Verdict::Changed { record: Some((file, line)), recorded } => bail!(
            "the host key of `{alias}` ({name}) has CHANGED: it shows {fingerprint} but {recorded} is \
             recorded in {}:{line}. If the host's administrator confirms the new key, remove the old \
             record (`ssh-keygen -R '{name}' -f {}`) and run this again",
            file.display(),
            file.display()
        ),
        Verdict::Revoked { record: (file, line) } => {
            bail!("the host key of `{alias}` ({fingerprint}) is marked @revoked in {}:{line}", file.display())
        }
        Verdict::Changed { record: None, .. } | Verdict::Unknown => {}
    }
    println!("{} ({name}) shows this host key:", escape_untrusted(alias, false));
    println!("  {} {fingerprint}", key.algorithm());
    if !yes {
        let refusal = format!(
            "not recorded: compare the fingerprint with the host's (`ssh-keygen -lf \
             /etc/ssh/ssh_host_ed25519_key.pub` on it), then run `exoclaw ssh trust {alias} --yes`"
        );
        let question = format!("Is this the host's key? Record it in {}?", trust_file.display());
        if !crate::output::confirm(&question, &refusal)? {
            println!("not recorded");
            return Ok(ExitCode::FAILURE);
        }
    }
    known_hosts::append(trust_file, &target.hostname, target.port, &key)
        .with_context(|| format!("cannot write {}", trust_file.display()))?;
    println!("recorded in {}", trust_file.display());
    Ok(ExitCode::SUCCESS)
}
