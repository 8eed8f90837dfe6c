//! Baskets: a two-level taxonomy that tools, skills and agents are sorted into, so that a listing
//! (`exoclaw tools --basket files`) or the tools an agent is offered can be narrowed.
//!
//! A basket is `basket` or `basket/sub-basket` ([`Basket`]); an item may sit in several, and a
//! basket holds many items. Asking for a basket takes its sub-baskets too: `files` matches a tool
//! in `files/read`, while `files/read` matches neither `files/write` nor a tool in `files` alone.
//!
//! Which basket a builtin tool sits in is data, in [`BUILTIN_BASKETS`]; skills say theirs in their
//! front matter; the runtime puts an MCP server's tools in `mcp/SERVER`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which baskets each builtin tool (and the memory, SSH and skill tools) sits in. A tool named in
/// no row sits in none, and an agent narrowed to baskets is not offered it.
pub const BUILTIN_BASKETS: &[(&str, &[&str])] = &[
    ("read_file", &["files/read"]),
    ("list_dir", &["files/read"]),
    ("glob", &["files/read", "files/search"]),
    ("grep", &["files/read", "files/search"]),
    ("write_file", &["files/write"]),
    ("edit_file", &["files/write"]),
    ("shell", &["shell"]),
    ("http_fetch", &["web/fetch"]),
    ("ssh_exec", &["remote/ssh"]),
    ("ssh_upload", &["remote/ssh"]),
    ("ssh_download", &["remote/ssh"]),
    ("memory_search", &["memory/read"]),
    ("remember", &["memory/write"]),
    ("forget", &["memory/write"]),
    (crate::skills::OpenSkill::TOOL_NAME, &["skills"]),
];

/// Most characters in each part of a basket.
const MAX_PART_CHARS: usize = 32;

/// A basket, `basket` or `basket/sub-basket`: lower-case letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Basket(String);

/// A basket that is not written as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{basket}` is not a basket: {why}; write `basket` or `basket/sub-basket` with lower-case letters, digits, `-` and `_` (such as `files` or `files/read`)"
)]
pub struct BasketError {
    /// What was written.
    pub basket: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Basket {
    /// `text` as a basket, checked.
    pub fn parse(text: &str) -> Result<Self, BasketError> {
        let error = |why| BasketError { basket: text.to_owned(), why };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 2 {
            return Err(error("a basket has at most two levels"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(error("a part is empty"));
            }
            if part.chars().count() > MAX_PART_CHARS {
                return Err(error("a part is longer than 32 characters"));
            }
            if !part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
                return Err(error("it has a character other than a-z, 0-9, `-`, `_` and one `/`"));
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The basket as written (`files/read`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The top level (`files` of `files/read`).
    pub fn top(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// Whether asking for `self` takes an item in `item`: the same basket, or a sub-basket of it.
    pub fn contains(&self, item: &Basket) -> bool {
        item.0 == self.0 || (!self.0.contains('/') && item.top() == self.0)
    }
}

impl fmt::Display for Basket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Basket {
    type Error = BasketError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Basket> for String {
    fn from(basket: Basket) -> Self {
        basket.0
    }
}

impl std::str::FromStr for Basket {
    type Err = BasketError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Whether an item in `baskets` is wanted when `wanted` are asked for: always when none are
/// asked for, else when one of them contains one of the item's.
pub fn matches(baskets: &[Basket], wanted: &[Basket]) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| baskets.iter().any(|b| w.contains(b)))
}

/// The baskets of the builtin tool `name` (from [`BUILTIN_BASKETS`]); none for a tool not there.
pub fn builtin_baskets(name: &str) -> Vec<Basket> {
    BUILTIN_BASKETS
        .iter()
        .find(|(tool, _)| *tool == name)
        .map(|(_, baskets)| baskets.iter().filter_map(|b| Basket::parse(b).ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn baskets(names: &[&str]) -> Vec<Basket> {
        names.iter().map(|n| Basket::parse(n).unwrap()).collect()
    }

    #[test]
    fn a_basket_takes_its_sub_baskets_and_a_sub_basket_only_itself() {
        let read = baskets(&["files/read"]);
        assert!(matches(&read, &baskets(&["files"])));
        assert!(matches(&read, &baskets(&["files/read"])));
        assert!(!matches(&read, &baskets(&["files/write"])));
        assert!(!matches(&baskets(&["files"]), &baskets(&["files/read"])));
        assert!(!matches(&read, &baskets(&["file"])), "whole parts only");
        assert!(matches(&read, &[]), "asking for no basket takes everything");
        assert!(!matches(&[], &baskets(&["files"])), "an item in no basket is left out");
    }

    #[test]
    fn badly_written_baskets_are_refused_saying_how_to_write_one() {
        for (text, why) in [
            ("Files", "a character other than"),
            ("files/read/more", "at most two levels"),
            ("files/", "a part is empty"),
            ("", "a part is empty"),
            ("files read", "a character other than"),
        ] {
            let error = Basket::parse(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.contains("write `basket` or `basket/sub-basket`"), "{error}");
        }
        assert_eq!(Basket::parse("web-2/fetch_x").unwrap().as_str(), "web-2/fetch_x");
    }

    #[test]
    fn every_row_of_the_table_is_a_valid_basket() {
        for (tool, names) in BUILTIN_BASKETS {
            assert_eq!(builtin_baskets(tool).len(), names.len(), "{tool}");
        }
        assert_eq!(builtin_baskets("grep"), baskets(&["files/read", "files/search"]));
        assert_eq!(builtin_baskets("nope"), Vec::<Basket>::new());
    }
}
