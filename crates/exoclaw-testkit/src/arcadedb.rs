//! A real ArcadeDB server for a test: the server from the PyPI wheel `arcadedb-embedded` (its own
//! Java runtime and jars, installed and cached by `scripts/peers/arcadedb.sh`), started on a free
//! loopback port with a throwaway root directory and root password, and killed when dropped.
//!
//! Start-up takes about 2 s on this project's 2-core machines; the JVM is capped at a 256 MiB heap
//! and peaks at about 150 MiB resident. Several test processes may each start one at once: each
//! picks its own port, and a start that loses its port to another process is retried on a new one.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::peers::obtain;

/// The user the tests log in as.
pub const ARCADEDB_USER: &str = "root";

/// How long a server may take to answer after it is started (a cold JVM on a busy 2-core machine
/// takes a few seconds; this is generous so that a loaded CI machine does not fail tests).
const START_WITHIN: Duration = Duration::from_secs(90);

/// How many ports a start tries before giving up (another process may take the port between our
/// finding it free and the JVM binding it).
const START_ATTEMPTS: usize = 3;

/// JVM options: a heap cap so several servers fit beside the build, the serial collector (fewer
/// threads on 2 cores) and C1 only (faster start, and tests run far too briefly for C2 to pay).
const JVM_OPTIONS: [&str; 3] = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"];

/// Distinguishes databases created by one process.
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The folder holding ArcadeDB's `jre/` and `jars/`, installed by `scripts/peers/arcadedb.sh`
/// (run here, so a missing install is made now; a failed one fails the test, saying so).
pub fn arcadedb_home() -> PathBuf {
    let home = obtain("arcadedb.sh");
    assert!(
        home.join("jre/bin/java").is_file() && home.join("jars").is_dir(),
        "{} has no jre/bin/java or jars/; run `bash scripts/peers/arcadedb.sh` to reinstall ArcadeDB",
        home.display()
    );
    home
}

/// A running ArcadeDB server on 127.0.0.1; killed (and its files removed) when dropped.
pub struct ArcadeDbServer {
    child: Child,
    addr: SocketAddr,
    password: String,
    root: tempfile::TempDir,
    started_in: Duration,
}

impl ArcadeDbServer {
    /// Installs ArcadeDB (first time only), starts a server on a free loopback port with an empty
    /// root directory, and waits until it answers `/api/v1/server` with its root password.
    pub fn start() -> Self {
        let home = arcadedb_home();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&home) {
                Ok(server) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("ArcadeDB did not start ({START_ATTEMPTS} tries):\n{}", failures.join("\n---\n"));
    }

    fn try_start(home: &Path) -> Result<Self, String> {
        let root = tempfile::Builder::new()
            .prefix("exoclaw-arcadedb-")
            .tempdir()
            .map_err(|e| format!("cannot make a root directory: {e}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let password = format!("exoclaw-{}-{port}", std::process::id());
        let started = Instant::now();
        let child = spawn(home, root.path(), port, &password)?;
        let mut server = Self { child, addr, password, root, started_in: Duration::ZERO };
        server.wait_ready(started)?;
        server.started_in = started.elapsed();
        Ok(server)
    }

    /// Kills the server (SIGKILL), as a crash or an outage would; its files stay for
    /// [`ArcadeDbServer::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, root directory and password, and waits until
    /// it answers: the databases written before the stop are there again.
    pub fn restart(&mut self) {
        self.stop();
        let started = Instant::now();
        let port = self.addr.port();
        self.child = spawn(&arcadedb_home(), self.root.path(), port, &self.password)
            .unwrap_or_else(|e| panic!("ArcadeDB did not restart: {e}"));
        if let Err(e) = self.wait_ready(started) {
            panic!("ArcadeDB did not restart: {e}");
        }
    }

    fn wait_ready(&mut self, started: Instant) -> Result<(), String> {
        while started.elapsed() < START_WITHIN {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited during start-up ({status}):\n{}", self.output_tail()));
            }
            // Asked with our password, so that another test's server which took the port is not
            // mistaken for ours.
            let auth = (ARCADEDB_USER, self.password.as_str());
            match request(self.addr, "GET", "/api/v1/server", Some(auth), "") {
                Ok((200, _)) => return Ok(()),
                Ok((401 | 403, _)) => {
                    return Err(format!("another server answers on {} (it refused our password)", self.addr));
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the server did not answer within {START_WITHIN:?}:\n{}", self.output_tail()))
    }

    /// The last lines the server wrote, for failure messages.
    pub fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.root.path().join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The root user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// How long the server took to answer after it was started.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The server process's peak resident memory so far, in KiB (Linux's `VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// `arcadedb://root:PASSWORD@127.0.0.1:PORT/DATABASE`, the URL exoclaw's adapter takes.
    pub fn url(&self, database: &str) -> String {
        format!("arcadedb://{ARCADEDB_USER}:{}@{}/{database}", self.password, self.addr)
    }

    /// Creates the database `name` (`create database NAME` on `/api/v1/server`).
    pub fn create_database(&self, name: &str) {
        let body = format!(r#"{{"command":"create database {name}"}}"#);
        let auth = (ARCADEDB_USER, self.password.as_str());
        match request(self.addr, "POST", "/api/v1/server", Some(auth), &body) {
            Ok((200, _)) => {}
            Ok((status, reply)) => panic!("ArcadeDB refused to create database {name} ({status}): {reply}"),
            Err(e) => panic!("cannot reach ArcadeDB at {} to create database {name}: {e}", self.addr),
        }
    }

    /// A new, empty database with a name of its own; gives its `arcadedb://` URL.
    pub fn fresh_database(&self) -> String {
        let name =
            format!("exoclaw_test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name);
        self.url(&name)
    }
}

impl Drop for ArcadeDbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server's JVM on `port` with `root` as its root directory, its output appended to
/// `root/server.out`.
fn spawn(home: &Path, root: &Path, port: u16, password: &str) -> Result<Child, String> {
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("server.out"))
        .map_err(|e| format!("cannot open the server's output file: {e}"))?;
    let errors = output.try_clone().map_err(|e| format!("cannot share the output file: {e}"))?;
    let mut classpath = home.join("jars").into_os_string();
    classpath.push("/*");
    Command::new(home.join("jre/bin/java"))
        .args(JVM_OPTIONS)
        .arg(format!("-Darcadedb.server.rootPassword={password}"))
        .arg("-Darcadedb.server.httpIncomingHost=127.0.0.1")
        .arg(format!("-Darcadedb.server.httpIncomingPort={port}"))
        .arg(format!("-Darcadedb.server.rootPath={}", root.display()))
        .arg(format!("-Darcadedb.server.databaseDirectory={}", root.join("databases").display()))
        .arg("-cp")
        .arg(classpath)
        .arg("com.arcadedb.server.ArcadeDBServer")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", home.join("jre/bin/java").display()))
}

/// One HTTP/1.0 request to the server: gives the status code and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    if let Some((user, password)) = auth {
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    Ok((status, body))
}

/// Standard base64 with padding (for HTTP Basic auth; not worth a dependency).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
