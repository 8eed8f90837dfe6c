//! Session locks for the SQLite store: one OS file lock per session in a directory beside the
//! database file, or, for an in-memory database (private to its process), a lock in memory.
//!
//! A file lock (`flock` on Unix) belongs to the open file: dropping the lease closes the file and
//! releases it, and the OS releases it too when the process dies, however it died, so a killed
//! `exoclaw chat` never leaves a session locked. Two opens of the same file conflict even within
//! one process, so two turns of one gateway on a session queue here as well.
//!
//! The holder writes who it is into its file (`pid N (exoclaw chat) on HOST since TIME`) for the
//! message of a process that is refused the lock, and removes the file when it lets go, so the
//! directory does not collect a file per session ever used. Removing a lock file is safe only
//! because every locker checks, once it holds the lock, that the path still names the file it
//! locked, and starts again if it does not.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use exoclaw_core::{SessionLease, StoreError};
use exoclaw_types::SessionId;

/// Who this process is, for another process refused a lock it holds: its pid, its program and
/// subcommand (never the rest of its arguments, which may carry secrets), the host and the time.
pub(crate) fn holder_description() -> String {
    static WHO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let who = WHO.get_or_init(who_we_are);
    let since = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    format!("{who} since {since}")
}

/// `pid N (program subcommand) on HOST`.
fn who_we_are() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "exoclaw".to_owned());
    let command = match args.next() {
        Some(sub) if is_subcommand(&sub) => format!("{program} {sub}"),
        _ => program,
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| format!(" on {name}"))
        .unwrap_or_default();
    format!("pid {} ({command}){host}", std::process::id())
}

/// Whether `arg` looks like a subcommand (`chat`, `gateway`), not an option or a value.
fn is_subcommand(arg: &str) -> bool {
    !arg.is_empty()
        && arg.len() <= 20
        && arg.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && !arg.starts_with('-')
}

/// The session locks of an SQLite store.
#[derive(Debug)]
pub(crate) enum Locks {
    /// Lock files in this directory (created when first needed).
    Files(PathBuf),
    /// Locks in this process, for an in-memory database.
    Memory(MemoryLocks),
}

impl Locks {
    /// The locks of the database file at `database`: files in `<database>.locks/`.
    pub(crate) fn beside(database: &Path) -> Self {
        let mut dir = database.as_os_str().to_owned();
        dir.push(".locks");
        Self::Files(PathBuf::from(dir))
    }

    pub(crate) async fn lock(&self, session: SessionId, wait: bool) -> Result<SessionLease, StoreError> {
        match self {
            Self::Files(dir) => {
                let path = dir.join(format!("{session}.lock"));
                // A free lock is a few system calls: taken on this thread. Waiting for a held
                // one may take a whole turn of another process: on a blocking thread.
                match lock_file(dir, &path, session, false) {
                    Err(StoreError::SessionLocked { .. }) if wait => {}
                    taken_or_refused => return taken_or_refused,
                }
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || lock_file(&dir, &path, session, true)).await.map_err(
                    |e| StoreError::database_from(format!("the lock task for session {session} failed"), e),
                )?
            }
            Self::Memory(locks) => locks.lock(session, wait).await,
        }
    }
}

/// An open, locked lock file; dropping it removes the file and releases the lock.
struct LockFile {
    file: File,
    path: PathBuf,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Removed while still locked: a process waiting on this file finds, once it gets the lock,
        // that the path no longer names it, and starts again on a fresh file.
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "could not remove a lock file");
        }
        // Closing the file (after this) releases the lock; say so explicitly for a reader.
        let _ = self.file.unlock();
    }
}

fn lock_file(dir: &Path, path: &Path, session: SessionId, wait: bool) -> Result<SessionLease, StoreError> {
    let failed = |doing: &str, e: std::io::Error| {
        StoreError::database_from(
            format!(
                "could not {doing} the lock file {} of session {session}; check that the directory \
                 beside the database is writable",
                path.display()
            ),
            e,
        )
    };
    let open = || OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
    loop {
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| failed("create the directory of", e))?;
                open()
            }
            opened => opened,
        }
        .map_err(|e| failed("open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if wait => file.lock().map_err(|e| failed("lock", e))?,
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder may not have written itself yet (or be another program).
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    format!("another process (it left no details in {})", path.display())
                } else {
                    holder.to_owned()
                };
                return Err(StoreError::SessionLocked { session, holder });
            }
            Err(TryLockError::Error(e)) => return Err(failed("lock", e)),
        }
        // The previous holder removes its file as it lets go: a lock on a file no longer at `path`
        // excludes nobody, so open the path again.
        if !names_file(path, &file) {
            continue;
        }
        // Written over whatever a killed holder left, then cut to length. Not truncated to zero
        // first: ext4 flushes a file truncated to zero and written again when it is closed
        // (`auto_da_alloc`), which made every lock cost ≈ 170 µs more.
        let holder = holder_description();
        let left = file.metadata().map_err(|e| failed("read", e))?.len();
        file.write_all(holder.as_bytes()).map_err(|e| failed("write", e))?;
        if left > holder.len() as u64 {
            file.set_len(holder.len() as u64).map_err(|e| failed("write", e))?;
        }
        return Ok(SessionLease::new(session, LockFile { file, path: path.to_path_buf() }));
    }
}

/// Whether `path` still names the open `file`.
#[cfg(unix)]
fn names_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(at_path), Ok(open)) => (at_path.dev(), at_path.ino()) == (open.dev(), open.ino()),
        _ => false,
    }
}

/// Whether `path` still names the open `file`: elsewhere, whether it exists (an open file there
/// cannot be removed).
#[cfg(not(unix))]
fn names_file(path: &Path, _file: &File) -> bool {
    path.exists()
}

/// Session locks within one process: a mutex per locked session.
#[derive(Debug, Default)]
pub(crate) struct MemoryLocks {
    held: Arc<Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>>,
}

type Held = Arc<Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>>;

impl MemoryLocks {
    async fn lock(&self, session: SessionId, wait: bool) -> Result<SessionLease, StoreError> {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(held.entry(session).or_default())
        };
        let guard = if wait {
            Arc::clone(&mutex).lock_owned().await
        } else {
            match Arc::clone(&mutex).try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    return Err(StoreError::SessionLocked {
                        session,
                        holder: format!("another turn in this process ({})", holder_description()),
                    });
                }
            }
        };
        drop(mutex);
        Ok(SessionLease::new(
            session,
            MemoryLease { guard: Some(guard), held: Arc::clone(&self.held), session },
        ))
    }
}

/// A held in-memory lock; dropping it releases the lock and forgets the session's mutex when
/// nobody else waits on it.
struct MemoryLease {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    held: Held,
    session: SessionId,
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.guard = None;
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Waiters clone the mutex under this same map lock, so a count of one (the map's) means
        // nobody waits and nobody is about to.
        if held.get(&self.session).is_some_and(|mutex| Arc::strong_count(mutex) == 1) {
            held.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_says_pid_and_time_but_not_arguments() {
        let holder = holder_description();
        assert!(holder.starts_with(&format!("pid {} (", std::process::id())), "{holder}");
        assert!(holder.contains(" since ") && holder.ends_with(" UTC"), "{holder}");
    }

    #[test]
    fn only_plain_words_count_as_subcommands() {
        assert!(is_subcommand("chat"));
        assert!(is_subcommand("gateway"));
        assert!(!is_subcommand("--api-key"));
        assert!(!is_subcommand("sk-ant-0123456789abcdef0123"));
        assert!(!is_subcommand("Hello"));
        assert!(!is_subcommand(""));
    }

    #[test]
    fn lock_files_live_beside_the_database() {
        let Locks::Files(dir) = Locks::beside(Path::new("/data/exoclaw.db")) else { unreachable!() };
        assert_eq!(dir, Path::new("/data/exoclaw.db.locks"));
    }
}
