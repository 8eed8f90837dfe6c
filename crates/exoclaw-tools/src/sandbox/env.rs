//! Which environment variables a sandboxed command does not inherit: provider keys, tokens,
//! passwords and exoclaw's own settings, as data.
//!
//! A name is secret when, compared without regard to case, it
//! - is one of [`SECRET_ENV_NAMES`],
//! - starts with one of [`SECRET_ENV_PREFIXES`], or
//! - ends with one of [`SECRET_ENV_SUFFIXES`].
//!
//! Only what the command would *inherit* is removed: a variable set explicitly on the command
//! (by the caller, or by the model through `shell`'s `env`) is passed on, since whoever set it chose
//! to give it to the command.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};

/// Names that are secret on their own, whatever their shape: the providers exoclaw talks to, the
/// usual cloud and forge credentials, and connection strings that carry passwords. Most of them
/// also match a suffix; they are listed so the list reads as documentation.
pub const SECRET_ENV_NAMES: &[&str] = &[
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "HF_TOKEN",
    "DATABASE_URL",
    "PGPASSWORD",
    "MYSQL_PWD",
    "API_KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
];

/// Prefixes of secret names: exoclaw's own settings (`EXOCLAW_CONFIG` and the like point at its
/// configuration, which the sandbox hides).
pub const SECRET_ENV_PREFIXES: &[&str] = &["EXOCLAW_"];

/// Suffixes of secret names: `*_API_KEY` and every other `*_KEY`, `*_TOKEN`, `*_SECRET`,
/// `*_PASSWORD`, `*_PASSWD`, `*_CREDENTIALS`.
pub const SECRET_ENV_SUFFIXES: &[&str] =
    &["_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PASSWD", "_CREDENTIALS"];

/// Whether the environment variable `name` holds a secret: one of [`SECRET_ENV_NAMES`], or starting
/// with one of [`SECRET_ENV_PREFIXES`], or ending with one of [`SECRET_ENV_SUFFIXES`], regardless of
/// case. Only inherited variables are removed by the sandbox; ones set on the command are kept.
pub fn is_secret_env(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_ascii_uppercase();
    SECRET_ENV_NAMES.contains(&name.as_str())
        || SECRET_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
        || SECRET_ENV_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Removes from `cmd` every secret variable it would inherit from `inherited` (the parent's
/// environment), leaving those set explicitly on it; returns the names removed.
pub(crate) fn scrub(
    cmd: &mut std::process::Command,
    inherited: impl IntoIterator<Item = OsString>,
) -> Vec<OsString> {
    let explicit: BTreeSet<OsString> =
        cmd.get_envs().filter(|(_, value)| value.is_some()).map(|(name, _)| name.to_owned()).collect();
    let removed: Vec<OsString> =
        inherited.into_iter().filter(|name| is_secret_env(name) && !explicit.contains(name)).collect();
    for name in &removed {
        cmd.env_remove(name);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn secret(name: &str) -> bool {
        is_secret_env(OsStr::new(name))
    }

    #[test]
    fn provider_keys_tokens_passwords_and_exoclaw_settings_are_secret() {
        for name in [
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "MY_SERVICE_API_KEY",
            "STRIPE_SECRET_KEY",
            "GITHUB_TOKEN",
            "SLACK_BOT_TOKEN",
            "CLIENT_SECRET",
            "PGPASSWORD",
            "DB_PASSWORD",
            "SMTP_PASSWD",
            "AWS_ACCESS_KEY_ID",
            "DATABASE_URL",
            "EXOCLAW_CONFIG",
            "EXOCLAW_HOME",
            "openai_api_key",
            "Token",
        ] {
            assert!(secret(name), "{name}");
        }
    }

    #[test]
    fn ordinary_variables_are_kept() {
        for name in [
            "PATH",
            "HOME",
            "USER",
            "LANG",
            "TERM",
            "SHELL",
            "PWD",
            "TMPDIR",
            "CARGO_HOME",
            "RUSTFLAGS",
            "GIT_ASKPASS",
            "SSH_AUTH_SOCK",
            "KEYBOARD",
            "MONKEY",
            "TOKENIZERS_PARALLELISM",
            "PYTHONPATH",
        ] {
            assert!(!secret(name), "{name}");
        }
    }

    #[test]
    fn only_inherited_secrets_are_removed_and_explicit_ones_are_kept() {
        let mut cmd = std::process::Command::new("true");
        cmd.env("DEPLOY_TOKEN", "given on purpose");
        let inherited =
            ["PATH", "OPENAI_API_KEY", "DEPLOY_TOKEN", "EXOCLAW_CONFIG", "HOME"].map(OsString::from);
        let removed = scrub(&mut cmd, inherited);
        assert_eq!(removed, [OsString::from("OPENAI_API_KEY"), OsString::from("EXOCLAW_CONFIG")]);
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        assert_eq!(
            envs,
            [
                ("DEPLOY_TOKEN".to_owned(), Some("given on purpose".to_owned())),
                ("EXOCLAW_CONFIG".to_owned(), None),
                ("OPENAI_API_KEY".to_owned(), None),
            ]
        );
    }
}
