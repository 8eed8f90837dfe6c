//! Which providers are available (from the environment for now) and opening one for a model.

use crate::output;
use anyhow::{Context, bail};
use exoclaw_core::Provider;
use exoclaw_local::{LocalOptions, LocalProvider};
use exoclaw_providers::{Anthropic, Gemini, OpenAiCompatible, presets};
use exoclaw_types::ModelRef;
use std::sync::Arc;

/// Cloud providers in the order the default model is chosen, with the key variable that enables
/// each and the model used when only the provider is known.
const CLOUD: &[(&str, &str, &str)] = &[
    ("anthropic", "ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
    ("openai", "OPENAI_API_KEY", "gpt-4o-mini"),
    ("gemini", "GEMINI_API_KEY", "gemini-2.5-flash"),
    ("xai", "XAI_API_KEY", "grok-4"),
    ("openrouter", "OPENROUTER_API_KEY", "openrouter/auto"),
];

const KNOWN: &str = "local, anthropic, openai, gemini, xai, openrouter, ollama, llamacpp, model-manager";

fn has_env(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The first cloud provider with a key, else the embedded model.
pub fn default_model() -> ModelRef {
    let (provider, model) = CLOUD
        .iter()
        .find(|(_, key, _)| has_env(key))
        .map_or(("local", "smollm2"), |(provider, _, model)| (*provider, *model));
    ModelRef { provider: provider.into(), model: model.into() }
}

/// Opens the provider `model` names, fetching the local model first if needed.
pub async fn open(model: &ModelRef) -> anyhow::Result<Arc<dyn Provider>> {
    let name = model.provider.as_str();
    Ok(match name {
        "local" => {
            let options = LocalOptions::default();
            if model.model.as_str() != options.spec.name {
                bail!("the embedded provider has one model, `local/{}`; got `{model}`", options.spec.name);
            }
            let mut progress = output::Download::new();
            let provider = LocalProvider::open(options, &mut |done, total| progress.update(done, total))
                .await
                .context("the embedded model is not available")?;
            progress.finish();
            Arc::new(provider)
        }
        "anthropic" => Arc::new(Anthropic::from_env()?),
        "gemini" => Arc::new(Gemini::from_env()?),
        other => match presets::preset(other) {
            Some(preset) => Arc::new(OpenAiCompatible::from_env(preset)?),
            None => bail!("unknown provider `{other}` in `{model}`; known providers: {KNOWN}"),
        },
    })
}

/// Prints each available provider's models; a provider that fails is reported, not fatal.
pub async fn list() -> anyhow::Result<()> {
    let mut names = vec!["local"];
    names.extend(CLOUD.iter().filter(|(_, key, _)| has_env(key)).map(|(name, _, _)| *name));
    for name in names {
        let model =
            ModelRef { provider: name.into(), model: if name == "local" { "smollm2" } else { "-" }.into() };
        let result = match name {
            // Listing must not download or load 100 MB: the embedded model is known statically.
            "local" => Ok(vec![exoclaw_local::fetch::SMOLLM2_135M.name.to_owned()]),
            _ => match open(&model).await {
                Ok(provider) => provider
                    .models()
                    .await
                    .map(|m| m.into_iter().map(|m| m.id.0).collect())
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            },
        };
        output::models(name, result);
    }
    Ok(())
}
