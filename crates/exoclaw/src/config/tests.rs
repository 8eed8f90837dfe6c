//! Loading, error messages, the template and redaction, as a user meets them.

use super::load::parse_in;
use super::*;
use exoclaw_core::Permission;
use pretty_assertions::assert_eq;
use std::collections::HashMap;
use std::path::PathBuf;

/// An environment made of `vars`, read through the loader's lookup.
pub(crate) fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

/// A temporary home folder with `config` written to `.exoclaw/config.toml` (unless `None`).
fn home_with(config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".exoclaw").join("config.toml");
    if let Some(text) = config {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
    }
    (dir, file)
}

fn load(home: &Path, extra: &[(&str, &str)]) -> Result<LoadedConfig, ConfigError> {
    let home = home.to_str().unwrap();
    let mut vars = vec![("HOME", home)];
    vars.extend_from_slice(extra);
    Config::load_in(None, &env(&vars))
}

/// The error for `text` read from `/etc/exoclaw.toml`.
fn parse_error(text: &str) -> String {
    match parse_in(text, Path::new("/etc/exoclaw.toml"), &env(&[])) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn with_no_config_at_all_sessions_go_to_sqlite_under_the_home() {
    let (dir, _) = home_with(None);
    let loaded = load(dir.path(), &[]).unwrap();
    assert_eq!(loaded.path, None);
    assert_eq!(loaded.home, dir.path().join(".exoclaw"));
    assert_eq!(loaded.storage_url(), format!("sqlite://{}/.exoclaw/exoclaw.db", dir.path().display()));
    assert_eq!(loaded.config.agent.max_iterations, 20);
    assert_eq!(loaded.config.agent.limits().tool_timeout.as_secs(), 120);
    assert_eq!(loaded.config.permissions, exoclaw_core::PermissionPolicy::default());
    assert_eq!(loaded.config_file(), dir.path().join(".exoclaw/config.toml"));
}

#[test]
fn exoclaw_home_moves_the_config_file_and_the_database() {
    let (dir, _) = home_with(None);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("config.toml"), "[agent]\nmax_iterations = 3\n").unwrap();
    let loaded = load(dir.path(), &[("EXOCLAW_HOME", elsewhere.to_str().unwrap())]).unwrap();
    assert_eq!(loaded.path, Some(elsewhere.join("config.toml")));
    assert_eq!(loaded.config.agent.max_iterations, 3);
    assert_eq!(loaded.storage_url(), format!("sqlite://{}/exoclaw.db", elsewhere.display()));
}

#[test]
fn a_named_config_file_must_exist_but_the_default_one_need_not() {
    let (dir, _) = home_with(None);
    let missing = dir.path().join("nope.toml");
    let err = load(dir.path(), &[("EXOCLAW_CONFIG", missing.to_str().unwrap())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file ~/nope.toml (from EXOCLAW_CONFIG) does not exist; check the path, or create it \
         with `exoclaw config init`"
    );
    let home = dir.path().to_str().unwrap();
    let err = Config::load_in(Some(&missing), &env(&[("HOME", home)])).unwrap_err();
    assert!(err.to_string().contains("(from --config)"), "{err}");
}

#[test]
fn an_explicit_path_beats_exoclaw_config_which_beats_the_home() {
    let (dir, _) = home_with(Some("[agent]\nmax_iterations = 1\n"));
    let from_env = dir.path().join("env.toml");
    std::fs::write(&from_env, "[agent]\nmax_iterations = 2\n").unwrap();
    let explicit = dir.path().join("explicit.toml");
    std::fs::write(&explicit, "[agent]\nmax_iterations = 3\n").unwrap();
    let home = dir.path().to_str().unwrap();
    let vars = env(&[("HOME", home), ("EXOCLAW_CONFIG", from_env.to_str().unwrap())]);
    assert_eq!(Config::load_in(Some(&explicit), &vars).unwrap().config.agent.max_iterations, 3);
    assert_eq!(Config::load_in(None, &vars).unwrap().config.agent.max_iterations, 2);
    assert_eq!(load(dir.path(), &[]).unwrap().config.agent.max_iterations, 1);
}

#[test]
fn environment_overrides_win_over_the_file() {
    let (dir, _) = home_with(Some("model = \"openai/gpt-4o\"\n[storage]\nurl = \"sqlite:///tmp/file.db\"\n"));
    let loaded = load(
        dir.path(),
        &[("EXOCLAW_MODEL", "anthropic/claude-opus-4-1"), ("EXOCLAW_STORAGE_URL", "postgres://db/exoclaw")],
    )
    .unwrap();
    assert_eq!(loaded.config.model.as_ref().unwrap().to_string(), "anthropic/claude-opus-4-1");
    assert_eq!(loaded.storage_url(), "postgres://db/exoclaw");
    // Blank variables count as unset.
    let loaded = load(dir.path(), &[("EXOCLAW_MODEL", " ")]).unwrap();
    assert_eq!(loaded.config.model.as_ref().unwrap().to_string(), "openai/gpt-4o");
}

#[test]
fn bad_environment_overrides_name_the_variable() {
    let (dir, _) = home_with(None);
    let err = load(dir.path(), &[("EXOCLAW_MODEL", "openai/")]).unwrap_err();
    assert!(err.to_string().starts_with("EXOCLAW_MODEL: `openai/` is not a model reference"), "{err}");
    let err = load(dir.path(), &[("EXOCLAW_STORAGE_URL", "mysql://root:hunter2@db/x")]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("EXOCLAW_STORAGE_URL: storage URL scheme `mysql://` is not supported"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn a_tilde_means_the_users_home() {
    let (dir, _) =
        home_with(Some("[storage]\nurl = \"sqlite://~/data/x.db\"\n[local]\nmodel_path = \"~/m.gguf\"\n"));
    let loaded = load(dir.path(), &[]).unwrap();
    assert_eq!(loaded.storage_url(), format!("sqlite://{}/data/x.db", dir.path().display()));
    assert_eq!(loaded.config.local.model_path, Some(dir.path().join("m.gguf")));
    let user_home = Path::new("/home/ada");
    let plain = Config { storage: StorageConfig { url: Some("~/x.db".into()) }, ..Config::default() };
    assert_eq!(plain.storage_url_in(Path::new("/unused"), Some(user_home)), "/home/ada/x.db");
}

#[test]
fn a_typo_in_a_key_is_reported_at_its_line_and_column_with_the_valid_keys() {
    let (dir, file) = home_with(Some("# my config\n\n  modle = \"openai/gpt-4o\"\n"));
    let err = load(dir.path(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "~/.exoclaw/config.toml:3:3: unknown field `modle`, expected one of `model`, `agent`, `storage`, \
         `permissions`, `hooks`, `local`, `memory`, `routing`, `providers`, `prices`, `budgets`, `gateway`, `agents`, `bindings`, `mcp`, `sandbox`, `ssh`, `plugins`, `channels` — fix it, then check with `exoclaw config check`"
    );
    assert!(file.exists());
}

#[test]
fn typos_inside_sections_are_caught_too() {
    let text = "[agent]\nmax_iterations = 5\nmax_iteration = 6\n";
    assert!(parse_error(text).starts_with("/etc/exoclaw.toml:3:1: unknown field `max_iteration`"));
    // PermissionPolicy itself accepts unknown keys; a misspelt rule must not silently do nothing.
    let text = "[permissions]\nmutatng = \"deny\"\n";
    assert!(parse_error(text).starts_with("/etc/exoclaw.toml:2:1: unknown field `mutatng`"));
    let text = "[permissions]\ntools = { shell = \"never\" }\n";
    let message = parse_error(text);
    assert!(message.starts_with("/etc/exoclaw.toml:2:19: unknown variant `never`"), "{message}");
    assert!(message.contains("`allow`, `ask`, `deny`"), "{message}");
    let text = "[providers.work]\nkind = \"openai\"\nbase_urll = \"http://x\"\n";
    assert!(parse_error(text).starts_with("/etc/exoclaw.toml:3:1: unknown field `base_urll`"));
}

#[test]
fn malformed_toml_is_reported_at_its_line_and_column() {
    // The closing quote is missing where the line ends.
    let message = parse_error("[agent]\nmax_iterations = 20\nsystem = \"unterminated\n");
    assert!(message.starts_with("/etc/exoclaw.toml:3:23: invalid basic string"), "{message}");
    let message = parse_error("[agent\n");
    assert!(message.starts_with("/etc/exoclaw.toml:1:7: "), "{message}");
    let message = parse_error("[agent]\nmax_iterations = \"many\"\n");
    assert!(
        message.starts_with("/etc/exoclaw.toml:2:18: invalid type: string \"many\", expected u32"),
        "{message}"
    );
}

#[test]
fn an_unknown_provider_kind_lists_the_valid_ones() {
    let message = parse_error("[providers.work]\nkind = \"openia\"\n");
    assert_eq!(
        message,
        "/etc/exoclaw.toml:2:8: unknown variant `openia`, expected one of `anthropic`, `openai`, `gemini`, \
         `ollama`, `openrouter`, `xai`, `llamacpp`, `model-manager`, `local` — fix it, then check with \
         `exoclaw config check`"
    );
}

#[test]
fn a_key_and_a_key_variable_together_are_refused_without_showing_the_key() {
    let message = parse_error(
        "model = \"work\"\n\n[providers.work]\nkind = \"openai\"\napi_key = \"sk-top-secret\"\napi_key_env = \"K\"\n",
    );
    // Reported at the table that sets both.
    assert!(
        message.starts_with("/etc/exoclaw.toml:3:1: `api_key` and `api_key_env` are both set"),
        "{message}"
    );
    assert!(!message.contains("sk-top-secret"), "{message}");
}

#[test]
fn a_storage_url_of_an_unknown_kind_is_refused_at_its_position() {
    let message = parse_error("[storage]\nurl = \"mysql://root:hunter2@db/x\"\n");
    assert!(
        message.starts_with("/etc/exoclaw.toml:2:7: storage URL scheme `mysql://` is not supported"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    for fine in ["sqlite:///var/x.db", "sqlite::memory:", "/var/x.db", "postgresql://u@h/db"] {
        parse_in(&format!("[storage]\nurl = \"{fine}\"\n"), Path::new("c.toml"), &env(&[])).unwrap();
    }
}

#[test]
fn values_that_cannot_work_are_refused() {
    assert!(
        parse_error("[agent]\nmax_iterations = 0\n")
            .starts_with("/etc/exoclaw.toml:2:18: must be at least 1")
    );
    let message = parse_error("[providers.\"a/b\"]\nkind = \"openai\"\n");
    assert!(message.contains("provider name `a/b` cannot be used in a model reference"), "{message}");
    let message = parse_error("[providers.mine]\nkind = \"local\"\napi_key_env = \"X\"\n");
    assert!(message.contains("`api_key_env` means nothing to a provider of kind `local`"), "{message}");
    let message = parse_error("[providers.box]\nkind = \"ollama\"\nbase_url = \"192.168.1.2:11434\"\n");
    assert!(message.contains("`base_url` must start with http:// or https://"), "{message}");
    let message = parse_error("model = \"\"\n");
    assert!(message.starts_with("/etc/exoclaw.toml:1:9: ``"), "{message}");
}

#[test]
fn a_full_config_reads_into_every_section() {
    let text = r#"
model = "work"
[agent]
system = "Be brief."
max_iterations = 7
tool_timeout_secs = 30
[storage]
url = "postgres://exoclaw:pw@db:5432/exoclaw"
[permissions]
mutating = "deny"
tools = { read_file = "ask" }
auto_approve = true
[local]
model_path = "/models/tiny.gguf"
max_tokens = 64
[providers.work]
kind = "openai"
base_url = "https://gw.example.com/v1"
api_key_env = "WORK_KEY"
default_model = "gpt-4o"
"#;
    let config = parse_in(text, Path::new("c.toml"), &env(&[])).unwrap();
    assert_eq!(config.model, Some(ModelChoice::Provider("work".into())));
    assert_eq!(config.agent.system.as_deref(), Some("Be brief."));
    assert_eq!(config.agent.limits().max_iterations, 7);
    assert_eq!(config.agent.limits().tool_timeout.as_secs(), 30);
    assert_eq!(config.permissions.mutating, Permission::Deny);
    assert_eq!(config.permissions.read_only, Permission::Allow);
    assert_eq!(config.permissions.tools.get("read_file"), Some(&Permission::Ask));
    assert!(config.permissions.auto_approve);
    assert_eq!(config.local.model_path, Some(PathBuf::from("/models/tiny.gguf")));
    assert_eq!(config.local.max_tokens, 64);
    let work = config.provider("work").unwrap();
    assert_eq!((work.name.as_str(), work.kind), ("work", ProviderKind::OpenAi));
    assert_eq!(work.base_url.as_deref(), Some("https://gw.example.com/v1"));
    assert_eq!(work.api_key_env.as_deref(), Some("WORK_KEY"));
    assert_eq!(config.providers["work"].name, "work");
}

#[test]
fn built_in_providers_exist_without_configuration_and_tables_override_them() {
    let config = parse_in(
        "[providers.openai]\nkind = \"openai\"\nbase_url = \"http://proxy/v1\"\n[providers.home]\nkind = \"ollama\"\n",
        Path::new("c.toml"),
        &env(&[]),
    )
    .unwrap();
    let names = config.provider_names();
    assert_eq!(
        names,
        [
            "local",
            "anthropic",
            "openai",
            "gemini",
            "xai",
            "openrouter",
            "ollama",
            "llamacpp",
            "model-manager",
            "home"
        ]
    );
    assert_eq!(config.provider("openai").unwrap().base_url.as_deref(), Some("http://proxy/v1"));
    let gemini = Config::default().provider("gemini").unwrap();
    assert_eq!((gemini.name.as_str(), gemini.kind, gemini.base_url), ("gemini", ProviderKind::Gemini, None));
    assert!(Config::default().provider("work").is_none());
}

#[test]
fn the_template_as_written_gives_the_defaults() {
    let parsed = parse_in(Config::template(), Path::new("template.toml"), &env(&[])).unwrap();
    assert_eq!(toml::to_string(&parsed).unwrap(), toml::to_string(&Config::default()).unwrap());
}

#[test]
fn every_example_in_the_template_is_valid_when_uncommented() {
    let is_setting = |line: &str| {
        line.strip_prefix("# ").is_some_and(|rest| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
    };
    let uncommented: String = Config::template()
        .lines()
        .map(|line| if is_setting(line) { &line[2..] } else { line })
        .flat_map(|line| [line, "\n"])
        .collect();
    let config = parse_in(&uncommented, Path::new("template.toml"), &env(&[]))
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    // Each documented section really was uncommented, not skipped.
    assert_eq!(config.model, Some("anthropic/claude-sonnet-4-5".parse().unwrap()));
    assert_eq!(config.agent.system.as_deref(), Some("Answer briefly. Prefer British spelling."));
    assert_eq!(config.storage.url.as_deref(), Some("sqlite://~/.exoclaw/exoclaw.db"));
    assert_eq!(config.permissions.tools.get("shell"), Some(&Permission::Ask));
    assert_eq!(config.permissions.rules.len(), 2);
    assert_eq!(config.local.model_path, Some(PathBuf::from("/path/to/model.gguf")));
    assert_eq!(config.providers.keys().collect::<Vec<_>>(), ["anthropic", "box", "work"]);
    assert_eq!(config.prices.keys().collect::<Vec<_>>(), ["*/gpt-4o", "work/*"]);
    let budgets: Vec<&str> = config.budgets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(budgets, ["daily-dollars", "per-chat"]);
    assert_eq!(config.ssh.hosts.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(config.gateway.allowed_origins, ["https://app.example.com"]);
    assert_eq!(config.gateway.token_hashes.len(), 1);
    assert_eq!(config.agents.keys().collect::<Vec<_>>(), ["support"]);
    let bound: Vec<Option<&str>> = config.bindings.iter().map(|b| b.peer.as_deref()).collect();
    assert_eq!(bound, [None, Some("alice")]);
    // The documented storage default is the real one when the home is ~/.exoclaw.
    let user_home = Path::new("/home/ada");
    assert_eq!(
        config.storage_url_in(Path::new("/elsewhere"), Some(user_home)),
        Config::default().storage_url_in(&user_home.join(".exoclaw"), Some(user_home))
    );
}

#[test]
fn secrets_never_appear_in_the_printed_config() {
    let text = r#"
[storage]
url = "postgres://exoclaw:db-password-1@db:5432/exoclaw?sslpassword=tls-password-2"
[providers.work]
kind = "openai"
base_url = "https://gw.example.com/v1"
api_key = "sk-live-key-3"
[providers.proxy]
kind = "openai"
base_url = "https://me:proxy-token-4@proxy.example.com/v1"
[providers.other]
kind = "anthropic"
api_key_env = "OTHER_KEY"
"#;
    let config = parse_in(text, Path::new("c.toml"), &env(&[])).unwrap();
    let shown = config.redacted_toml();
    let debug = format!("{config:?}");
    for secret in ["db-password-1", "tls-password-2", "sk-live-key-3", "proxy-token-4"] {
        assert!(!shown.contains(secret), "{secret} in\n{shown}");
        assert!(!debug.contains(secret), "{secret} in\n{debug}");
    }
    assert!(shown.contains("api_key = \"<redacted>\""), "{shown}");
    assert!(
        shown.contains("url = \"postgres://exoclaw:<redacted>@db:5432/exoclaw?sslpassword=<redacted>\""),
        "{shown}"
    );
    // What is not secret is shown as configured.
    assert!(shown.contains("api_key_env = \"OTHER_KEY\""), "{shown}");
    assert!(shown.contains("base_url = \"https://gw.example.com/v1\""), "{shown}");
    // The printed config is itself a valid config (with the key a placeholder).
    parse_in(&shown, Path::new("shown.toml"), &env(&[])).unwrap();
}

#[test]
fn keys_from_the_environment_are_not_part_of_the_config() {
    let (dir, _) = home_with(Some("[providers.work]\nkind = \"openai\"\napi_key_env = \"WORK_KEY\"\n"));
    let loaded = load(dir.path(), &[("WORK_KEY", "sk-from-env"), ("OPENAI_API_KEY", "sk-vendor")]).unwrap();
    let shown = loaded.config.redacted_toml();
    assert!(!shown.contains("sk-from-env") && !shown.contains("sk-vendor"), "{shown}");
}

#[test]
fn chat_approvals_ask_by_default_and_a_bad_timeout_or_mode_is_reported_at_its_line() {
    let channels = parse_in("[channels]\n", Path::new("/etc/exoclaw.toml"), &env(&[])).unwrap().channels;
    assert_eq!(channels.approvals, exoclaw_channels::ApprovalMode::Ask);
    assert_eq!(channels.approval_timeout_secs, 300);
    let set = "[channels]\napprovals = \"refuse\"\napproval_timeout_secs = 60\n";
    let channels = parse_in(set, Path::new("/etc/exoclaw.toml"), &env(&[])).unwrap().channels;
    assert_eq!(channels.approvals, exoclaw_channels::ApprovalMode::Refuse);
    assert_eq!(channels.approval_timeout_secs, 60);

    let err = parse_error("[channels]\napproval_timeout_secs = 0\n");
    assert!(err.starts_with("/etc/exoclaw.toml:2:"), "{err}");
    assert!(err.contains("approval_timeout_secs must be between 1 and 86400"), "{err}");
    let err = parse_error("[channels]\napprovals = \"always\"\n");
    assert!(err.contains("unknown variant `always`, expected `ask` or `refuse`"), "{err}");
}

#[test]
fn chat_progress_messages_are_on_by_default_and_can_be_turned_off() {
    let parse = |text: &str| parse_in(text, Path::new("/etc/exoclaw.toml"), &env(&[]));
    let channels = parse("[channels]\n").unwrap().channels;
    assert!(channels.progress);
    assert!(channels.is_empty(), "the default is no configuration");
    let channels = parse("[channels]\nprogress = false\n").unwrap().channels;
    assert!(!channels.progress);
    assert!(!channels.is_empty());
    let err = parse_error("[channels]\nprogress = \"yes\"\n");
    assert!(err.starts_with("/etc/exoclaw.toml:2:"), "{err}");
}

#[test]
fn telegram_polls_by_default_and_a_bad_mode_or_app_token_variable_is_reported_at_its_line() {
    let parse = |text: &str| parse_in(text, Path::new("/etc/exoclaw.toml"), &env(&[])).unwrap().channels;
    let telegram = parse("[channels.telegram]\n").telegram.unwrap();
    assert_eq!(telegram.mode, exoclaw_channels::TelegramMode::Polling);
    let telegram = parse("[channels.telegram]\nmode = \"webhook\"\n").telegram.unwrap();
    assert_eq!(telegram.mode, exoclaw_channels::TelegramMode::Webhook);
    let slack = parse("[channels.slack]\napp_token_env = \"MY_APP_TOKEN\"\n").slack.unwrap();
    assert_eq!(slack.app_token_env.as_deref(), Some("MY_APP_TOKEN"));
    assert_eq!(parse("[channels.slack]\n").slack.unwrap().app_token_env, None);

    assert_eq!(parse("[channels.telegram]\n").telegram.unwrap().poll_timeout_secs, 30);
    assert_eq!(
        parse("[channels.telegram]\npoll_timeout_secs = 10\n").telegram.unwrap().poll_timeout_secs,
        10
    );
    let err = parse_error("[channels.telegram]\npoll_timeout_secs = 90\n");
    assert!(err.starts_with("/etc/exoclaw.toml:2:") && err.contains("between 1 and 50"), "{err}");

    let err = parse_error("[channels.telegram]\nmode = \"pull\"\n");
    assert!(err.starts_with("/etc/exoclaw.toml:2:"), "{err}");
    assert!(err.contains("mode = \"pull\"") && err.contains("\"polling\""), "{err}");
    // The token itself where its variable's name belongs: refused without being echoed.
    let err = parse_error("[channels.slack]\napp_token_env = \"xapp-1-A1-secret\"\n");
    assert!(err.starts_with("/etc/exoclaw.toml:2:"), "{err}");
    assert!(err.contains("not the token itself") && !err.contains("secret"), "{err}");
    let err = parse_error("[channels.slack]\napp_token_env = \"\"\n");
    assert!(err.contains("app_token_env is empty"), "{err}");
}

#[test]
fn memory_searches_by_meaning_with_the_embedded_model_unless_told_otherwise() {
    let parse = |text: &str| parse_in(text, Path::new("/etc/exoclaw.toml"), &env(&[])).unwrap().memory;
    let default = Config::default().memory;
    assert_eq!(default.embeddings.model(), Some(("local", "all-MiniLM-L6-v2")));
    assert_eq!(default.min_similarity, exoclaw_memory::rank::DEFAULT_MIN_SIMILARITY);
    assert_eq!(parse("[memory]\nembeddings = \"off\"\n").embeddings, EmbeddingsSetting::Off);
    let openai = parse("[memory]\nembeddings = \"openai/text-embedding-3-small\"\nmin_similarity = 0.4\n");
    assert_eq!(openai.embeddings.model(), Some(("openai", "text-embedding-3-small")));
    assert_eq!(openai.min_similarity, 0.4);
    // Written back as it is read.
    assert!(
        toml::to_string(&parse("[memory]\nembeddings = \"off\"\n")).unwrap().contains("embeddings = \"off\"")
    );

    let e = parse_error("[memory]\nembeddings = \"minilm\"\n");
    assert!(
        e.contains("`provider/model`") && e.contains("\"off\"") && e.contains("local/all-MiniLM-L6-v2"),
        "{e}"
    );
    let e = parse_error("[memory]\nmin_similarity = 2.5\n");
    assert!(e.contains("from -1 to 1"), "{e}");
}
