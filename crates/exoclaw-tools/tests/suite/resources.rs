//! What each builtin says a call touches, for permission rules and the audit log.

use exoclaw_core::Resource;
use exoclaw_tools::builtin_tools;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

fn resources(name: &str, args: Value) -> Vec<Resource> {
    builtin_tools().get(name).unwrap().resources(&args)
}

#[test]
fn file_and_search_tools_name_their_paths_as_written() {
    for tool in ["read_file", "list_dir"] {
        assert_eq!(resources(tool, json!({"path": "src/main.rs"})), [Resource::Path("src/main.rs".into())]);
    }
    assert_eq!(
        resources("write_file", json!({"path": "./out/../a.txt", "content": "x"})),
        [Resource::Path("./out/../a.txt".into())]
    );
    assert_eq!(
        resources("edit_file", json!({"path": "a.txt", "old_string": "a", "new_string": "b"})),
        [Resource::Path("a.txt".into())]
    );
    assert_eq!(resources("grep", json!({"pattern": "fn", "path": "src"})), [Resource::Path("src".into())]);
    assert_eq!(
        resources("glob", json!({"pattern": "*.rs"})),
        [Resource::Path(".".into())],
        "the root by default"
    );
}

#[test]
fn shell_names_its_command_line_and_http_fetch_its_host() {
    assert_eq!(
        resources("shell", json!({"command": "git status && ls"})),
        [Resource::Command("git status && ls".into())]
    );
    assert_eq!(
        resources("http_fetch", json!({"url": "https://API.github.com:8443/repos?x=1"})),
        [Resource::Host("api.github.com".into())]
    );
}

#[test]
fn arguments_that_do_not_parse_name_nothing() {
    assert_eq!(resources("read_file", json!({"nope": 1})), []);
    assert_eq!(resources("http_fetch", json!({"url": "not a url"})), []);
    assert_eq!(resources("shell", Value::String("{broken".into())), []);
}
