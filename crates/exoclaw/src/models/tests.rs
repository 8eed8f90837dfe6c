//! Model resolution and opening providers, with the environment given as a map.

use super::*;
use crate::config::load::parse_in;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use std::collections::HashMap;
use std::path::Path;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

fn config(text: &str) -> Config {
    parse_in(text, Path::new("config.toml"), &env(&[])).unwrap()
}

/// The default model (nothing requested) under `vars`, as `provider/model`.
fn default_under(config: &Config, vars: &[(&str, &str)]) -> String {
    config.resolve_in(None, &env(vars)).unwrap().model.to_string()
}

fn resolve(config: &Config, requested: &str) -> Result<ResolvedModel, ConfigError> {
    config.resolve_in(Some(&requested.parse().unwrap()), &env(&[]))
}

const SIDE_BY_SIDE: &str = r#"
[providers.work]
kind = "openai"
base_url = "http://gateway.work.example/v1"
api_key_env = "WORK_KEY"
default_model = "gpt-4o"

[providers.home]
kind = "openai"
base_url = "http://192.168.1.5:8000/v1"
"#;

#[test]
fn with_nothing_configured_the_embedded_model_answers() {
    let resolved = Config::default().resolve_in(None, &env(&[])).unwrap();
    assert_eq!(resolved.model.to_string(), "local/smollm2");
    assert_eq!((resolved.provider.name.as_str(), resolved.provider.kind), ("local", ProviderKind::Local));
}

#[test]
fn a_vendor_key_in_the_environment_makes_that_vendor_the_default() {
    let none = Config::default();
    assert_eq!(default_under(&none, &[("ANTHROPIC_API_KEY", "sk-ant")]), "anthropic/claude-sonnet-4-5");
    assert_eq!(default_under(&none, &[("OPENAI_API_KEY", "sk")]), "openai/gpt-4o-mini");
    assert_eq!(default_under(&none, &[("GOOGLE_API_KEY", "g")]), "gemini/gemini-2.5-flash");
    assert_eq!(default_under(&none, &[("XAI_API_KEY", "x")]), "xai/grok-4");
    assert_eq!(default_under(&none, &[("OPENROUTER_API_KEY", "o")]), "openrouter/openrouter/auto");
    // In order: anthropic before openai, whatever the order of the variables.
    assert_eq!(
        default_under(&none, &[("OPENAI_API_KEY", "sk"), ("ANTHROPIC_API_KEY", "sk-ant")]),
        "anthropic/claude-sonnet-4-5"
    );
    // A blank key is no key.
    assert_eq!(default_under(&none, &[("ANTHROPIC_API_KEY", "  ")]), "local/smollm2");
}

#[test]
fn a_key_in_the_config_counts_and_its_default_model_is_used() {
    let keyed = config("[providers.xai]\nkind = \"xai\"\napi_key = \"xk\"\n");
    assert_eq!(default_under(&keyed, &[]), "xai/grok-4");
    let by_var = config(
        "[providers.openai]\nkind = \"openai\"\napi_key_env = \"MY_OPENAI\"\ndefault_model = \"gpt-4.1\"\n",
    );
    assert_eq!(default_under(&by_var, &[]), "local/smollm2", "the variable it names is unset");
    assert_eq!(default_under(&by_var, &[("MY_OPENAI", "sk")]), "openai/gpt-4.1");
    // With api_key_env set, that variable is the only place the key is taken from.
    assert_eq!(default_under(&by_var, &[("OPENAI_API_KEY", "sk")]), "local/smollm2");
}

#[test]
fn the_configured_model_beats_the_key_scan_and_a_request_beats_both() {
    let configured = config("model = \"gemini/gemini-2.5-pro\"\n");
    assert_eq!(default_under(&configured, &[("ANTHROPIC_API_KEY", "sk-ant")]), "gemini/gemini-2.5-pro");
    let requested = configured.resolve_in(Some(&"openai/o3".parse().unwrap()), &env(&[])).unwrap();
    assert_eq!(requested.model.to_string(), "openai/o3");
}

#[test]
fn exoclaw_model_overrides_the_configured_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "model = \"openai/gpt-4o\"\n").unwrap();
    let vars = env(&[("HOME", dir.path().to_str().unwrap()), ("EXOCLAW_MODEL", "anthropic/claude-opus-4-1")]);
    let loaded = Config::load_in(Some(&file), &vars).unwrap();
    assert_eq!(loaded.config.resolve_in(None, &vars).unwrap().model.to_string(), "anthropic/claude-opus-4-1");
}

#[test]
fn two_instances_of_one_kind_sit_side_by_side() {
    let config = config(SIDE_BY_SIDE);
    let work = resolve(&config, "work/gpt-4o").unwrap();
    assert_eq!(work.model.to_string(), "work/gpt-4o");
    assert_eq!(work.provider.name, "work");
    assert_eq!(work.provider.kind, ProviderKind::OpenAi);
    assert_eq!(work.provider.base_url.as_deref(), Some("http://gateway.work.example/v1"));
    let home = resolve(&config, "home/qwen3").unwrap();
    assert_eq!(home.provider.base_url.as_deref(), Some("http://192.168.1.5:8000/v1"));
    // The built-in openai instance is still there, untouched.
    assert_eq!(resolve(&config, "openai/gpt-4o").unwrap().provider.base_url, None);
}

#[test]
fn naming_only_a_provider_means_its_default_model() {
    let config = config(SIDE_BY_SIDE);
    let only = |name: &str| config.resolve_in(Some(&ModelChoice::Provider(name.into())), &env(&[]));
    assert_eq!(only("work").unwrap().model.to_string(), "work/gpt-4o");
    assert_eq!(only("anthropic").unwrap().model.to_string(), "anthropic/claude-sonnet-4-5");
    assert_eq!(
        only("home").unwrap_err().to_string(),
        "provider `home` has no default model: name the model as `home/MODEL`, or set `default_model` in \
         [providers.home]"
    );
}

#[test]
fn an_unknown_provider_is_refused_with_the_names_that_exist() {
    let err = resolve(&config(SIDE_BY_SIDE), "wrok/gpt-4o").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown provider `wrok` in `wrok/gpt-4o`; known providers: local, anthropic, openai, gemini, xai, \
         openrouter, ollama, llamacpp, model-manager, home, work — add a [providers.wrok] table with a `kind` \
         to the config, or use one of those"
    );
}

#[test]
fn the_embedded_provider_serves_its_model_and_any_gguf_file() {
    let err = resolve(&Config::default(), "local/llama3").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the embedded provider `local` has no model `llama3`; it serves `local/smollm2`"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let by_path = resolve(&Config::default(), &format!("local/{}", file.display())).unwrap();
    assert_eq!(by_path.model.model.as_str(), file.display().to_string());
    let err = resolve(&Config::default(), "local/./nowhere.gguf").unwrap_err();
    assert!(err.to_string().contains("nowhere.gguf is not a file"), "{err}");
}

#[tokio::test]
async fn a_gateway_instance_gets_its_own_url_key_and_name_and_never_the_vendor_key() {
    let server =
        ScriptedServer::start([Reply::json(200, &serde_json::json!({"data": [{"id": "gpt-4o"}]}))]).await;
    let config = config(&format!(
        "[providers.work]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"WORK_KEY\"\n",
        server.url()
    ));
    let vars = env(&[
        ("WORK_KEY", "work-key"),
        ("OPENAI_API_KEY", "sk-personal"),
        ("OPENAI_BASE_URL", "http://nope"),
    ]);
    let resolved = config.resolve_in(Some(&"work/gpt-4o".parse().unwrap()), &vars).unwrap();
    let provider = open_in(&resolved, &config, &mut |_, _| {}, &vars).await.unwrap();
    assert_eq!(provider.name(), "work", "usage is recorded under the instance's name");
    let models = provider.models().await.unwrap();
    assert_eq!(models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["gpt-4o"]);
    let request = server.request();
    assert_eq!(request.path, "/v1/models");
    assert_eq!(request.header("authorization"), Some("Bearer work-key"));
}

#[tokio::test]
async fn a_gateway_instance_without_a_key_says_how_to_give_it_one() {
    let config = config(SIDE_BY_SIDE);
    let vars = env(&[("OPENAI_API_KEY", "sk-personal")]);
    let resolved = config.resolve_in(Some(&"home/qwen3".parse().unwrap()), &vars).unwrap();
    let err = open_in(&resolved, &config, &mut |_, _| {}, &vars).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `home` has no API key: set `api_key_env = \"VARIABLE\"` in [providers.home] (vendor \
         variables such as OPENAI_API_KEY are not sent to a provider with its own base_url)"
    );
    let resolved = config.resolve_in(Some(&"work/gpt-4o".parse().unwrap()), &vars).unwrap();
    let err = open_in(&resolved, &config, &mut |_, _| {}, &vars).await.unwrap_err();
    assert!(
        err.to_string().starts_with("provider `work` reads its API key from WORK_KEY, which is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn built_in_instances_take_the_vendor_variables() {
    let config = Config::default();
    let vars = env(&[("ANTHROPIC_API_KEY", "sk-ant")]);
    let resolved = config.resolve_in(None, &vars).unwrap();
    let provider = open_in(&resolved, &config, &mut |_, _| {}, &vars).await.unwrap();
    assert_eq!(provider.name(), "anthropic");
    // Without the variable, the provider's own error names it.
    let resolved = config.resolve_in(Some(&"gemini/gemini-2.5-flash".parse().unwrap()), &env(&[])).unwrap();
    let err = open_in(&resolved, &config, &mut |_, _| {}, &env(&[])).await.unwrap_err();
    assert!(err.to_string().contains("GEMINI_API_KEY"), "{err}");
    // Local servers need no key.
    let resolved = config.resolve_in(Some(&"ollama/qwen3".parse().unwrap()), &env(&[])).unwrap();
    assert!(open_in(&resolved, &config, &mut |_, _| {}, &env(&[])).await.is_ok());
}

#[tokio::test]
async fn the_embedded_model_uses_the_configured_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let config = config(&format!("[local]\nmodel_path = \"{}\"\n", missing.display()));
    let resolved = config.resolve_in(None, &env(&[])).unwrap();
    let err = open_in(&resolved, &config, &mut |_, _| {}, &env(&[])).await.unwrap_err();
    // The explicit file is used as is: no cache lookup, no download.
    assert!(err.to_string().contains(&format!("{} does not exist", missing.display())), "{err}");

    let wrong = ResolvedModel { model: "local/llama3".parse().unwrap(), provider: resolved.provider.clone() };
    let err = open_in(&wrong, &config, &mut |_, _| {}, &env(&[])).await.unwrap_err();
    assert!(err.to_string().contains("has no model `llama3`"), "{err}");
}

#[test]
fn listings_show_the_providers_that_can_answer() {
    let config = config(SIDE_BY_SIDE);
    assert_eq!(config.available_in(&env(&[])), ["local", "home", "work"]);
    let vars = env(&[("ANTHROPIC_API_KEY", "k"), ("OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1")]);
    assert_eq!(config.available_in(&vars), ["local", "anthropic", "ollama", "home", "work"]);
    assert!(config.is_local("local"));
    assert!(!config.is_local("work"));
    assert!(!config.is_local("nope"));
}
