//! The SSH tools against a real OpenSSH server on loopback (exoclaw-testkit's `Sshd`, Debian's
//! `openssh-server` with a throwaway host key): exec output and exit status, PTY, SFTP round trip,
//! host-key refusals, password login, connection reuse, output cap and timeout.

use super::{Workspace, failed, refused};
use exoclaw_core::{Tool, ToolError};
use exoclaw_testkit::peers::Sshd;
use exoclaw_tools::ssh::{HostConfig, SshConfig, SshDownload, SshExec, SshPool, SshUpload};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A server, a workspace, a folder for known-hosts files, and the tools sharing one pool.
struct Remote {
    sshd: Sshd,
    ws: Workspace,
    home: tempfile::TempDir,
    pool: Arc<SshPool>,
}

impl Remote {
    /// The server recorded in a known-hosts file, reachable as `box` with the client key.
    fn trusted() -> Self {
        Self::with(|sshd, config, known_hosts| {
            std::fs::write(known_hosts, sshd.known_hosts_line()).unwrap();
            config.hosts.insert("box".into(), host(sshd));
        })
    }

    /// `prepare` writes the known-hosts file and the hosts of the configuration.
    fn with(prepare: impl FnOnce(&Sshd, &mut SshConfig, &PathBuf)) -> Self {
        Self::with_pool(prepare, |pool| pool)
    }

    fn with_pool(
        prepare: impl FnOnce(&Sshd, &mut SshConfig, &PathBuf),
        build: impl FnOnce(SshPool) -> SshPool,
    ) -> Self {
        let sshd = Sshd::start();
        let home = tempfile::tempdir().unwrap();
        let known_hosts = home.path().join("known_hosts");
        let mut config = SshConfig {
            use_ssh_config: false,
            known_hosts: Some(vec![known_hosts.clone()]),
            ..SshConfig::default()
        };
        prepare(&sshd, &mut config, &known_hosts);
        let pool = Arc::new(build(SshPool::new(config, home.path().join("exoclaw_known_hosts"))));
        Self { sshd, ws: Workspace::new(), home, pool }
    }

    async fn call(&self, name: &str, args: Value) -> Result<String, ToolError> {
        let tool: Arc<dyn Tool> = match name {
            "ssh_exec" => Arc::new(SshExec::new(self.pool.clone())),
            "ssh_upload" => Arc::new(SshUpload::new(self.pool.clone())),
            "ssh_download" => Arc::new(SshDownload::new(self.pool.clone())),
            other => panic!("no tool {other}"),
        };
        tool.call(args, &self.ws.ctx).await
    }

    async fn ok(&self, name: &str, args: Value) -> String {
        self.call(name, args.clone()).await.unwrap_or_else(|e| panic!("{name}({args}) failed: {e}"))
    }

    async fn err(&self, name: &str, args: Value) -> ToolError {
        match self.call(name, args.clone()).await {
            Ok(out) => panic!("{name}({args}) should have failed, returned:\n{out}"),
            Err(e) => e,
        }
    }
}

/// `sshd` reached at 127.0.0.1 as the test user with the client key.
fn host(sshd: &Sshd) -> HostConfig {
    HostConfig {
        host: Some("127.0.0.1".into()),
        port: Some(sshd.port()),
        user: Some(sshd.user()),
        identity_files: vec![sshd.client_key()],
        ..HostConfig::default()
    }
}

#[tokio::test]
async fn exec_returns_the_exit_code_and_the_output() {
    let remote = Remote::trusted();
    let out =
        remote.ok("ssh_exec", json!({"host": "box", "command": "echo out; echo err >&2; exit 3"})).await;
    assert!(out.starts_with("exit code: 3\n"), "{out}");
    assert!(out.contains("out\n") && out.contains("err\n"), "{out}");
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "true"})).await;
    assert_eq!(out, "exit code: 0\n(no output)");
}

#[tokio::test]
async fn exec_with_a_pty_runs_in_a_terminal() {
    let remote = Remote::trusted();
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "tty", "pty": true})).await;
    assert!(out.starts_with("exit code: 0\n/dev/pts/"), "{out}");
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "tty"})).await;
    assert!(out.contains("not a tty"), "{out}");
}

#[tokio::test]
async fn upload_then_download_gives_back_the_same_bytes() {
    let remote = Remote::trusted();
    let content = "line one\nline two é\n".repeat(5000);
    remote.ws.write("out/data.txt", &content);
    let remote_path = remote.home.path().join("uploaded.txt");
    let remote_path = remote_path.to_str().unwrap();
    let out = remote
        .ok("ssh_upload", json!({"host": "box", "local_path": "out/data.txt", "remote_path": remote_path}))
        .await;
    assert!(out.contains(&format!("({} bytes)", content.len())), "{out}");
    let out = remote
        .ok("ssh_download", json!({"host": "box", "remote_path": remote_path, "local_path": "back/data.txt"}))
        .await;
    assert!(out.contains("to back/data.txt"), "{out}");
    assert_eq!(remote.ws.read("back/data.txt"), content);
}

#[tokio::test]
async fn transfers_are_jailed_to_the_workspace() {
    let remote = Remote::trusted();
    let e = refused(
        remote
            .err("ssh_download", json!({"host": "box", "remote_path": "/etc/hostname", "local_path": "../x"}))
            .await,
    );
    assert!(e.contains("leaves the workspace"), "{e}");
    let e = refused(
        remote
            .err("ssh_upload", json!({"host": "box", "local_path": "/etc/passwd", "remote_path": "/tmp/x"}))
            .await,
    );
    assert!(e.contains("outside the workspace"), "{e}");
}

#[tokio::test]
async fn a_missing_remote_file_is_a_failure_naming_it() {
    let remote = Remote::trusted();
    let e = failed(
        remote
            .err("ssh_download", json!({"host": "box", "remote_path": "/no/such/file", "local_path": "x"}))
            .await,
    );
    assert!(e.contains("`/no/such/file`"), "{e}");
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_with_how_to_accept_it() {
    let remote = Remote::with(|sshd, config, _| {
        config.hosts.insert("box".into(), host(sshd));
    });
    let e = refused(remote.err("ssh_exec", json!({"host": "box", "command": "true"})).await);
    assert!(e.contains("host key of `box`") && e.contains("not known"), "{e}");
    assert!(e.contains("SHA256:") && e.contains("exoclaw ssh trust box"), "{e}");
    assert_eq!(remote.sshd.logins(), 0, "nothing may be sent to an unverified host");
}

#[tokio::test]
async fn a_changed_host_key_is_refused_and_other_hosts_keep_working() {
    let remote = Remote::with(|sshd, config, known_hosts| {
        // A different ed25519 key recorded for the server's address, as after a reinstall or
        // under a man in the middle.
        let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
        std::fs::write(known_hosts, format!("# recorded earlier\n[127.0.0.1]:{} {other}\n", sshd.port()))
            .unwrap();
        config.hosts.insert("box".into(), host(sshd));
        // The same server under another name, with its real key pinned.
        config.hosts.insert("pinned".into(), HostConfig { host_key: Some(sshd.host_key()), ..host(sshd) });
    });
    let e = refused(remote.err("ssh_exec", json!({"host": "box", "command": "true"})).await);
    assert!(e.contains("host key of `box`") && e.contains("CHANGED"), "{e}");
    assert!(e.contains("known_hosts:2"), "the record's file and line: {e}");
    assert_eq!(e.matches("SHA256:").count(), 2, "both fingerprints: {e}");
    assert!(e.contains("exoclaw ssh trust box"), "{e}");
    let out = remote.ok("ssh_exec", json!({"host": "pinned", "command": "echo fine"})).await;
    assert_eq!(out, "exit code: 0\nfine\n");
}

#[tokio::test]
async fn a_pinned_key_that_differs_is_refused() {
    let remote = Remote::with(|sshd, config, _| {
        let wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
        config.hosts.insert("box".into(), HostConfig { host_key: Some(wrong.into()), ..host(sshd) });
    });
    let e = refused(remote.err("ssh_exec", json!({"host": "box", "command": "true"})).await);
    assert!(e.contains("CHANGED") && e.contains("pinned `host_key`"), "{e}");
}

#[tokio::test]
async fn a_key_accepted_by_the_trust_file_is_trusted() {
    let remote = Remote::with(|sshd, config, _| {
        config.hosts.insert("box".into(), host(sshd));
    });
    let target = remote.pool.config().target("box").unwrap();
    let key = exoclaw_tools::ssh::fetch_host_key(&target, Duration::from_secs(10)).await.unwrap();
    assert_eq!(key.to_openssh().unwrap(), remote.sshd.host_key());
    let trust_file = remote.home.path().join("exoclaw_known_hosts");
    exoclaw_tools::ssh::known_hosts::append(&trust_file, "127.0.0.1", remote.sshd.port(), &key).unwrap();
    assert_eq!(
        remote.ok("ssh_exec", json!({"host": "box", "command": "echo hi"})).await,
        "exit code: 0\nhi\n"
    );
}

#[tokio::test]
async fn an_unconfigured_host_is_refused_naming_the_configured_ones() {
    let remote = Remote::trusted();
    let e = refused(remote.err("ssh_exec", json!({"host": "elsewhere.example", "command": "true"})).await);
    assert!(e.contains("`elsewhere.example` is not a known SSH host") && e.contains("box"), "{e}");
}

#[tokio::test]
async fn calls_to_one_host_share_one_connection() {
    let remote = Remote::trusted();
    for _ in 0..3 {
        remote.ok("ssh_exec", json!({"host": "box", "command": "true"})).await;
    }
    remote.ws.write("f.txt", "x");
    let remote_path = remote.home.path().join("f.txt");
    remote.ok("ssh_upload", json!({"host": "box", "local_path": "f.txt", "remote_path": remote_path})).await;
    assert_eq!(remote.pool.connections_opened(), 1);
    assert_eq!(remote.sshd.logins(), 1, "the server saw one login");
}

#[tokio::test]
async fn long_output_is_capped_with_head_and_tail() {
    let remote = Remote::with(|sshd, config, known_hosts| {
        std::fs::write(known_hosts, sshd.known_hosts_line()).unwrap();
        config.hosts.insert("box".into(), host(sshd));
        config.output_limit = 1000;
    });
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "seq 1 20000"})).await;
    assert!(out.starts_with("exit code: 0\n1\n2\n"), "{}", &out[..100]);
    assert!(out.contains("bytes truncated"), "{out}");
    assert!(out.ends_with("19999\n20000\n"), "{out}");
    assert!(out.len() < 1200, "{}", out.len());
}

#[tokio::test]
async fn a_command_past_its_timeout_is_cut_off() {
    let remote = Remote::trusted();
    let call = remote
        .call("ssh_exec", json!({"host": "box", "command": "echo started; sleep 60", "timeout_secs": 1}));
    let result =
        tokio::time::timeout(Duration::from_secs(30), call).await.expect("the timeout did not cut the call");
    let e = failed(result.unwrap_err());
    assert!(e.contains("timed out after 1s") && e.contains("started"), "{e}");
    // The connection is still usable afterwards.
    assert_eq!(
        remote.ok("ssh_exec", json!({"host": "box", "command": "echo next"})).await,
        "exit code: 0\nnext\n"
    );
}

/// `sshd` reached as the peer script's password user, with no usable key.
fn by_password(sshd: &Sshd, config: &mut SshConfig, known_hosts: &PathBuf) {
    std::fs::write(known_hosts, sshd.known_hosts_line()).unwrap();
    let (user, _) =
        sshd.password_login().expect("the peer script made no password user: run the tests as root");
    let by_password = HostConfig {
        user: Some(user),
        identity_files: vec![PathBuf::from("/nonexistent/key")],
        password_env: Some("BOX_PASSWORD".into()),
        ..host(sshd)
    };
    config.hosts.insert("box".into(), by_password);
}

#[tokio::test]
async fn a_password_from_the_named_variable_logs_in() {
    let password = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let lookup = password.clone();
    let remote = Remote::with_pool(by_password, |pool| {
        pool.with_env_lookup(move |name| lookup.lock().unwrap().clone().filter(|_| name == "BOX_PASSWORD"))
    });
    *password.lock().unwrap() = remote.sshd.password_login().map(|(_, p)| p);
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "id -un"})).await;
    assert_eq!(out, "exit code: 0\nexoclaw-sshtest\n");
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_it() {
    let remote =
        Remote::with_pool(by_password, |pool| pool.with_env_lookup(|_| Some("not-the-password-123".into())));
    let e = failed(remote.err("ssh_exec", json!({"host": "box", "command": "true"})).await);
    assert!(e.contains("could not log in to `box`") && e.contains("$BOX_PASSWORD"), "{e}");
    assert!(!e.contains("not-the-password-123"), "{e}");
}

/// A real `ssh-agent` on its own socket, holding `key`; killed when dropped.
struct Agent {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn holding(key: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket).spawn().unwrap();
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let added =
            std::process::Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &socket).output().unwrap();
        assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
        Self { child, socket, _dir: dir }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_key_held_by_ssh_agent_logs_in() {
    let agent = std::sync::Arc::new(std::sync::Mutex::new(None::<Agent>));
    let lookup = agent.clone();
    let remote = Remote::with_pool(
        |sshd, config, known_hosts| {
            std::fs::write(known_hosts, sshd.known_hosts_line()).unwrap();
            let no_key_file =
                HostConfig { identity_files: vec![PathBuf::from("/nonexistent/key")], ..host(sshd) };
            config.hosts.insert("box".into(), no_key_file);
        },
        |pool| {
            pool.with_env_lookup(move |name| {
                let agent = lookup.lock().unwrap();
                agent.as_ref().filter(|_| name == "SSH_AUTH_SOCK").map(|a| a.socket.display().to_string())
            })
        },
    );
    *agent.lock().unwrap() = Some(Agent::holding(&remote.sshd.client_key()));
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "echo via agent"})).await;
    assert_eq!(out, "exit code: 0\nvia agent\n");
}

#[tokio::test]
async fn a_dropped_connection_is_replaced_by_the_next_call() {
    let remote = Remote::trusted();
    remote.ok("ssh_exec", json!({"host": "box", "command": "true"})).await;
    // The command's parent is the server process of this connection: killing it drops the
    // connection, as a restarted host or a broken network would.
    let _ = remote.call("ssh_exec", json!({"host": "box", "command": "kill -9 $PPID"})).await;
    let out = remote.ok("ssh_exec", json!({"host": "box", "command": "echo again"})).await;
    assert_eq!(out, "exit code: 0\nagain\n");
    assert_eq!(remote.pool.connections_opened(), 2);
}
