//! The jail: paths that leave the workspace are refused, by `..`, by absolute path or through a
//! symbolic link, for reading and for writing; paths inside work.

use super::{Workspace, refused};
use exoclaw_tools::jail::{Jail, resolve};
use serde_json::json;
use std::os::unix::fs::symlink;

#[test]
fn nested_and_dotted_paths_inside_resolve_below_the_root() {
    let ws = Workspace::new();
    ws.write("a/b/c.txt", "x");
    let root = std::fs::canonicalize(ws.root()).unwrap();
    assert_eq!(resolve(ws.root(), "a/b/c.txt").unwrap(), root.join("a/b/c.txt"));
    assert_eq!(resolve(ws.root(), "./a/./b/../b/c.txt").unwrap(), root.join("a/b/c.txt"));
    assert_eq!(resolve(ws.root(), "a/new/deeper/file.txt").unwrap(), root.join("a/new/deeper/file.txt"));
    assert_eq!(resolve(ws.root(), ".").unwrap(), root);
    assert_eq!(resolve(ws.root(), "").unwrap(), root);
}

#[test]
fn absolute_paths_inside_the_root_are_allowed() {
    let ws = Workspace::new();
    ws.write("a.txt", "x");
    let root = std::fs::canonicalize(ws.root()).unwrap();
    let given = ws.root().join("a.txt");
    assert_eq!(resolve(ws.root(), given.to_str().unwrap()).unwrap(), root.join("a.txt"));
    let canonical = root.join("a.txt");
    assert_eq!(resolve(ws.root(), canonical.to_str().unwrap()).unwrap(), root.join("a.txt"));
}

#[test]
fn climbing_out_and_absolute_paths_outside_are_refused() {
    let ws = Workspace::new();
    ws.write("a/x", "x");
    for path in ["../x", "a/../../x", "a/../..", "..", "/etc/passwd", "/"] {
        let message = refused(resolve(ws.root(), path).unwrap_err());
        assert!(message.contains(path), "{path}: {message}");
    }
    // An absolute path that climbs out of the root lexically is outside too.
    let sneaky = format!("{}/../x", ws.root().display());
    refused(resolve(ws.root(), &sneaky).unwrap_err());
    // A sibling directory sharing the root's name as a prefix is not inside it.
    let sibling = format!("{}-other/x", ws.root().display());
    refused(resolve(ws.root(), &sibling).unwrap_err());
}

#[test]
fn the_display_form_is_relative_to_the_root() {
    let ws = Workspace::new();
    let jail = Jail::new(ws.root()).unwrap();
    assert_eq!(jail.display(&jail.resolve("a/b.txt").unwrap()), "a/b.txt");
    assert_eq!(jail.display(&jail.resolve(".").unwrap()), ".");
}

#[tokio::test]
async fn tools_refuse_paths_outside_the_workspace() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "top secret").unwrap();
    let secret = outside.path().join("secret");

    refused(ws.err("read_file", json!({"path": secret})).await);
    refused(ws.err("read_file", json!({"path": "../secret"})).await);
    refused(ws.err("write_file", json!({"path": "../escaped.txt", "content": "x"})).await);
    refused(ws.err("write_file", json!({"path": secret, "content": "overwritten"})).await);
    refused(ws.err("edit_file", json!({"path": secret, "old_string": "top", "new_string": "no"})).await);
    refused(ws.err("list_dir", json!({"path": ".."})).await);
    refused(ws.err("glob", json!({"pattern": "*", "path": ".."})).await);
    refused(ws.err("grep", json!({"pattern": "secret", "path": "../"})).await);
    refused(ws.err("shell", json!({"command": "pwd", "cwd": ".."})).await);

    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");
    assert!(!ws.root().parent().unwrap().join("escaped.txt").exists());
}

#[tokio::test]
async fn a_symlinked_file_pointing_outside_cannot_be_read_or_written_through() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "top secret").unwrap();
    symlink(&secret, ws.root().join("link")).unwrap();

    let message = refused(ws.err("read_file", json!({"path": "link"})).await);
    assert!(message.contains("symbolic link"), "{message}");
    refused(ws.err("write_file", json!({"path": "link", "content": "overwritten"})).await);
    refused(ws.err("edit_file", json!({"path": "link", "old_string": "top", "new_string": "no"})).await);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");

    // grep walks do not follow the link either.
    let out = ws.ok("grep", json!({"pattern": "secret"})).await;
    assert!(out.starts_with("No matches"), "{out}");
}

#[tokio::test]
async fn a_symlinked_directory_pointing_outside_is_refused_for_every_use() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("inner.txt"), "outside").unwrap();
    symlink(outside.path(), ws.root().join("linkdir")).unwrap();

    refused(ws.err("list_dir", json!({"path": "linkdir"})).await);
    refused(ws.err("read_file", json!({"path": "linkdir/inner.txt"})).await);
    refused(ws.err("write_file", json!({"path": "linkdir/new.txt", "content": "x"})).await);
    refused(ws.err("write_file", json!({"path": "linkdir/deep/er/new.txt", "content": "x"})).await);
    refused(ws.err("shell", json!({"command": "pwd", "cwd": "linkdir"})).await);
    refused(ws.err("glob", json!({"pattern": "*", "path": "linkdir"})).await);
    assert!(!outside.path().join("new.txt").exists());
    assert!(!outside.path().join("deep").exists());

    // The link itself shows in a listing of its parent, marked as a link.
    let listing = ws.ok("list_dir", json!({})).await;
    assert_eq!(listing, "linkdir@");
}

#[tokio::test]
async fn a_dangling_symlink_is_not_written_through() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("created-by-write");
    symlink(&target, ws.root().join("dangling")).unwrap();

    let message = refused(ws.err("write_file", json!({"path": "dangling", "content": "x"})).await);
    assert!(message.contains("does not exist"), "{message}");
    refused(ws.err("write_file", json!({"path": "dangling/below.txt", "content": "x"})).await);
    assert!(!target.exists());
}

#[tokio::test]
async fn symlinks_that_stay_inside_the_workspace_work() {
    let ws = Workspace::new();
    ws.write("real/file.txt", "hello\n");
    symlink(ws.root().join("real"), ws.root().join("alias")).unwrap();
    symlink("real/file.txt", ws.root().join("file-link")).unwrap();

    let out = ws.ok("read_file", json!({"path": "alias/file.txt"})).await;
    assert!(out.contains("hello"), "{out}");
    let out = ws.ok("read_file", json!({"path": "file-link"})).await;
    assert!(out.contains("hello"), "{out}");
    ws.ok("write_file", json!({"path": "alias/new.txt", "content": "via alias"})).await;
    assert_eq!(ws.read("real/new.txt"), "via alias");
}
