//! The sandbox, with real processes: what `shell` commands can no longer do in `workspace-write`
//! and `read-only` (read exoclaw's hidden files, see provider keys, reach a server on loopback, write
//! outside the workspace), what they still can (build and run a program in the workspace), and that
//! `full-access` is the shell as it was. Also [`SandboxPolicy::apply`] on a plain command, as skill
//! scripts and MCP servers will use it.
//!
//! A test that needs what this kernel lacks (landlock, user namespaces) says so and passes.

#![allow(clippy::print_stderr)] // the skip notes above

use super::Workspace;
use exoclaw_core::Tool;
use exoclaw_tools::{Sandbox, SandboxMode, SandboxPolicy, Shell};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A fake exoclaw home beside the workspace, with a configuration file holding a secret.
struct Home {
    dir: tempfile::TempDir,
}

const CONFIG: &str = "[providers.openai]\napi_key = \"sk-hidden-in-config\"\n";

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".exoclaw")).unwrap();
        std::fs::write(dir.path().join(".exoclaw/config.toml"), CONFIG).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not secret\n").unwrap();
        Self { dir }
    }

    fn exoclaw(&self) -> PathBuf {
        self.dir.path().join(".exoclaw")
    }

    fn config(&self) -> PathBuf {
        self.exoclaw().join("config.toml")
    }
}

/// Runs `shell` with `policy` in `ws`, through the `Tool` trait as a run calls it.
async fn shell(ws: &Workspace, policy: SandboxPolicy, args: Value) -> String {
    let tool = Shell::default().with_sandbox(policy);
    match tool.call(args.clone(), &ws.ctx).await {
        Ok(out) => out,
        Err(e) => panic!("shell({args}) failed: {e}"),
    }
}

/// Whether this kernel confines files; says so when it does not.
fn landlock() -> bool {
    let ok = Sandbox::probe().landlock_abi.is_some();
    if !ok {
        eprintln!("skipped: landlock is unavailable here ({:?})", Sandbox::probe());
    }
    ok
}

/// Whether this kernel lets the sandbox cut the network off; says so when it does not.
fn network_namespaces() -> bool {
    let ok = Sandbox::probe().network_namespace;
    if !ok {
        eprintln!("skipped: no user and network namespaces here ({:?})", Sandbox::probe());
    }
    ok
}

fn workspace_write(home: &Home) -> SandboxPolicy {
    SandboxPolicy::default().with_hidden_paths([home.exoclaw()])
}

#[tokio::test]
async fn hidden_files_cannot_be_read_but_their_neighbours_can() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let home = Home::new();
    let cat = json!({"command": format!("cat {}", home.config().display())});
    // Readable without the sandbox: the refusal below is the sandbox's.
    let out = shell(&ws, SandboxPolicy::full_access(), cat.clone()).await;
    assert_eq!(out, format!("exit code: 0\n{CONFIG}"));

    let out = shell(&ws, workspace_write(&home), cat).await;
    assert!(out.starts_with("exit code: 1\n"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!out.contains("sk-hidden-in-config"), "{out}");
    assert!(out.contains("[the sandbox (workspace-write) probably refused this"), "{out}");
    // Nor copied, nor written over.
    let cmd = format!("cp {} stolen.toml; echo gone > {}", home.config().display(), home.config().display());
    let out = shell(&ws, workspace_write(&home), json!({"command": cmd})).await;
    assert!(!ws.root().join("stolen.toml").exists(), "{out}");
    assert_eq!(std::fs::read_to_string(home.config()).unwrap(), CONFIG);

    // Nor reached around: through a link in the workspace, `/proc/self/root`, or the root of a
    // process outside the sandbox (this one).
    let config = home.config().display().to_string();
    let pid = std::process::id();
    for cmd in [
        format!("ln -s {config} link && cat link"),
        format!("cat /proc/self/root{config}"),
        format!("cat /proc/{pid}/root{config}"),
        format!("cat /proc/{pid}/cwd/../../../../../..{config}"),
    ] {
        let out = shell(&ws, workspace_write(&home), json!({"command": cmd})).await;
        assert!(!out.contains("sk-hidden-in-config") && !out.starts_with("exit code: 0"), "{cmd}: {out}");
    }

    // Everything else stays readable, and the home can still be listed.
    let home_dir = home.dir.path().display();
    let cmd =
        format!("cat {home_dir}/notes.txt && ls -a {home_dir} && cat /etc/passwd >/dev/null && echo ok");
    let out = shell(&ws, workspace_write(&home), json!({"command": cmd})).await;
    assert_eq!(out, "exit code: 0\nnot secret\n.\n..\n.exoclaw\nnotes.txt\nok\n");
}

#[tokio::test]
async fn a_loopback_server_on_the_host_is_unreachable() {
    if !network_namespaces() {
        return;
    }
    let ws = Workspace::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect =
        json!({"command": format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && echo connected")});

    let out = shell(&ws, SandboxPolicy::default(), connect.clone()).await;
    assert!(!out.contains("connected"), "{out}");
    assert!(out.starts_with("exit code: 1\n"), "{out}");
    // Landlock's TCP rule answers first (EACCES); without it, the namespace's down loopback would.
    assert!(out.contains("Permission denied") || out.contains("Network is unreachable"), "{out}");
    assert!(out.contains("ask the user to allow network access or full access"), "{out}");
    // The command has a network namespace of its own: one interface, the loopback, down. So UDP,
    // which landlock does not filter, goes nowhere either.
    let out =
        shell(&ws, SandboxPolicy::default(), json!({"command": "tail -n +3 /proc/net/dev | cut -d: -f1"}))
            .await;
    assert_eq!(out, "exit code: 0\n    lo\n");
    let udp = format!("bash -c 'echo ping > /dev/udp/127.0.0.1/{port}' && echo sent");
    let out = shell(&ws, SandboxPolicy::default(), json!({"command": udp})).await;
    assert!(out.contains("Network is unreachable") && !out.contains("sent"), "{out}");
    // The same command reaches it when the policy allows the network, and without the sandbox.
    for policy in [SandboxPolicy::default().with_network(true), SandboxPolicy::full_access()] {
        let out = shell(&ws, policy, connect.clone()).await;
        assert_eq!(out, "exit code: 0\nconnected\n");
    }
}

#[tokio::test]
async fn writes_outside_the_workspace_fail() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("planted");
    let cmd = format!("echo planted > {}", target.display());
    let out = shell(&ws, SandboxPolicy::default(), json!({"command": cmd})).await;
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!target.exists());
    // `/tmp` itself is not scratch space: only the private `$TMPDIR` is.
    let out =
        shell(&ws, SandboxPolicy::default(), json!({"command": "touch /tmp/exoclaw-sandbox-test-planted"}))
            .await;
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!Path::new("/tmp/exoclaw-sandbox-test-planted").exists());
    // A directory the policy adds is writable.
    let policy = SandboxPolicy::default().with_writable_roots([elsewhere.path()]);
    let out = shell(&ws, policy, json!({"command": cmd})).await;
    assert_eq!(out, "exit code: 0\n(no output)");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "planted\n");
}

#[tokio::test]
async fn building_and_running_a_program_in_the_workspace_works() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let home = Home::new();
    ws.write(
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hello from the sandbox\"); return 0; }\n",
    );
    ws.write("Makefile", "hello: hello.c\n\tcc -O1 -o hello hello.c\n");
    // The compiler's temporary files go to the private TMPDIR, which is writable.
    let cmd =
        "make -s && ./hello && test -w \"$TMPDIR\" && case \"$TMPDIR\" in /tmp/*) echo private tmp;; esac";
    let out = shell(&ws, workspace_write(&home), json!({"command": cmd})).await;
    assert_eq!(out, "exit code: 0\nhello from the sandbox\nprivate tmp\n");
    assert!(ws.root().join("hello").exists());
    // The command is still the user (the namespace maps them to themselves), and `/` can be listed.
    let uid = std::fs::metadata(ws.root()).unwrap();
    let out =
        shell(&ws, workspace_write(&home), json!({"command": "id -u && stat -c %u . && ls / | grep -c ."}))
            .await;
    let lines: Vec<&str> = out.lines().collect();
    let owner = std::os::unix::fs::MetadataExt::uid(&uid).to_string();
    assert_eq!(lines[..3], ["exit code: 0", owner.as_str(), owner.as_str()], "{out}");
    assert!(lines[3].parse::<u32>().unwrap() > 5, "{out}");
}

#[tokio::test]
async fn read_only_refuses_writes_inside_the_workspace_too() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    ws.write("readme.txt", "read me\n");
    let policy = SandboxPolicy::new(SandboxMode::ReadOnly);
    let out =
        shell(&ws, policy.clone(), json!({"command": "cat readme.txt && echo changed > readme.txt"})).await;
    // A failed redirection: 2 from dash, 1 from bash.
    assert!(!out.starts_with("exit code: 0") && out.contains("\nread me\n"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(
        out.contains("[the sandbox (read-only) probably refused this: commands may write nothing"),
        "{out}"
    );
    assert_eq!(ws.read("readme.txt"), "read me\n");
    let out = shell(&ws, policy, json!({"command": "touch new.txt"})).await;
    assert!(out.contains("Permission denied"), "{out}");
    assert!(!ws.root().join("new.txt").exists());
}

#[tokio::test]
async fn full_access_is_the_shell_as_it_was() {
    let ws = Workspace::new();
    let home = Home::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("written");
    let policy = SandboxPolicy::full_access().with_hidden_paths([home.exoclaw()]);
    let cmd = format!("cat {} && echo yes > {}", home.config().display(), target.display());
    let out = shell(&ws, policy.clone(), json!({"command": cmd})).await;
    assert_eq!(out, format!("exit code: 0\n{CONFIG}"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "yes\n");
    // A plain failure gets no sandbox hint.
    let out =
        shell(&ws, policy, json!({"command": format!("cat {}/missing", elsewhere.path().display())})).await;
    assert!(out.starts_with("exit code: 1\n") && !out.contains("sandbox"), "{out}");
}

/// The environment scrub needs secrets in *this* process's environment, which a test must not set
/// (other tests' threads read it). So the test runs this binary again, as the user would start
/// exoclaw, with keys exported, and that child runs the ignored test below.
#[test]
fn provider_keys_and_exoclaw_settings_are_not_inherited() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "suite::sandbox::child_prints_what_commands_inherit", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("SANDBOX_ENV_CHILD", "1")
        .env("OPENAI_API_KEY", "sk-exported-by-the-user")
        .env("EXOCLAW_CONFIG", "/home/someone/.exoclaw/config.toml")
        .env("SANDBOX_TEST_MARKER", "visible")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // libtest may print `test NAME ... ` on the same line first.
    let lines: Vec<&str> = stdout.lines().filter_map(|l| l.find("inherited ").map(|at| &l[at..])).collect();
    assert_eq!(
        lines,
        [
            "inherited workspace-write: key=[] exoclaw=[] marker=[visible] given=[passed-on-purpose]",
            "inherited full-access: key=[sk-exported-by-the-user] exoclaw=[/home/someone/.exoclaw/config.toml] \
             marker=[visible] given=[passed-on-purpose]",
        ]
    );
}

#[tokio::test]
#[ignore = "run by provider_keys_and_exoclaw_settings_are_not_inherited, in a child with keys exported"]
async fn child_prints_what_commands_inherit() {
    if std::env::var_os("SANDBOX_ENV_CHILD").is_none() {
        return;
    }
    let ws = Workspace::new();
    let args = json!({
        "command": "echo \"key=[$OPENAI_API_KEY] exoclaw=[$EXOCLAW_CONFIG] marker=[$SANDBOX_TEST_MARKER] given=[$GIVEN_TOKEN]\"",
        // Set explicitly (by the model): passed on whatever its name.
        "env": {"GIVEN_TOKEN": "passed-on-purpose"},
    });
    for policy in [SandboxPolicy::default(), SandboxPolicy::full_access()] {
        let mode = policy.mode;
        let out = shell(&ws, policy, args.clone()).await;
        println!("inherited {mode}: {}", out.trim_start_matches("exit code: 0\n").trim_end());
    }
}

#[tokio::test]
async fn apply_confines_any_command_and_owns_its_tmpdir() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let home = Home::new();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo scratch > \"$TMPDIR/file\" && cat \"$TMPDIR/file\" && cat {}",
            home.config().display()
        ))
        .current_dir(ws.root());
    let applied = workspace_write(&home).apply(&mut cmd, ws.root()).unwrap();
    assert_eq!(applied.mode(), SandboxMode::WorkspaceWrite);
    assert_eq!(applied.warnings(), Sandbox::probe().warnings(&workspace_write(&home)));
    let scratch = applied.scratch_dir().unwrap().to_owned();
    let out = cmd.output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "scratch\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    assert!(!out.status.success());
    assert!(scratch.join("file").exists());
    drop(applied);
    assert!(!scratch.exists(), "the TMPDIR outlived its Applied");

    // Full access touches nothing: no TMPDIR, no warnings.
    let mut cmd = tokio::process::Command::new("true");
    let applied = SandboxPolicy::full_access().apply(&mut cmd, ws.root()).unwrap();
    assert!(applied.scratch_dir().is_none() && applied.warnings().is_empty());
}

#[tokio::test]
async fn a_hidden_path_named_through_a_link_or_not_created_yet_is_hidden_where_it_really_is() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let home = Home::new();
    let alias = home.dir.path().join("alias");
    std::os::unix::fs::symlink(home.exoclaw(), &alias).unwrap();
    let keys = home.exoclaw().join("keys");
    let policy = SandboxPolicy::default().with_hidden_paths([alias.join("config.toml"), keys.clone()]);
    // `keys` is created after the rules were planned, by someone outside the sandbox.
    let cmd = format!("sleep 0.3; cat {} ; cat {}", home.config().display(), keys.display());
    let call = shell(&ws, policy, json!({"command": cmd}));
    let create = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        std::fs::write(&keys, "private key").unwrap();
    };
    let (out, ()) = tokio::join!(call, create);
    assert_eq!(out.matches("Permission denied").count(), 2, "{out}");
    assert!(!out.contains("sk-hidden-in-config") && !out.contains("private key"), "{out}");
}

#[tokio::test]
async fn a_missing_workspace_is_a_clear_error() {
    let mut cmd = tokio::process::Command::new("true");
    let e = SandboxPolicy::default().apply(&mut cmd, Path::new("/nonexistent/workspace")).unwrap_err();
    assert!(e.to_string().starts_with("the workspace `/nonexistent/workspace` cannot be sandboxed"), "{e}");
}

#[tokio::test]
async fn a_skill_script_in_the_hidden_home_runs_while_the_config_beside_it_stays_hidden() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let home = Home::new();
    let skill = home.exoclaw().join("skills/x");
    std::fs::create_dir_all(&skill).unwrap();
    let script = skill.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho skill ran\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A link inside the skill to the config is no way around the hiding.
    std::os::unix::fs::symlink(home.config(), skill.join("config-link")).unwrap();
    let policy = workspace_write(&home).with_readable_paths([home.exoclaw().join("skills")]);

    let out = shell(&ws, policy.clone(), json!({"command": script.display().to_string()})).await;
    assert_eq!(out, "exit code: 0\nskill ran\n");
    for path in [home.config(), skill.join("config-link")] {
        let out = shell(&ws, policy.clone(), json!({"command": format!("cat {}", path.display())})).await;
        assert!(out.contains("Permission denied") && !out.contains("sk-hidden-in-config"), "{out}");
    }
    // Readable, not writable.
    let out = shell(&ws, policy, json!({"command": format!("echo x >> {}", script.display())})).await;
    assert!(!out.starts_with("exit code: 0"), "{out}");
}
