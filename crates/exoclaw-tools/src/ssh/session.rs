//! Connections: connecting to a host, checking its key before anything is sent, logging in (key
//! files, ssh-agent, then a password from the environment), and [`SshPool`], which keeps one connection per
//! alias for later calls and opens a new one when the old one has dropped.

use super::SshError;
use super::config::{SshConfig, Target};
use super::known_hosts::{self, Verdict};
use russh::client::{self, AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::Mutex;

/// A logged-in connection.
pub(super) type Connection = Handle<Client>;

/// The connections the SSH tools share: one per alias, opened on first use.
pub struct SshPool {
    config: SshConfig,
    trust_file: PathBuf,
    hosts: StdMutex<HashMap<String, Slot>>,
    opened: AtomicUsize,
    env: EnvLookup,
}

/// One host's connection, if open; locked while it is being opened.
type Slot = Arc<Mutex<Option<Arc<Connection>>>>;

/// Reads an environment variable: the process environment in real use, a map in tests.
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for SshPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshPool")
            .field("aliases", &self.config.hosts.keys().collect::<Vec<_>>())
            .field("trust_file", &self.trust_file)
            .field("opened", &self.connections_opened())
            .finish_non_exhaustive()
    }
}

impl SshPool {
    /// A pool reaching the hosts of `config`, trusting host keys in its known-hosts files and in
    /// `trust_file` (exoclaw's own, `~/.exoclaw/known_hosts`, where `exoclaw ssh trust` writes).
    pub fn new(config: SshConfig, trust_file: PathBuf) -> Self {
        Self {
            config,
            trust_file,
            hosts: StdMutex::new(HashMap::new()),
            opened: AtomicUsize::new(0),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// The same pool reading `password_env` variables through `lookup` instead of the process
    /// environment.
    pub fn with_env_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// The settings.
    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// How many connections were opened so far (reuse keeps this at one per host).
    pub fn connections_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// The open connection to `alias`, or a new one when there is none or it has dropped.
    pub(super) async fn connection(&self, alias: &str) -> Result<(Target, Arc<Connection>), SshError> {
        let target = self.config.target(alias)?;
        let slot = {
            let mut hosts = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            hosts.entry(alias.to_owned()).or_default().clone()
        };
        // One connect at a time per host; other hosts are not held up.
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok((target, connection.clone()));
        }
        let connection = Arc::new(self.connect(&target).await?);
        self.opened.fetch_add(1, Ordering::Relaxed);
        *slot = Some(connection.clone());
        Ok((target, connection))
    }

    /// Forgets `dead`, the connection to `alias`, so the next call opens a new one (unless another
    /// call has already replaced it).
    pub(super) async fn forget(&self, alias: &str, dead: &Arc<Connection>) {
        let slot = self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(alias).cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, dead)) {
                *slot = None;
            }
        }
    }

    fn known_hosts_files(&self) -> Vec<PathBuf> {
        let mut files = self.config.known_hosts_files();
        files.push(self.trust_file.clone());
        files
    }

    async fn connect(&self, target: &Target) -> Result<Connection, SshError> {
        let timeout = self.config.connect_timeout();
        let pinned = match &target.host_key {
            Some(text) => Some(PublicKey::from_openssh(text).map_err(|e| SshError::Connect {
                alias: target.alias.clone(),
                addr: addr(target),
                reason: format!(
                    "the pinned `host_key` cannot be read ({e}); write it as `ssh-ed25519 AAAA…`"
                ),
            })?),
            None => None,
        };
        let check = Check::Records {
            host: target.hostname.clone(),
            port: target.port,
            pinned: pinned.map(Box::new),
            files: self.known_hosts_files(),
        };
        let client = Client { check, seen: Arc::default() };
        let seen = client.seen.clone();
        let work = async {
            let mut handle =
                client::connect(client_config(), (target.hostname.as_str(), target.port), client)
                    .await
                    .map_err(|e| self.refusal(target, &seen).unwrap_or_else(|| connect_failed(target, &e)))?;
            login(&mut handle, target, self.env.as_ref(), self.config.use_agent).await?;
            Ok(handle)
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(SshError::ConnectTimeout { alias: target.alias.clone(), secs: timeout.as_secs() }))
    }

    /// The host-key refusal behind a failed handshake, if that is why it failed.
    fn refusal(&self, target: &Target, seen: &StdMutex<Option<(PublicKey, Verdict)>>) -> Option<SshError> {
        let (key, verdict) = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()?;
        let alias = target.alias.clone();
        let name = target.known_hosts_name();
        let fingerprint = known_hosts::fingerprint(&key);
        match verdict {
            Verdict::Trusted => None,
            Verdict::Unknown => Some(SshError::UnknownHostKey {
                alias,
                name,
                fingerprint,
                trust_file: self.trust_file.clone(),
            }),
            Verdict::Changed { record, recorded } => Some(SshError::ChangedHostKey {
                alias,
                name,
                shown: fingerprint,
                recorded,
                record: record.map(Box::new),
            }),
            Verdict::Revoked { record } => {
                Some(SshError::RevokedHostKey { alias, name, fingerprint, record })
            }
        }
    }
}

/// Connects to `target` only to read the key it shows, without trusting or logging in: what
/// `exoclaw ssh trust` shows the user before recording it.
pub async fn fetch_host_key(target: &Target, timeout: Duration) -> Result<PublicKey, SshError> {
    let client = Client { check: Check::Capture, seen: Arc::default() };
    let seen = client.seen.clone();
    let work = client::connect(client_config(), (target.hostname.as_str(), target.port), client);
    // The handshake is refused on purpose once the key is read, so its error is expected.
    let outcome = tokio::time::timeout(timeout, work).await;
    let key = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take().map(|(key, _)| key);
    match (key, outcome) {
        (Some(key), _) => Ok(key),
        (None, Err(_)) => {
            Err(SshError::ConnectTimeout { alias: target.alias.clone(), secs: timeout.as_secs() })
        }
        (None, Ok(Err(e))) => Err(connect_failed(target, &e)),
        (None, Ok(Ok(_))) => Err(SshError::Connect {
            alias: target.alias.clone(),
            addr: addr(target),
            reason: "the server showed no host key".into(),
        }),
    }
}

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // Keepalives notice a dead connection, so the pool opens a new one instead of hanging.
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    })
}

fn addr(target: &Target) -> String {
    format!("{}:{}", target.hostname, target.port)
}

fn connect_failed(target: &Target, e: &russh::Error) -> SshError {
    SshError::Connect { alias: target.alias.clone(), addr: addr(target), reason: e.to_string() }
}

/// Tries each key file that exists, then the keys of ssh-agent (`$SSH_AUTH_SOCK`), then the
/// password, until one is accepted.
async fn login(
    handle: &mut Connection,
    target: &Target,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    use_agent: bool,
) -> Result<(), SshError> {
    let session_error =
        |e: russh::Error| SshError::Session { alias: target.alias.clone(), reason: e.to_string() };
    let mut tried = Vec::new();
    for path in target.identity_files.iter().filter(|p| p.is_file()) {
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(e) => {
                // An encrypted key needs a passphrase exoclaw does not ask for: say so and go on.
                tried.push(format!(
                    "{} (unreadable: {e}; use an unencrypted key or ssh-agent)",
                    path.display()
                ));
                continue;
            }
        };
        let hash = handle.best_supported_rsa_hash().await.map_err(session_error)?.flatten();
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        match handle.authenticate_publickey(&target.user, key).await.map_err(session_error)? {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { .. } => tried.push(format!("the key {}", path.display())),
        }
    }
    if use_agent
        && let Some(socket) = env("SSH_AUTH_SOCK")
        && let Ok(mut agent) = AgentClient::connect_uds(&socket).await
    {
        for identity in agent.request_identities().await.unwrap_or_default() {
            let AgentIdentity::PublicKey { key, comment } = identity else { continue };
            let hash = handle.best_supported_rsa_hash().await.map_err(session_error)?.flatten();
            match handle.authenticate_publickey_with(&target.user, key, hash, &mut agent).await {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure { .. }) => tried.push(format!("the agent's key `{comment}`")),
                Err(e) => tried.push(format!("the agent's key `{comment}` (the agent failed: {e:?})")),
            }
        }
    }
    if let Some(var) = &target.password_env {
        match env(var).map(SecretString::from) {
            Some(password) => {
                let result = handle
                    .authenticate_password(&target.user, password.expose_secret())
                    .await
                    .map_err(session_error)?;
                match result {
                    AuthResult::Success => return Ok(()),
                    AuthResult::Failure { .. } => tried.push(format!("the password from ${var}")),
                }
            }
            None => tried.push(format!("no password (${var} is not set)")),
        }
    }
    Err(SshError::Auth { alias: target.alias.clone(), user: target.user.clone(), tried })
}

/// How the handler judges the server's key.
#[derive(Debug)]
enum Check {
    /// Against a pinned key or the records for `host:port` in the known-hosts files.
    Records { host: String, port: u16, pinned: Option<Box<PublicKey>>, files: Vec<PathBuf> },
    /// Not at all: the key is kept and the handshake refused.
    Capture,
}

/// russh's callbacks for one connection.
#[derive(Debug)]
pub(super) struct Client {
    check: Check,
    /// The key the server showed and the verdict on it, read back when the handshake fails.
    seen: Arc<StdMutex<Option<(PublicKey, Verdict)>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, shown: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = shown.public_key();
        let verdict = match &self.check {
            Check::Capture => Verdict::Unknown,
            Check::Records { host, port, pinned, files } => {
                known_hosts::verify(host, *port, &key, pinned.as_deref(), files)
            }
        };
        let trusted = verdict == Verdict::Trusted;
        *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((key, verdict));
        Ok(trusted)
    }
}
