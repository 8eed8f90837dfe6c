//! What a sandboxed child runs between `fork` and `exec`: entering a new user and network namespace
//! and restricting itself with the landlock ruleset its parent built.
//!
//! This is the crate's only `unsafe` code, and it is one block: [`std::os::unix::process::CommandExt::pre_exec`]
//! is `unsafe` because its closure runs in the forked child of a (multi-threaded) process, where
//! any lock another thread held at the fork stays held forever. So everything that allocates, locks
//! or reads the file system (listing directories, opening the rules' paths, building the landlock
//! ruleset, formatting the id maps) is done beforehand in the parent; the child only makes system
//! calls on what it was handed: `unshare`, `open`/`write`/`close` on `/proc/self/*`, `prctl` and
//! `landlock_restrict_self`.
//!
//! Why not restrict in the parent: landlock confines the calling thread and everything it starts
//! afterwards, so the parent cannot restrict itself, and `unshare(CLONE_NEWUSER)` refuses to run in
//! a multi-threaded process. codex applies its landlock rules the same way, after the fork. The
//! cost: `pre_exec` makes the standard library `fork` instead of `posix_spawn` (copying the parent's
//! page tables), which is measured in the crate's `sandbox` benchmark.

#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;
use std::ffi::CStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::sync::OnceLock;
use std::sync::mpsc;

/// The uid and gid maps of a new user namespace, formatted in the parent: the current user and
/// group mapped to themselves, so files keep their owners and `id` its answer.
#[derive(Debug, Clone)]
pub(super) struct IdMaps {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl IdMaps {
    pub(super) fn current() -> Self {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        Self {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }
}

/// What the child does before `exec`, built in the parent.
#[derive(Debug)]
pub(super) struct ChildSetup {
    /// Enter a new user and network namespace (no network but a down loopback) with these maps.
    pub namespaces: Option<IdMaps>,
    /// Restrict the child with this ruleset (which also sets `no_new_privs`).
    pub ruleset: Option<Ruleset>,
    /// Stop before `exec`, reporting success as [`PROBE_DONE`]: the namespace probe.
    pub stop_before_exec: bool,
}

/// The error a probe child reports when everything before `exec` worked (an errno that `unshare`
/// and writes to `/proc/self/*` never return).
pub(super) const PROBE_DONE: Errno = Errno::ECANCELED;

impl ChildSetup {
    /// Runs in the child: system calls only, on data built in the parent (see the module's docs).
    fn run(&mut self) -> io::Result<()> {
        if let Some(maps) = &self.namespaces {
            enter_namespaces(maps)?;
        }
        // Taken out of its wrapper, whose `Drop` (a channel send) must never run in the child.
        if let Some(ruleset) = self.ruleset.as_mut().and_then(|r| r.0.take()) {
            ruleset.restrict_self().map_err(|e| io::Error::from_raw_os_error(errno_of(&e)))?;
        }
        if self.stop_before_exec {
            return Err(io::Error::from_raw_os_error(PROBE_DONE as i32));
        }
        Ok(())
    }
}

/// A landlock ruleset whose last close happens on a background thread. Closing the parent's copy
/// (when the `Command` holding it is dropped, right after the spawn) took 1 to 4 ms on Linux 6.18
/// whatever the ruleset's size: that wait would fall on the caller's thread, an async runtime's
/// worker for `shell`, on every command.
#[derive(Debug)]
pub(super) struct Ruleset(Option<landlock::RulesetCreated>);

impl Ruleset {
    pub(super) fn new(ruleset: landlock::RulesetCreated) -> Self {
        Self(Some(ruleset))
    }
}

impl Drop for Ruleset {
    fn drop(&mut self) {
        static CLOSER: OnceLock<Option<mpsc::Sender<landlock::RulesetCreated>>> = OnceLock::new();
        let Some(ruleset) = self.0.take() else { return };
        let closer = CLOSER.get_or_init(|| {
            let (send, receive) = mpsc::channel::<landlock::RulesetCreated>();
            let thread = std::thread::Builder::new()
                .name("exoclaw-sandbox-close".into())
                .spawn(move || receive.into_iter().for_each(drop));
            thread.ok().map(|_| send)
        });
        // Without the thread (it could not start), the ruleset is closed here, just slower.
        if let Some(closer) = closer {
            let _ = closer.send(ruleset);
        }
    }
}

/// Makes `cmd`'s child run `setup` between `fork` and `exec`. A failure there fails
/// `Command::spawn` with the failing call's errno.
pub(super) fn install(cmd: &mut std::process::Command, mut setup: ChildSetup) {
    // SAFETY: the closure runs in the forked child, where only async-signal-safe work is sound.
    // `ChildSetup::run` only makes system calls (unshare, open, write, close, prctl,
    // landlock_restrict_self) on buffers and file descriptors the parent prepared; on its success
    // path it neither allocates nor takes a lock. On the error path landlock's error value may be
    // dropped (a `free`), which glibc's fork handlers make safe in the child. Nothing it touches is
    // shared with the parent after the fork (the child has its own copy of `setup`).
    unsafe {
        cmd.pre_exec(move || setup.run());
    }
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNET)`, then the id maps (setgroups denied first, as the kernel
/// requires of an unprivileged gid map).
fn enter_namespaces(maps: &IdMaps) -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)?;
    write_proc(c"/proc/self/setgroups", b"deny")?;
    write_proc(c"/proc/self/uid_map", &maps.uid_map)?;
    write_proc(c"/proc/self/gid_map", &maps.gid_map)?;
    Ok(())
}

/// Writes `bytes` to `path` in one `write` (the id-map files take a single write).
fn write_proc(path: &CStr, bytes: &[u8]) -> Result<(), Errno> {
    let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    match nix::unistd::write(&fd, bytes)? {
        n if n == bytes.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// The errno behind a landlock error, or `EPERM` (no allocation: a walk down `source()`).
fn errno_of(error: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(code) = e.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error) {
            return code;
        }
        cause = e.source();
    }
    Errno::EPERM as i32
}

/// Whether this process may create a user and network namespace: a child is forked, enters them,
/// and stops before `exec` (nothing is run). Costs one fork.
pub(super) fn probe_namespaces() -> io::Result<()> {
    // Never executed: the child stops before `exec`.
    let mut cmd = std::process::Command::new("/");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    install(
        &mut cmd,
        ChildSetup { namespaces: Some(IdMaps::current()), ruleset: None, stop_before_exec: true },
    );
    match cmd.spawn() {
        Err(e) if e.raw_os_error() == Some(PROBE_DONE as i32) => Ok(()),
        Err(e) => Err(e),
        Ok(mut child) => {
            // Unreachable (the child stops before `exec`); reap it all the same.
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::other("the namespace probe's child did not stop before exec"))
        }
    }
}
