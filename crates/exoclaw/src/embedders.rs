//! Embedding models from the configuration: the embedding API of a provider instance (a
//! `[providers.NAME]` table or a built-in one), opened for the gateway's `/v1/embeddings` and for
//! library users ([`open_embedder`], or [`Embedders`], which keeps what it opened).
//!
//! An embedding model is named like a chat model, `NAME/model` (`openai/text-embedding-3-small`,
//! `gemini/gemini-embedding-001`, `llamacpp/nomic-embed-text`), or by an alias under
//! `[routing.aliases]` that names one; no other configuration is needed. Whether the instance can
//! make embeddings is its kind's:
//!
//! - `openai` and the OpenAI-compatible kinds (`xai`, `openrouter`, `ollama`, `llamacpp`,
//!   `model-manager`): `POST {base_url}/embeddings`, in batches of 256 texts. Only kind `openai`
//!   takes `dimensions` (OpenAI's `text-embedding-3-*`); the others are not known to, so a
//!   request that sets it is refused rather than answered with vectors of another length.
//! - `gemini`: `batchEmbedContents`, in batches of 100; `dimensions` becomes
//!   `outputDimensionality`.
//! - `anthropic`: Anthropic's API has no embeddings ([`EmbedderError::NoEmbeddings`]).
//! - `local`: the embedded embedding model, all-MiniLM-L6-v2 on candle (`local/all-MiniLM-L6-v2`,
//!   found in or fetched into the model cache like the chat model; [`open_local`]).

use crate::config::load::{Lookup, process_env};
use crate::config::provider::Api;
use crate::config::{Config, ConfigError, ProviderConfig, ProviderKind};
use crate::models::{OpenError, provider_options};
use exoclaw_core::Embedder;
use exoclaw_providers::{Gemini, OpenAiCompatible};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// An embedder opened for one provider instance.
#[derive(Debug, Clone)]
pub struct OpenedEmbedder {
    /// What makes the vectors; it takes the model name with each request.
    pub embedder: Arc<dyn Embedder>,
    /// Whether its API takes `dimensions` (kinds `openai` and `gemini`).
    pub dimensions: bool,
}

/// Why no embedder could be opened for a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedderError {
    /// The instance's API has no embeddings.
    #[error(
        "provider `{provider}` speaks {api}, which has no embeddings API; use an embedding model of an OpenAI-compatible or Gemini provider (such as `openai/text-embedding-3-small` or `gemini/gemini-embedding-001`)"
    )]
    NoEmbeddings {
        /// The provider instance.
        provider: String,
        /// Its API, as its kind is written in config (`anthropic`).
        api: &'static str,
    },
    /// The instance could not be opened (its key is not set, its base URL is wrong, it is not
    /// configured).
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// The embedders of a configuration's provider instances, each opened on first use and kept
/// (one HTTP connection pool per instance, as the chat providers have).
pub struct Embedders {
    config: Arc<Config>,
    /// By provider instance for the cloud APIs (the model is named in each request); by
    /// `provider/model` for the embedded provider, which loads one model per embedder.
    opened: Mutex<HashMap<String, OpenedEmbedder>>,
}

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opened = self.opened.lock().map(|o| o.len()).unwrap_or_default();
        f.debug_struct("Embedders").field("opened", &opened).finish_non_exhaustive()
    }
}

impl Embedders {
    /// None opened yet.
    pub fn new(config: Arc<Config>) -> Self {
        Self { config, opened: Mutex::new(HashMap::new()) }
    }

    /// The embedder of `provider` for `model` (as the provider names it), opened now if it is
    /// not open yet. Cloud instances open without any network call.
    pub async fn open(&self, provider: &str, model: &str) -> Result<OpenedEmbedder, EmbedderError> {
        let instance = instance(&self.config, provider)?;
        let key = match instance.kind {
            ProviderKind::Local => format!("{provider}/{model}"),
            _ => provider.to_owned(),
        };
        if let Some(opened) = self.lock().get(&key) {
            return Ok(opened.clone());
        }
        // Opened outside the lock; two first requests at once may both open one, and the first
        // kept is used from then on.
        let opened = open_in(&self.config, &instance, model, &process_env).await?;
        Ok(self.lock().entry(key).or_insert(opened).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenedEmbedder>> {
        match self.opened.lock() {
            Ok(opened) => opened,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Opens the embedder of the provider instance `provider` for `model` (as the provider names
/// it: `text-embedding-3-small` on `openai`), under the instance's name, base URL and key, as
/// its chat provider is opened ([`crate::models::open_instance`]). Not kept: see [`Embedders`].
pub async fn open_embedder(
    config: &Config,
    provider: &str,
    model: &str,
) -> Result<OpenedEmbedder, EmbedderError> {
    let instance = instance(config, provider)?;
    open_in(config, &instance, model, &process_env).await
}

/// The provider instance `name`, configured or built in.
fn instance(config: &Config, name: &str) -> Result<ProviderConfig, OpenError> {
    config.provider(name).ok_or_else(|| {
        OpenError::Config(ConfigError::UnknownProvider {
            name: name.to_owned(),
            requested: name.to_owned(),
            known: config.provider_names().join(", "),
        })
    })
}

async fn open_in(
    config: &Config,
    provider: &ProviderConfig,
    model: &str,
    lookup: Lookup<'_>,
) -> Result<OpenedEmbedder, EmbedderError> {
    let (embedder, dimensions): (Arc<dyn Embedder>, bool) = match provider.kind.api() {
        Api::OpenAi(preset) => {
            let openai = OpenAiCompatible::new(preset, provider_options(provider, lookup)?)
                .map_err(OpenError::from)?;
            (Arc::new(openai), provider.kind == ProviderKind::OpenAi)
        }
        Api::Gemini => {
            let gemini = Gemini::new(provider_options(provider, lookup)?).map_err(OpenError::from)?;
            (Arc::new(gemini), true)
        }
        Api::Anthropic => {
            return Err(EmbedderError::NoEmbeddings {
                provider: provider.name.clone(),
                api: provider.kind.as_str(),
            });
        }
        Api::Local => return open_local(config, provider, model).await,
    };
    Ok(OpenedEmbedder { embedder, dimensions })
}

/// Opens an embedded (`local/…`) embedding model: `provider` is the instance of kind `local`,
/// `model` the name after `local/`: `all-MiniLM-L6-v2` (any case), found in the model cache
/// (`[local]`'s, as the chat model's) or fetched into it. Its vectors have the model's own
/// length only (`dimensions` is refused).
async fn open_local(
    config: &Config,
    provider: &ProviderConfig,
    model: &str,
) -> Result<OpenedEmbedder, EmbedderError> {
    let locator = crate::models::local_options(provider, config).locator;
    open_local_in(&provider.name, model, locator, &mut |_, _| {}).await
}

/// [`open_local`] for the instance named `provider`, looking for (or fetching) the model where
/// `locator` says, telling `progress` how a download goes.
pub(crate) async fn open_local_in(
    provider: &str,
    model: &str,
    locator: exoclaw_local::fetch::Locator,
    progress: exoclaw_local::fetch::Progress<'_>,
) -> Result<OpenedEmbedder, EmbedderError> {
    let minilm = exoclaw_local::fetch::ALL_MINILM_L6_V2.name;
    if !model.eq_ignore_ascii_case(minilm) {
        return Err(EmbedderError::Open(OpenError::Local(
            exoclaw_local::LocalError::UnknownEmbeddingModel {
                provider: provider.to_owned(),
                requested: model.to_owned(),
                served: minilm.to_owned(),
            },
        )));
    }
    let options = exoclaw_local::LocalEmbedderOptions {
        name: provider.to_owned(),
        locator,
        ..exoclaw_local::LocalEmbedderOptions::default()
    };
    let embedder = exoclaw_local::LocalEmbedder::open(options, progress).await.map_err(OpenError::from)?;
    Ok(OpenedEmbedder { embedder: Arc::new(embedder), dimensions: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse_in;
    use exoclaw_testkit::server::{Reply, ScriptedServer};
    use exoclaw_types::EmbeddingRequest;
    use serde_json::json;
    use std::path::Path;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn config(text: &str) -> Config {
        parse_in(text, Path::new("config.toml"), &env(&[])).unwrap()
    }

    async fn open(
        config: &Config,
        provider: &str,
        vars: &[(&str, &str)],
    ) -> Result<OpenedEmbedder, EmbedderError> {
        let instance = instance(config, provider)?;
        open_in(config, &instance, "m", &env(vars)).await
    }

    #[tokio::test]
    async fn openai_compatible_and_gemini_instances_have_embeddings() {
        let none = Config::default();
        let openai = open(&none, "openai", &[("OPENAI_API_KEY", "sk")]).await.unwrap();
        assert!(openai.dimensions, "OpenAI's text-embedding-3 models shorten their vectors");
        let gemini = open(&none, "gemini", &[("GEMINI_API_KEY", "g")]).await.unwrap();
        assert!(gemini.dimensions);
        // Keyless servers open without a key; not known to take `dimensions`.
        let llamacpp = open(&none, "llamacpp", &[]).await.unwrap();
        assert!(!llamacpp.dimensions);
        let ollama = open(&none, "ollama", &[]).await.unwrap();
        assert!(!ollama.dimensions);
    }

    #[tokio::test]
    async fn anthropic_has_none_local_serves_minilm_and_a_missing_key_is_said() {
        let none = Config::default();
        let e = open(&none, "anthropic", &[("ANTHROPIC_API_KEY", "sk-ant")]).await.unwrap_err();
        assert!(matches!(e, EmbedderError::NoEmbeddings { api: "anthropic", .. }), "{e:?}");
        assert!(e.to_string().contains("openai/text-embedding-3-small"), "{e}");
        // The embedded provider's only named embedding model is MiniLM (or a folder by path).
        let e = open(&none, "local", &[]).await.unwrap_err();
        assert!(e.to_string().contains("all-MiniLM-L6-v2"), "{e}");
        // In the model cache, where the peer script puts it.
        exoclaw_testkit::peers::minilm_dir();
        let local = instance(&none, "local").unwrap();
        let minilm = open_in(&none, &local, "all-minilm-l6-v2", &env(&[])).await.unwrap();
        assert!(!minilm.dimensions);
        let request = EmbeddingRequest::new("all-MiniLM-L6-v2", vec!["a cat".into(), "a kitten".into()]);
        let vectors = minilm.embedder.embed(request).await.unwrap();
        assert_eq!(vectors.vectors.len(), 2);
        assert_eq!(vectors.vectors[0].len(), 384);
        let keyed = config(
            "[providers.work]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"WORK_KEY\"\n",
        );
        let e = open(&keyed, "work", &[]).await.unwrap_err();
        assert!(matches!(e, EmbedderError::Open(OpenError::KeyVarUnset { .. })), "{e:?}");
        let e = open(&keyed, "nope", &[]).await.unwrap_err();
        assert!(matches!(e, EmbedderError::Open(OpenError::Config(_))), "{e:?}");
    }

    #[tokio::test]
    async fn a_configured_instance_embeds_under_its_own_base_url_and_key_and_is_kept() {
        let answer = json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
            "usage": {"prompt_tokens": 2, "total_tokens": 2}});
        let server = ScriptedServer::start([Reply::json(200, &answer)]).await;
        let text = format!(
            "[providers.work]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-work\"\n",
            server.url()
        );
        let embedders = Embedders::new(Arc::new(config(&text)));
        let opened = embedders.open("work", "text-embedding-3-small").await.unwrap();
        let mut request = EmbeddingRequest::new("text-embedding-3-small", vec!["hi there".into()]);
        request.dimensions = Some(2);
        let embeddings = opened.embedder.embed(request).await.unwrap();
        assert_eq!(embeddings.vectors, vec![vec![0.5, -1.0]]);
        assert_eq!(embeddings.input_tokens, Some(2));
        let sent = server.request();
        assert_eq!(sent.path, "/v1/embeddings");
        assert_eq!(sent.header("authorization"), Some("Bearer sk-work"));
        assert_eq!(sent.body["input"], json!(["hi there"]));
        assert_eq!(sent.body["dimensions"], 2);
        // The second time, the same embedder.
        let again = embedders.open("work", "other-model").await.unwrap();
        assert!(Arc::ptr_eq(&opened.embedder, &again.embedder));
    }
}
