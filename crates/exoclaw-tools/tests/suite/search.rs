//! glob and grep: matching, sorting, caps, and honouring .gitignore outside a git repository.

use super::Workspace;
use exoclaw_core::ToolError;
use pretty_assertions::assert_eq;
use serde_json::json;

/// A small project with ignored files, in a directory that is not a git repository.
fn project() -> Workspace {
    let ws = Workspace::new();
    ws.write(".gitignore", "target/\n*.log\n");
    ws.write("Cargo.toml", "[package]\nname = \"demo\"\n");
    ws.write("src/main.rs", "fn main() {\n    helper();\n}\n");
    ws.write("src/lib/helper.rs", "pub fn helper() {}\n// TODO: more Helpers\n");
    ws.write("src/notes.txt", "helper notes\n");
    ws.write("target/debug/out.rs", "fn helper() {}\n");
    ws.write("debug.log", "helper called\n");
    ws.write(".github/ci.yml", "run: helper\n");
    ws.write(".git/config", "helper = true\n");
    ws
}

#[tokio::test]
async fn glob_matches_names_at_any_depth_without_a_slash() {
    let ws = project();
    assert_eq!(ws.ok("glob", json!({"pattern": "*.rs"})).await, "src/lib/helper.rs\nsrc/main.rs");
    assert_eq!(ws.ok("glob", json!({"pattern": "Cargo.toml"})).await, "Cargo.toml");
}

#[tokio::test]
async fn glob_matches_paths_with_a_slash_below_the_search_directory() {
    let ws = project();
    assert_eq!(ws.ok("glob", json!({"pattern": "src/*.rs"})).await, "src/main.rs");
    assert_eq!(ws.ok("glob", json!({"pattern": "src/**/*.rs"})).await, "src/lib/helper.rs\nsrc/main.rs");
    assert_eq!(ws.ok("glob", json!({"pattern": "lib/*", "path": "src"})).await, "src/lib/helper.rs");
    assert_eq!(ws.ok("glob", json!({"pattern": ".github/*.yml"})).await, ".github/ci.yml");
}

#[tokio::test]
async fn glob_honours_gitignore_and_skips_dot_git() {
    let ws = project();
    let all = ws.ok("glob", json!({"pattern": "**"})).await;
    assert_eq!(all, ".github/ci.yml\n.gitignore\nCargo.toml\nsrc/lib/helper.rs\nsrc/main.rs\nsrc/notes.txt");
}

#[tokio::test]
async fn glob_caps_and_reports_no_match_and_bad_patterns() {
    let ws = Workspace::new();
    for i in 0..1003 {
        ws.write(&format!("d/{i:04}.txt"), "");
    }
    let out = ws.ok("glob", json!({"pattern": "*.txt"})).await;
    assert_eq!(out.lines().count(), 1001);
    assert!(out.ends_with("d/0999.txt\n[… 3 more files not shown; narrow the pattern or path …]"), "{out}");

    assert_eq!(ws.ok("glob", json!({"pattern": "*.rs"})).await, "No files match `*.rs` in `.`.");
    let e = ws.err("glob", json!({"pattern": "a[b"})).await;
    assert!(matches!(e, ToolError::InvalidArguments(ref m) if m.contains("not a valid glob")), "{e:?}");
}

#[tokio::test]
async fn grep_reports_path_line_and_text_and_honours_gitignore() {
    let ws = project();
    let out = ws.ok("grep", json!({"pattern": "helper"})).await;
    assert_eq!(
        out,
        ".github/ci.yml:1: run: helper\n\
         src/lib/helper.rs:1: pub fn helper() {}\n\
         src/main.rs:2:     helper();\n\
         src/notes.txt:1: helper notes\n"
    );
}

#[tokio::test]
async fn grep_filters_by_glob_and_path_and_can_ignore_case() {
    let ws = project();
    let out = ws.ok("grep", json!({"pattern": "helper", "glob": "*.rs"})).await;
    assert_eq!(out, "src/lib/helper.rs:1: pub fn helper() {}\nsrc/main.rs:2:     helper();\n");
    let out = ws.ok("grep", json!({"pattern": "helper", "path": "src/lib"})).await;
    assert_eq!(out, "src/lib/helper.rs:1: pub fn helper() {}\n");
    let out = ws.ok("grep", json!({"pattern": "HELPERS", "case_insensitive": true})).await;
    assert_eq!(out, "src/lib/helper.rs:2: // TODO: more Helpers\n");
    // A single file named as the path, with a glob on its name.
    let out = ws.ok("grep", json!({"pattern": "fn", "path": "src/main.rs", "glob": "*.rs"})).await;
    assert_eq!(out, "src/main.rs:1: fn main() {\n");
    // An ignored file is still searched when named outright.
    let out = ws.ok("grep", json!({"pattern": "helper", "path": "debug.log"})).await;
    assert_eq!(out, "debug.log:1: helper called\n");
}

#[tokio::test]
async fn grep_skips_binaries_caps_matches_and_rejects_bad_regexes() {
    let ws = Workspace::new();
    std::fs::write(ws.root().join("blob.bin"), b"match\0match\n").unwrap();
    let lines: String = (1..=600).map(|i| format!("match {i}\n")).collect();
    ws.write("many.txt", &lines);
    let out = ws.ok("grep", json!({"pattern": "^match"})).await;
    assert!(!out.contains("blob.bin"), "{out}");
    assert_eq!(out.lines().count(), 501);
    assert!(out.starts_with("many.txt:1: match 1\n"), "{out}");
    assert!(
        out.ends_with(
            "many.txt:500: match 500\n[… stopped after 500 matches; narrow the pattern, path or glob to \
             see the rest …]\n"
        ),
        "{}",
        &out[out.len() - 200..]
    );

    assert_eq!(ws.ok("grep", json!({"pattern": "absent"})).await, "No matches for `absent`.");
    let e = ws.err("grep", json!({"pattern": "(unclosed"})).await;
    assert!(matches!(e, ToolError::InvalidArguments(ref m) if m.contains("not a valid regex")), "{e:?}");
    let e = ws.err("grep", json!({"pattern": "x", "path": "missing"})).await;
    assert_eq!(e, ToolError::Failed("`missing` does not exist".into()));
}

#[tokio::test]
async fn a_cancelled_search_says_so() {
    let ws = project();
    ws.ctx.cancel.cancel();
    let e = ws.err("grep", json!({"pattern": "helper"})).await;
    assert_eq!(e, ToolError::Cancelled);
}
