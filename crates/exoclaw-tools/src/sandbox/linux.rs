//! The sandbox on Linux: what the kernel offers ([`probe`]) and confining one command ([`confine`]):
//! the landlock ruleset built here in the parent from [`plan`](super::plan), the namespaces entered
//! by the child ([`child`](super::child)).

use super::SandboxError;
use super::child::{self, ChildSetup, IdMaps};
use super::plan::{self, Access, Entry, Kind, Rule};
use super::{Sandbox, SandboxMode, SandboxPolicy};
use landlock::{
    ABI, Access as _, AccessFs, AccessNet, BitFlags, LandlockStatus, PathBeneath, PathFd, RestrictSelf,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};
use std::path::{Path, PathBuf};

/// The landlock ABI whose rights the sandbox asks for: 6 (Linux 6.12) adds the scopes (no signals
/// to, no abstract sockets of, processes outside the sandbox). Older kernels get what they support
/// (landlock's best-effort mode); the rights of later ABIs are not asked for until tested here.
const TARGET_ABI: ABI = ABI::V6;

/// Device files a sandboxed command may write (and `ioctl`), besides its writable roots: the sinks
/// and sources every shell script uses, terminals, and `/dev/shm` (POSIX shared memory and
/// semaphores, which Python's multiprocessing needs).
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// What this kernel supports; see [`Sandbox::probe`].
pub(super) fn probe() -> Sandbox {
    // With no flags and no `no_new_privs`, `apply` makes no restricting call: it only reports.
    let landlock_abi = match RestrictSelf::default().no_new_privs(false).apply() {
        Ok(status) => match status.landlock {
            LandlockStatus::Available { effective_abi, kernel_abi } => {
                Some(kernel_abi.and_then(|v| u32::try_from(v).ok()).unwrap_or(effective_abi as u32))
            }
            LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => None,
        },
        Err(_) => None,
    };
    let namespaces = child::probe_namespaces();
    Sandbox {
        landlock_abi,
        network_namespace: namespaces.is_ok(),
        network_namespace_error: namespaces.err().map(|e| e.to_string()),
    }
}

/// Arranges for `cmd`'s child to be confined by `policy` (not full access) as far as `support`
/// allows. `workspace` and `scratch` are canonical.
pub(super) fn confine(
    cmd: &mut std::process::Command,
    policy: &SandboxPolicy,
    support: &Sandbox,
    workspace: &Path,
    scratch: &Path,
) -> Result<(), SandboxError> {
    let ruleset = match support.landlock_abi {
        Some(_) => Some(child::Ruleset::new(ruleset(policy, &rules(policy, workspace, scratch)?)?)),
        None => None,
    };
    let namespaces = (!policy.network && support.network_namespace).then(IdMaps::current);
    if ruleset.is_some() || namespaces.is_some() {
        child::install(cmd, ChildSetup { namespaces, ruleset, stop_before_exec: false });
    }
    Ok(())
}

/// The landlock rules for `policy`: read everything, write the writable roots, minus the hidden
/// paths (see [`plan`]).
pub(super) fn rules(
    policy: &SandboxPolicy,
    workspace: &Path,
    scratch: &Path,
) -> Result<Vec<Rule>, SandboxError> {
    let mut grants = vec![Rule::new("/", Access::Read, true), Rule::new(scratch, Access::ReadWrite, true)];
    match policy.mode {
        SandboxMode::WorkspaceWrite => {
            grants.push(Rule::new(workspace, Access::ReadWrite, true));
            for root in &policy.writable_roots {
                let path = std::fs::canonicalize(root)
                    .map_err(|source| SandboxError::WritableRoot { path: root.clone(), source })?;
                let dir = path.is_dir();
                grants.push(Rule::new(path, Access::ReadWrite, dir));
            }
        }
        SandboxMode::ReadOnly | SandboxMode::FullAccess => {}
    }
    // Granted by name, so kept whole by the plan even inside a hidden path (see `plan`). Landlock
    // judges a file by where it really is: a link in there to a hidden file still does not read it.
    for path in &policy.readable_paths {
        if let Ok(real) = std::fs::canonicalize(path) {
            let dir = real.is_dir();
            grants.push(Rule::new(real, Access::Read, dir));
        }
    }
    for device in WRITABLE_DEVICES {
        if let Ok(meta) = std::fs::metadata(device) {
            grants.push(Rule::new(*device, Access::ReadWrite, meta.is_dir()));
        }
    }
    let hidden: Vec<PathBuf> = policy.hidden_paths.iter().filter_map(|p| resolve_hidden(p)).collect();
    Ok(plan::plan(&grants, &hidden, list))
}

/// `path` made absolute with its existing part's symbolic links resolved, so a hidden path is
/// hidden where it really is, and one that does not exist yet stays hidden once created.
fn resolve_hidden(path: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    let mut existing = path.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let rest = path.strip_prefix(existing).ok()?;
            return Some(if rest.as_os_str().is_empty() { real } else { real.join(rest) });
        }
        existing = existing.parent()?;
    }
}

/// The entries of `dir`, typed without following symbolic links (from the directory itself, no
/// `stat` per entry). An unreadable directory lists as empty: nothing beneath it is granted.
fn list(dir: &Path) -> Vec<Entry> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let kind = match entry.file_type().ok()? {
                    t if t.is_symlink() => Kind::Symlink,
                    t if t.is_dir() => Kind::Dir,
                    _ => Kind::File,
                };
                Some(Entry { name: entry.file_name(), kind })
            })
            .collect(),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "sandbox: cannot list a directory on the way to a hidden path");
            Vec::new()
        }
    }
}

/// The landlock ruleset granting `rules`: every file-system right handled (so whatever is not
/// granted is refused), TCP bind and connect handled when the network is off, both scopes on.
fn ruleset(policy: &SandboxPolicy, rules: &[Rule]) -> Result<RulesetCreated, SandboxError> {
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(TARGET_ABI))?;
    if !policy.network {
        // No rule allows a port, so every TCP bind and connect is refused: the network's fallback
        // where no network namespace can be made, and a second fence where one can.
        ruleset = ruleset.handle_access(AccessNet::from_all(TARGET_ABI))?;
    }
    let mut created = ruleset.scope(Scope::from_all(TARGET_ABI))?.create()?;
    for rule in rules {
        let mut access: BitFlags<AccessFs> = match rule.access {
            Access::ListOnly => AccessFs::ReadDir.into(),
            Access::Read => AccessFs::from_read(TARGET_ABI),
            Access::ReadWrite => AccessFs::from_all(TARGET_ABI),
        };
        if !rule.dir {
            access &= AccessFs::from_file(TARGET_ABI);
        }
        if access.is_empty() {
            continue;
        }
        // Gone since it was listed: nothing to grant.
        let Ok(fd) = PathFd::new(&rule.path) else { continue };
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    Ok(created)
}
