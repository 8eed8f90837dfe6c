//! What deciding one tool call costs with many rules ([`Permissions::check`]), the work the runner
//! does for every call the model makes. Target: ≤ 10 µs per check with 1,000 rules.
//!
//! The rules mix every kind, spread over scopes as a heavy user's would be: 1,000 in the
//! configuration (tool globs such as MCP servers' `name__*`, path globs, host globs, command
//! prefixes; allow, ask and deny), a few answers kept "always", a project's, and a session's.
//! - `check/shell_compound_1000_rules`: `git status --short && cargo test -p x 2>&1 | tail -5`;
//! - `check/write_file_path_1000_rules`: a path under `src/`;
//! - `check/http_fetch_host_1000_rules`: a host;
//! - `check/mcp_tool_no_resource_1000_rules`: an MCP tool's call that names no resource;
//! - `check/shell_no_rules`: the same shell call with no rule at all (the floor).
//!
//! Run: `cargo bench -p exoclaw-core --bench permissions`.

#![allow(clippy::expect_used, missing_docs)] // a benchmark over fixed inputs; failing loudly is right

use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_core::{Answers, Permission, PermissionPolicy, Permissions, Remember, Resource, Rule};
use exoclaw_types::{SessionId, ToolEffect};
use std::hint::black_box;

/// 1,000 rules of every kind.
fn thousand_rules() -> Vec<Rule> {
    let permission = |i: usize| match i % 10 {
        0 => Permission::Deny,
        1 | 2 => Permission::Ask,
        _ => Permission::Allow,
    };
    (0..1000)
        .map(|i| match i % 5 {
            0 => Rule::new(format!("server{i}__*"), permission(i)),
            1 => Rule::new(["write_file", "edit_file", "read_file"][i % 3], permission(i))
                .path(format!("dir{i}/**/*.rs")),
            2 => Rule::new("http_fetch", permission(i)).host(format!("*.host{i}.example")),
            3 => Rule::new("shell", permission(i)).command(format!("tool{i} sub{i}")),
            _ => Rule::new(format!("tool_{i}"), permission(i)),
        })
        .collect()
}

fn heavy() -> (Permissions, SessionId) {
    let mut policy = PermissionPolicy { rules: thousand_rules(), ..PermissionPolicy::default() };
    policy.rules.push(Rule::new("shell", Permission::Allow).command("git status"));
    policy.rules.push(Rule::new("shell", Permission::Deny).command("rm"));
    let answers = Answers::in_memory();
    let session = SessionId::new();
    let remembered = [
        Rule::new("shell", Permission::Allow).command("cargo test"),
        Rule::new("shell", Permission::Allow).command("tail"),
        Rule::new("write_file", Permission::Allow).path("src/**"),
    ];
    answers.remember(session, &remembered, Remember::Session).expect("session answers");
    let permissions = Permissions::new(policy)
        .with_answers(answers)
        .with_project(None, vec![Rule::new("shell", Permission::Ask).command("git push")], false)
        .expect("project rules");
    (permissions, session)
}

fn bench(c: &mut Criterion) {
    let (permissions, session) = heavy();
    let mut group = c.benchmark_group("check");
    let shell = [Resource::Command("git status --short && cargo test -p x 2>&1 | tail -5".into())];
    assert_eq!(
        permissions.check(Some(session), "shell", ToolEffect::Mutating, &shell).permission,
        Permission::Allow
    );
    group.bench_function("shell_compound_1000_rules", |b| {
        b.iter(|| {
            permissions.check(Some(session), black_box("shell"), ToolEffect::Mutating, black_box(&shell))
        })
    });
    let path = [Resource::Path("src/agent/permission/engine.rs".into())];
    group.bench_function("write_file_path_1000_rules", |b| {
        b.iter(|| {
            permissions.check(Some(session), black_box("write_file"), ToolEffect::Mutating, black_box(&path))
        })
    });
    let host = [Resource::Host("api.host512.example".into())];
    group.bench_function("http_fetch_host_1000_rules", |b| {
        b.iter(|| {
            permissions.check(Some(session), black_box("http_fetch"), ToolEffect::External, black_box(&host))
        })
    });
    group.bench_function("mcp_tool_no_resource_1000_rules", |b| {
        b.iter(|| permissions.check(Some(session), black_box("server500__query"), ToolEffect::External, &[]))
    });
    let bare = Permissions::default();
    group.bench_function("shell_no_rules", |b| {
        b.iter(|| bare.check(Some(session), black_box("shell"), ToolEffect::Mutating, black_box(&shell)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
