//! The runtime's token counters ([`counters`]): the embedded model's own tokenizer, read from
//! its GGUF's header; OpenAI's encodings for OpenAI-family models; the estimate for the others
//! (see [`exoclaw_memory::tokens`]). One set per runtime, shared by the memory (the context
//! budget) and the agents (their system prompt and tools).

use crate::config::{Config, ProviderKind};
use exoclaw_local::catalog::{self, ModelSource};
use exoclaw_local::tokenizer::GgufTokenizer;
use exoclaw_memory::tokens::{CounterError, CounterSource, Counters, Estimate, Prepare, TokenCounter};
use std::sync::Arc;

/// The counters of `config`'s models.
pub(crate) fn counters(config: &Arc<Config>) -> Counters {
    Counters::new().with_source(Arc::new(EmbeddedVocabularies { config: Arc::clone(config) }))
}

/// The tokenizers of the models an embedded provider instance serves, read from the GGUF's
/// header (its vocabulary): no weights are loaded to count, and a model the provider has not
/// loaded yet is counted exactly too.
#[derive(Debug)]
struct EmbeddedVocabularies {
    config: Arc<Config>,
}

impl CounterSource for EmbeddedVocabularies {
    fn prepare(&self, model: &str) -> Option<Prepare> {
        let (provider, name) = model.split_once('/')?;
        let instance = self.config.provider(provider).filter(|p| p.kind == ProviderKind::Local)?;
        let options = crate::models::local_options(&instance, &self.config);
        let (model, name) = (model.to_owned(), name.to_owned());
        Some(Box::new(move || {
            let failed = |e: exoclaw_local::LocalError| CounterError::Tokenizer {
                model: model.clone(),
                source: Box::new(e),
            };
            // Found, never fetched: a model still downloading is counted once it is here.
            let path = match catalog::resolve(&options.locator, &options.spec, &options.name, &name)
                .map_err(failed)?
            {
                ModelSource::Known(spec) => options.locator.find(&spec).map_err(failed)?,
                ModelSource::File(path) => path,
            };
            let tokenizer = GgufTokenizer::from_file(&path).map_err(failed)?;
            Ok(Arc::new(Gguf { model, tokenizer }) as Arc<dyn TokenCounter>)
        }))
    }
}

/// Counts with a GGUF model's own tokenizer.
struct Gguf {
    model: String,
    tokenizer: GgufTokenizer,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf").field("model", &self.model).field("tokenizer", &self.tokenizer).finish()
    }
}

impl TokenCounter for Gguf {
    fn count(&self, text: &str) -> usize {
        // Encoding fails only on a defect of the vocabulary; the estimate then keeps the budget.
        self.tokenizer.count(text).unwrap_or_else(|_| Estimate.count(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Arc<Config> {
        Arc::new(Config::parse(toml, std::path::Path::new("test.toml")).unwrap())
    }

    #[test]
    fn the_embedded_model_is_counted_with_its_own_tokenizer() {
        let path = exoclaw_testkit::peers::smollm2_gguf();
        let config = config(&format!("[local]\nmodel_path = {:?}\n", path.display().to_string()));
        let counters = counters(&config);
        let counter = counters.exact("local/smollm2");
        let tokenizer = GgufTokenizer::from_file(&path).unwrap();
        for text in [
            "What is the capital of France?",
            "The committee met on Tuesday to discuss the recycling schedule.",
            "fn main() {\n    println!(\"Hello, world!\");\n}\n",
            "Café déjà vu 🦀🎉 naïve, 日本語のテキスト",
            "<|im_start|>user\nhello<|im_end|>\n",
        ] {
            assert_eq!(counter.count(text), tokenizer.encode(text).unwrap().len(), "{text:?}");
        }
        // 12 ids from llama.cpp's tokenizer (exoclaw-local's `chatml_turn_matches_llama_cpp`).
        assert_eq!(counter.count("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"), 12);
        assert!(format!("{counter:?}").contains("Gguf"), "{counter:?}");
    }

    #[test]
    fn a_local_model_that_is_not_here_and_other_providers_use_the_estimate() {
        let config = config("[local]\nmodel_path = \"/nonexistent/model.gguf\"\n");
        let counters = counters(&config);
        assert_eq!(counters.exact("local/smollm2").count("abcdef"), 2);
        assert_eq!(counters.exact("anthropic/claude-sonnet-4-5").count("abcdef"), 2);
        assert_eq!(counters.exact("openai/gpt-4o").count("hello world"), 2);
    }
}
