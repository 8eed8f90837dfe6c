//! The registry of builtins: names, effects, the schemas the model reads, and arguments that do not
//! fit them.

use super::Workspace;
use exoclaw_core::{Tool, ToolError};
use exoclaw_tools::{ReadFile, builtin_tools};
use exoclaw_types::ToolEffect;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

#[test]
fn every_builtin_is_registered_with_its_effect() {
    let tools = builtin_tools();
    let names = tools.names();
    assert_eq!(
        names,
        ["edit_file", "glob", "grep", "http_fetch", "list_dir", "read_file", "shell", "write_file"]
    );
    let effect = |name: &str| tools.get(name).unwrap().effect();
    for name in ["read_file", "list_dir", "glob", "grep"] {
        assert_eq!(effect(name), ToolEffect::ReadOnly, "{name}");
    }
    for name in ["write_file", "edit_file", "shell"] {
        assert_eq!(effect(name), ToolEffect::Mutating, "{name}");
    }
    assert_eq!(effect("http_fetch"), ToolEffect::External);
}

/// The schema's property names, in order, and its required ones.
fn shape(schema: &Value) -> (Vec<String>, Vec<String>) {
    let properties = schema["properties"].as_object().unwrap().keys().cloned().collect();
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (properties, required)
}

#[test]
fn schemas_list_the_documented_properties_and_required_ones() {
    let expected: [(&str, &[&str], &[&str]); 8] = [
        ("read_file", &["path", "offset", "limit"], &["path"]),
        ("write_file", &["path", "content"], &["path", "content"]),
        (
            "edit_file",
            &["path", "old_string", "new_string", "replace_all"],
            &["path", "old_string", "new_string"],
        ),
        ("list_dir", &["path"], &[]),
        ("glob", &["pattern", "path"], &["pattern"]),
        ("grep", &["pattern", "path", "glob", "case_insensitive"], &["pattern"]),
        ("shell", &["command", "cwd", "env", "timeout_secs"], &["command"]),
        ("http_fetch", &["url", "method", "headers", "body", "timeout_secs", "max_bytes"], &["url"]),
    ];
    let tools = builtin_tools();
    for (name, properties, required) in expected {
        let spec = tools.get(name).unwrap().spec();
        assert_eq!(spec.name, name);
        assert!(!spec.description.is_empty(), "{name} has no description");
        let schema = &spec.input_schema;
        assert_eq!(schema["type"], "object", "{name}: {schema:#}");
        assert_eq!(schema["additionalProperties"], false, "{name} should reject unknown fields: {schema:#}");
        assert_eq!(
            shape(schema),
            (
                properties.iter().map(|s| s.to_string()).collect(),
                required.iter().map(|s| s.to_string()).collect()
            ),
            "{name}: {schema:#}"
        );
        // Every property carries the doc comment the model reads.
        for (property, body) in schema["properties"].as_object().unwrap() {
            let description = body["description"].as_str().unwrap_or_default();
            assert!(description.len() > 10, "{name}.{property} is undocumented: {schema:#}");
        }
    }
}

#[test]
fn the_read_file_schema_reads_well() {
    let schema = ReadFile::default().spec().input_schema;
    assert_eq!(schema["properties"]["path"]["type"], "string");
    assert_eq!(
        schema["properties"]["path"]["description"],
        "The file to read, relative to the workspace root."
    );
    assert_eq!(schema["properties"]["offset"]["minimum"], 1);
}

#[tokio::test]
async fn arguments_that_do_not_fit_the_schema_are_invalid_arguments() {
    let ws = Workspace::new();
    let cases = [
        ("read_file", json!({})),
        ("read_file", json!({"path": 3})),
        ("read_file", json!({"path": "a", "colour": "red"})),
        ("write_file", json!({"path": "a"})),
        ("edit_file", json!({"path": "a", "old_string": "x"})),
        ("grep", json!({"pattern": "x", "case_insensitive": "yes"})),
        ("shell", json!({"command": "true", "timeout_secs": -1})),
        ("http_fetch", json!({"url": "http://x", "headers": ["a"]})),
        ("glob", json!(42)),
        ("list_dir", Value::Null),
        ("shell", Value::String("{\"command\": \"ls\"".into())),
    ];
    for (name, args) in cases {
        let e = ws.err(name, args.clone()).await;
        assert!(matches!(e, ToolError::InvalidArguments(_)), "{name}({args}): {e:?}");
    }
}
