//! read_file, write_file, edit_file and list_dir: what they return, and how they fail.

use super::{Workspace, failed};
use exoclaw_core::ToolError;
use pretty_assertions::assert_eq;
use serde_json::json;

#[tokio::test]
async fn read_file_numbers_lines() {
    let ws = Workspace::new();
    ws.write("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    let out = ws.ok("read_file", json!({"path": "src/main.rs"})).await;
    assert_eq!(out, "     1\tfn main() {\n     2\t    println!(\"hi\");\n     3\t}\n");
}

#[tokio::test]
async fn read_file_pages_with_offset_and_limit_and_says_where_to_read_on() {
    let ws = Workspace::new();
    let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    ws.write("ten.txt", &text);
    let out = ws.ok("read_file", json!({"path": "ten.txt", "offset": 4, "limit": 3})).await;
    assert_eq!(
        out,
        "     4\tline 4\n     5\tline 5\n     6\tline 6\n\
         [… line limit reached: showed lines 4–6 of 10; read on with offset=7 …]\n"
    );
    // The last page has no marker.
    let out = ws.ok("read_file", json!({"path": "ten.txt", "offset": 9})).await;
    assert_eq!(out, "     9\tline 9\n    10\tline 10\n");
    let e = failed(ws.err("read_file", json!({"path": "ten.txt", "offset": 11})).await);
    assert!(e.contains("has 10 lines; offset 11 is past the end"), "{e}");
}

#[tokio::test]
async fn read_file_caps_its_output_and_long_lines() {
    let ws = Workspace::new();
    let text: String = (1..=5000).map(|i| format!("{i:0>60}\n")).collect();
    ws.write("big.txt", &text);
    let out = ws.ok("read_file", json!({"path": "big.txt"})).await;
    assert!(out.len() <= 100_000 + 200, "{}", out.len());
    assert!(out.contains("[… output limit reached: showed lines 1–"), "{}", &out[out.len() - 200..]);
    assert!(out.trim_end().ends_with("of 5000; read on with offset=1471 …]"), "{}", &out[out.len() - 200..]);

    ws.write("wide.txt", &format!("{}\n", "x".repeat(2500)));
    let out = ws.ok("read_file", json!({"path": "wide.txt"})).await;
    assert!(out.ends_with(" [… 500 more characters on this line …]\n"), "{out}");
}

#[tokio::test]
async fn read_file_refuses_binaries_and_directories_and_reports_missing_files() {
    let ws = Workspace::new();
    std::fs::write(ws.root().join("blob.bin"), [0x89, b'P', b'N', b'G', 0, 0, 1, 2]).unwrap();
    let e = failed(ws.err("read_file", json!({"path": "blob.bin"})).await);
    assert_eq!(e, "`blob.bin` is a binary file (8 bytes); read_file only shows text");

    std::fs::create_dir(ws.root().join("dir")).unwrap();
    let e = failed(ws.err("read_file", json!({"path": "dir"})).await);
    assert!(e.contains("is a directory; use list_dir"), "{e}");

    let e = failed(ws.err("read_file", json!({"path": "nope.txt"})).await);
    assert_eq!(e, "`nope.txt` does not exist");

    ws.write("empty.txt", "");
    assert_eq!(ws.ok("read_file", json!({"path": "empty.txt"})).await, "(`empty.txt` is empty)");
}

#[tokio::test]
async fn write_file_creates_parents_and_replaces() {
    let ws = Workspace::new();
    let out = ws.ok("write_file", json!({"path": "a/b/c.txt", "content": "one\ntwo\n"})).await;
    assert_eq!(out, "Wrote 8 bytes (2 lines) to `a/b/c.txt` (new file).");
    assert_eq!(ws.read("a/b/c.txt"), "one\ntwo\n");

    let out = ws.ok("write_file", json!({"path": "a/b/c.txt", "content": "three"})).await;
    assert_eq!(out, "Wrote 5 bytes (1 line) to `a/b/c.txt` (replaced the previous 8 bytes).");
    assert_eq!(ws.read("a/b/c.txt"), "three");

    let e = failed(ws.err("write_file", json!({"path": "a/b", "content": "x"})).await);
    assert!(e.contains("is a directory"), "{e}");
    // A file where a directory is needed.
    let e = failed(ws.err("write_file", json!({"path": "a/b/c.txt/d", "content": "x"})).await);
    assert!(e.contains("a/b/c.txt/d"), "{e}");
}

#[tokio::test]
async fn edit_file_replaces_a_unique_match() {
    let ws = Workspace::new();
    ws.write("f.rs", "let a = 1;\nlet b = 2;\n");
    let out = ws.ok("edit_file", json!({"path": "f.rs", "old_string": "b = 2", "new_string": "b = 3"})).await;
    assert_eq!(out, "Replaced 1 occurrence in `f.rs`.");
    assert_eq!(ws.read("f.rs"), "let a = 1;\nlet b = 3;\n");
}

#[tokio::test]
async fn edit_file_fails_clearly_on_a_missing_or_ambiguous_match() {
    let ws = Workspace::new();
    ws.write("f.rs", "x = 1;\nx = 1;\nx = 1;\n");
    let e =
        failed(ws.err("edit_file", json!({"path": "f.rs", "old_string": "y = 1", "new_string": "y"})).await);
    assert!(e.starts_with("`old_string` was not found in `f.rs`"), "{e}");

    let e =
        failed(ws.err("edit_file", json!({"path": "f.rs", "old_string": "x = 1", "new_string": "x"})).await);
    assert!(e.starts_with("`old_string` occurs 3 times in `f.rs`"), "{e}");
    assert!(e.contains("replace_all"), "{e}");
    assert_eq!(ws.read("f.rs"), "x = 1;\nx = 1;\nx = 1;\n", "a refused edit changes nothing");

    let out = ws
        .ok(
            "edit_file",
            json!({"path": "f.rs", "old_string": "x = 1", "new_string": "x = 2", "replace_all": true}),
        )
        .await;
    assert_eq!(out, "Replaced 3 occurrences in `f.rs`.");
    assert_eq!(ws.read("f.rs"), "x = 2;\nx = 2;\nx = 2;\n");
}

#[tokio::test]
async fn edit_file_rejects_pointless_or_impossible_edits() {
    let ws = Workspace::new();
    ws.write("f.txt", "abc");
    let e = ws.err("edit_file", json!({"path": "f.txt", "old_string": "", "new_string": "x"})).await;
    assert!(matches!(e, ToolError::InvalidArguments(_)), "{e:?}");
    let e = ws.err("edit_file", json!({"path": "f.txt", "old_string": "a", "new_string": "a"})).await;
    assert!(matches!(e, ToolError::InvalidArguments(_)), "{e:?}");
    let e = failed(ws.err("edit_file", json!({"path": "g.txt", "old_string": "a", "new_string": "b"})).await);
    assert_eq!(e, "`g.txt` does not exist; create it with write_file");
    std::fs::write(ws.root().join("latin1.txt"), [b'c', b'a', b'f', 0xE9]).unwrap();
    let e = failed(
        ws.err("edit_file", json!({"path": "latin1.txt", "old_string": "caf", "new_string": "x"})).await,
    );
    assert!(e.contains("not UTF-8"), "{e}");
}

#[tokio::test]
async fn list_dir_sorts_and_marks_directories() {
    let ws = Workspace::new();
    ws.write("b.txt", "");
    ws.write("a/inner.txt", "");
    ws.write(".hidden", "");
    ws.write("C.md", "");
    assert_eq!(ws.ok("list_dir", json!({})).await, ".hidden\nC.md\na/\nb.txt");
    assert_eq!(ws.ok("list_dir", json!({"path": "a"})).await, "inner.txt");
    std::fs::create_dir(ws.root().join("empty")).unwrap();
    assert_eq!(ws.ok("list_dir", json!({"path": "empty"})).await, "(`empty` is empty)");
}

#[tokio::test]
async fn list_dir_caps_long_listings_and_fails_on_files() {
    let ws = Workspace::new();
    for i in 0..1005 {
        ws.write(&format!("many/f{i:04}"), "");
    }
    let out = ws.ok("list_dir", json!({"path": "many"})).await;
    assert_eq!(out.lines().count(), 1001);
    assert!(out.starts_with("f0000\nf0001\n"), "{}", &out[..40]);
    assert!(out.ends_with("f0999\n[… 5 more entries not shown …]"), "{}", &out[out.len() - 60..]);

    ws.write("file.txt", "x");
    let e = failed(ws.err("list_dir", json!({"path": "file.txt"})).await);
    assert!(e.contains("is a file, not a directory"), "{e}");
    let e = failed(ws.err("list_dir", json!({"path": "missing"})).await);
    assert_eq!(e, "`missing` does not exist");
}
