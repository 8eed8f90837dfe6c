//! `exoclaw ssh trust` against a real OpenSSH server (exoclaw-testkit's `Sshd`): the key is shown,
//! recorded only once confirmed, then reported as trusted; a changed key is never re-trusted.

use super::*;

/// A config reaching `sshd` as `box`, with no known-hosts file but exoclaw's own.
fn reach(env: &Env, sshd: &exoclaw_testkit::peers::Sshd) {
    env.config(&format!(
        "[ssh]\nuse_ssh_config = false\nknown_hosts = []\n[ssh.hosts.box]\nhost = \"127.0.0.1\"\nport = {}\n",
        sshd.port()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_trust_records_the_key_only_once_confirmed() {
    let sshd = exoclaw_testkit::peers::Sshd::start();
    let env = Env::new();
    reach(&env, &sshd);
    let trust_file = env.home.path().join("known_hosts");

    // No terminal and no --yes: the fingerprint is shown, nothing is recorded.
    let out = env.run(&["ssh", "trust", "box"]).await;
    assert!(!out.status.success());
    assert!(stdout(&out).contains("SHA256:"), "{}", stdout(&out));
    assert!(stderr(&out).contains("exoclaw ssh trust box --yes"), "{}", stderr(&out));
    assert!(!trust_file.exists());

    let out = env.run(&["ssh", "trust", "box", "--yes"]).await;
    ok(&out);
    assert!(read(&trust_file).contains(&sshd.known_hosts_line()), "{}", read(&trust_file));

    let out = env.run(&["ssh", "trust", "box", "--yes"]).await;
    ok(&out);
    assert!(stdout(&out).contains("is already trusted"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_trust_refuses_a_changed_key() {
    let sshd = exoclaw_testkit::peers::Sshd::start();
    let env = Env::new();
    reach(&env, &sshd);
    let trust_file = env.home.path().join("known_hosts");
    let old = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    std::fs::write(&trust_file, format!("[127.0.0.1]:{} {old}\n", sshd.port())).unwrap();

    let out = env.run(&["ssh", "trust", "box", "--yes"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has CHANGED") && stderr(&out).contains("known_hosts:1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&trust_file).lines().count(), 1, "nothing was added");
}
