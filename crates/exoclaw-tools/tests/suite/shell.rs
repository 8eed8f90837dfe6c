//! shell: output, exit codes, cwd, env, truncation, and killing the whole process group on timeout
//! and on cancellation.

use super::{Workspace, failed};
use exoclaw_core::ToolError;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use pretty_assertions::assert_eq;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn shell_returns_the_exit_code_and_merged_output() {
    let ws = Workspace::new();
    let out = ws.ok("shell", json!({"command": "echo out; echo err >&2; echo again"})).await;
    assert_eq!(out, "exit code: 0\nout\nerr\nagain\n");
    assert_eq!(ws.ok("shell", json!({"command": "true"})).await, "exit code: 0\n(no output)");
}

#[tokio::test]
async fn a_failing_command_is_a_result_not_an_error() {
    let ws = Workspace::new();
    let out = ws.ok("shell", json!({"command": "echo nope >&2; exit 3"})).await;
    assert_eq!(out, "exit code: 3\nnope\n");
    let out = ws.ok("shell", json!({"command": "kill -9 $$"})).await;
    assert_eq!(out, "killed by signal 9 (SIGKILL)\n(no output)");
}

#[tokio::test]
async fn shell_runs_in_the_workspace_or_a_directory_inside_it() {
    let ws = Workspace::new();
    ws.write("sub/dir/marker.txt", "found me");
    let root = std::fs::canonicalize(ws.root()).unwrap();
    let out = ws.ok("shell", json!({"command": "pwd"})).await;
    assert_eq!(out, format!("exit code: 0\n{}\n", root.display()));
    let out = ws.ok("shell", json!({"command": "pwd; cat marker.txt", "cwd": "sub/dir"})).await;
    assert_eq!(out, format!("exit code: 0\n{}\nfound me", root.join("sub/dir").display()));
    let e = failed(ws.err("shell", json!({"command": "pwd", "cwd": "sub/dir/marker.txt"})).await);
    assert!(e.contains("is not a directory"), "{e}");
}

#[tokio::test]
async fn shell_passes_extra_environment_variables() {
    let ws = Workspace::new();
    let out = ws
        .ok(
            "shell",
            json!({"command": "echo \"$GREETING, $WHO\"", "env": {"GREETING": "hello", "WHO": "exoclaw"}}),
        )
        .await;
    assert_eq!(out, "exit code: 0\nhello, exoclaw\n");
}

#[tokio::test]
async fn long_output_keeps_head_and_tail_around_a_marker() {
    let ws = Workspace::new();
    // 1..=20000, one a line: 108,894 bytes.
    let out = ws.ok("shell", json!({"command": "seq 1 20000"})).await;
    assert!(out.starts_with("exit code: 0\n1\n2\n3\n"), "{}", &out[..40]);
    assert!(out.ends_with("19999\n20000\n"), "{}", &out[out.len() - 40..]);
    let marker = out.lines().find(|l| l.starts_with("[… ")).expect("a truncation marker");
    assert_eq!(marker, format!("[… {} bytes truncated …]", 108_894 - 30 * 1024));
    assert!(out.len() < 31 * 1024, "{}", out.len());
}

#[tokio::test]
async fn bad_timeouts_are_invalid_arguments() {
    let ws = Workspace::new();
    for timeout in [0, 601] {
        let e = ws.err("shell", json!({"command": "true", "timeout_secs": timeout})).await;
        assert!(matches!(e, ToolError::InvalidArguments(_)), "{e:?}");
    }
}

/// Whether `pid` is gone: no such process, or a zombie nobody has reaped yet (it is dead; the init
/// process of a container may be slow to reap orphans).
fn gone(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => true,
        _ => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(true),
    }
}

/// Waits (a few seconds at most) for the pid the command wrote to `file` to be gone.
async fn wait_gone(ws: &Workspace, file: &str) -> bool {
    let pid: i32 = ws.read(file).trim().parse().unwrap();
    assert!(pid > 1);
    for _ in 0..50 {
        if gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group_and_keeps_the_output() {
    let ws = Workspace::new();
    let e = failed(
        ws.err(
            "shell",
            json!({"command": "echo started; sleep 30 & echo $! > pid; wait", "timeout_secs": 1}),
        )
        .await,
    );
    assert!(e.starts_with("timed out after 1s; the command and every process it started were killed"), "{e}");
    assert!(e.ends_with("Output so far:\nstarted\n"), "{e}");
    assert!(wait_gone(&ws, "pid").await, "the background grandchild outlived the timeout");
}

#[tokio::test]
async fn cancellation_ends_the_command_promptly_and_kills_its_group() {
    let ws = Workspace::new();
    let cancel = ws.ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let call = ws.call("shell", json!({"command": "sleep 30 & echo $! > pid; wait"}));
    // Promptly: far sooner than the command's 30 s (or the 120 s default timeout).
    let result = tokio::time::timeout(Duration::from_secs(10), call).await.expect("cancellation was ignored");
    assert_eq!(result, Err(ToolError::Cancelled));
    assert!(wait_gone(&ws, "pid").await, "the background grandchild outlived cancellation");
}

#[tokio::test]
async fn dropping_the_call_kills_the_group_too() {
    let ws = Workspace::new();
    let call = ws.call("shell", json!({"command": "sleep 30 & echo $! > pid; wait"}));
    let _ = tokio::time::timeout(Duration::from_millis(800), call).await;
    assert!(wait_gone(&ws, "pid").await, "the background grandchild outlived the dropped call");
}

#[tokio::test]
async fn a_background_process_left_running_does_not_hold_the_call() {
    let ws = Workspace::new();
    let call = ws.call("shell", json!({"command": "sleep 30 & echo $! > pid; echo done"}));
    let out = tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call waited").unwrap();
    assert_eq!(out, "exit code: 0\ndone\n");
    // Not ours to kill any more: clean it up by hand.
    let pid: i32 = ws.read("pid").trim().parse().unwrap();
    let _ = kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}
