//! `exoclaw models`: what each available provider offers.

use crate::output;
use exoclaw::config::Config;
use std::path::Path;

/// Prints each available provider's models; a provider that fails is reported, not fatal.
pub async fn list(config: Option<&Path>) -> anyhow::Result<()> {
    let loaded = Config::load_after_dotenv(config)?;
    let config = &loaded.config;
    for name in config.available_provider_names() {
        if config.is_local(&name) {
            // Listing must not download or load a model: the cache's GGUF headers say enough.
            match exoclaw::models::local_models(config, &name) {
                Ok(models) => output::local_models(&name, &models),
                Err(e) => output::models(&name, Err(e.into())),
            }
        } else {
            output::models(&name, list_one(config, &name).await);
        }
    }
    Ok(())
}

async fn list_one(config: &Config, name: &str) -> anyhow::Result<Vec<String>> {
    let provider = exoclaw::models::open_instance(config, name, &mut |_, _| {}).await?;
    Ok(provider.models().await?.into_iter().map(|m| m.id.0).collect())
}
