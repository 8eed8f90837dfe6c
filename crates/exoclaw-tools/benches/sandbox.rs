//! What the sandbox adds to starting a command: `sh -c true`, spawned and waited for,
//! - `spawn/plain`: as `shell` ran it before the sandbox (`posix_spawn`);
//! - `spawn/workspace_write`: in the default sandbox with exoclaw's home hidden (private TMPDIR,
//!   environment scrub, landlock rules planned and built, `fork`, a new user and network namespace,
//!   `landlock_restrict_self`, `exec`, and the TMPDIR removed);
//! - `spawn/workspace_write_network`: the same with the network allowed (no namespaces), to split
//!   the namespaces' share from landlock's;
//! - `apply_only`: the parent's share alone ([`SandboxPolicy::apply_std`] without spawning).
//!
//! Target: the sandbox adds ≤ 5 ms to the median start. Compare the medians (criterion's
//! `target/criterion/*/new/estimates.json`) of the first two. Measured on an AMD EPYC VM (2 cores,
//! Linux 6.18, landlock ABI 7, another benchmark running): plain 0.95 ms, workspace-write 3.97 ms
//! (+3.0 ms, 4.2×), of which the network namespace ≈ 0.9 ms and the parent's `apply` ≈ 0.6 ms.
//! Releasing a landlock ruleset costs 1–4 ms more; the sandbox does it on a background thread.
//!
//! Run: `cargo bench -p exoclaw-tools --bench sandbox`.

#![allow(clippy::expect_used, missing_docs)] // a benchmark over fixed inputs; failing loudly is right

use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_tools::{Sandbox, SandboxPolicy};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn sh_true() -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "true"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

fn spawn(c: &mut Criterion) {
    let workspace = tempfile::tempdir().expect("a workspace");
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    // Hiding a path under the home directory makes the planner list `/` and the home: the usual case.
    let policy = SandboxPolicy::default().with_hidden_paths([home.join(".exoclaw")]);
    let support = Sandbox::probe();
    assert!(
        support.landlock_abi.is_some() && support.network_namespace,
        "this machine cannot sandbox fully, the numbers would mislead: {support:?}"
    );

    let mut group = c.benchmark_group("spawn");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("plain", |b| {
        b.iter(|| assert!(sh_true().status().expect("sh runs").success()));
    });
    group.bench_function("workspace_write", |b| {
        b.iter(|| {
            let mut cmd = sh_true();
            let applied = policy.apply_std(&mut cmd, workspace.path()).expect("sandboxed");
            assert!(cmd.status().expect("sh runs").success());
            drop(applied);
        });
    });
    let with_network = policy.clone().with_network(true);
    group.bench_function("workspace_write_network", |b| {
        b.iter(|| {
            let mut cmd = sh_true();
            let applied = with_network.apply_std(&mut cmd, workspace.path()).expect("sandboxed");
            assert!(cmd.status().expect("sh runs").success());
            drop(applied);
        });
    });
    group.finish();

    c.bench_function("apply_only", |b| {
        b.iter(|| {
            let mut cmd = sh_true();
            policy.apply_std(&mut cmd, workspace.path()).expect("sandboxed")
        });
    });
}

criterion_group!(benches, spawn);
criterion_main!(benches);
