//! An example exoclaw tool plugin (see docs/plugins.md): two read-only tools,
//! `word_count` and `read_note`.
//!
//! Built for `wasm32-wasip1`: `read_note` reads files, and only WASI gives a plugin files (the
//! folder the manifest's `[[capabilities.paths]]` maps to `/notes`).

use extism_pdk::*;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Call {
    tool: String,
    #[serde(default)]
    arguments: Value,
}

/// Where the granted notes folder appears inside the sandbox.
const NOTES: &str = "/notes";

#[plugin_fn]
pub fn describe() -> FnResult<Json<Value>> {
    Ok(Json(json!({
        "tools": [
            {
                "name": "word_count",
                "description": "Counts the words (runs of non-blank characters) of a text",
                "parameters": {
                    "type": "object",
                    "properties": {"text": {"type": "string", "description": "The text to count"}},
                    "required": ["text"]
                },
                "effect": "read_only"
            },
            {
                "name": "read_note",
                "description": "Reads one of the user's notes by its file name",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "The note's file name, e.g. todo.md"}
                    },
                    "required": ["name"]
                },
                "effect": "read_only"
            }
        ]
    })))
}

#[plugin_fn]
pub fn call(input: String) -> FnResult<String> {
    let input: Call = serde_json::from_str(&input).map_err(|e| {
        Error::msg(format!(
            "the input is not a tool call {{\"tool\": …, \"arguments\": {{…}}}}: {e}"
        ))
    })?;
    match input.tool.as_str() {
        "word_count" => {
            let text = string_arg(&input.arguments, "text")?;
            Ok(format!("{} words", text.split_whitespace().count()))
        }
        "read_note" => {
            let name = string_arg(&input.arguments, "name")?;
            Ok(read_note(name)?)
        }
        other => Err(Error::msg(format!("unknown tool: {other}")).into()),
    }
}

fn string_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, Error> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::msg(format!("argument `{key}` must be a string"))),
        None => Err(Error::msg(format!("missing argument `{key}`"))),
    }
}

fn read_note(name: &str) -> Result<String, Error> {
    if name.is_empty()
        || name.contains('/')
        || name.contains('\\')
        || name.contains("..")
        || name.contains('\0')
    {
        return Err(Error::msg(format!(
            "invalid note name {name:?}: a plain file name, without `/` or `..`"
        )));
    }
    if std::fs::metadata(NOTES).is_err() {
        return Err(Error::msg(format!(
            "no notes folder: this plugin was not granted {NOTES}"
        )));
    }
    let path = format!("{NOTES}/{name}");
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::msg(format!("no note named {name:?}")),
        _ => Error::msg(format!("cannot read note {name:?}: {e}")),
    })
}
