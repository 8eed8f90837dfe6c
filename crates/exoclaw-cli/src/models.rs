//! `exoclaw models`: what each available provider offers.

use crate::output;
use exoclaw::config::Config;
use exoclaw_core::Provider;
use std::path::Path;
use std::sync::Arc;

/// Prints each available provider's models; a provider that fails is reported, not fatal.
pub async fn list(config: Option<&Path>) -> anyhow::Result<()> {
    let loaded = Config::load(config)?;
    let config = &loaded.config;
    for name in config.available_provider_names() {
        let result = if config.is_local(&name) {
            // Listing must not download or load 100 MB: the embedded model is known statically.
            Ok(vec![exoclaw_local::fetch::SMOLLM2_135M.name.to_owned()])
        } else {
            list_one(config, &name).await
        };
        output::models(&name, result);
    }
    Ok(())
}

async fn list_one(config: &Config, name: &str) -> anyhow::Result<Vec<String>> {
    let provider = open_by_name(config, name).await?;
    Ok(provider.models().await?.into_iter().map(|m| m.id.0).collect())
}

/// Opens the provider instance `name` on its own, for listing or checking it (no model in mind).
pub async fn open_by_name(config: &Config, name: &str) -> anyhow::Result<Arc<dyn Provider>> {
    let model = format!("{name}/-").parse()?;
    let resolved = config.resolve_model(Some(&model))?;
    Ok(exoclaw::models::open_provider(&resolved, config, &mut |_, _| {}).await?)
}
