//! Link settings for the `exoclaw` binary.
//!
//! Packed relative relocations (`-z pack-relative-relocs`, DT_RELR): a position-independent
//! executable carries one relocation per pointer in its static data (vtables, string tables), 62,000
//! of them here, which the dynamic loader reads at every start — 1.5 MB of relocation entries
//! paged in and kept resident. DT_RELR encodes the same relocations in a few kilobytes, so every
//! `exoclaw` process starts faster and an idle gateway or REPL is about 2 MB smaller. The loader
//! must understand it (glibc 2.36 and later; the binary then declares that it needs it), so the
//! flag is only passed when the machine building is such a glibc system, building for itself.
//! `EXOCLAW_NO_RELR=1` leaves it out (for a binary meant to run on older systems).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EXOCLAW_NO_RELR");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("EXOCLAW_NO_RELR").is_some_and(|v| v != "0") {
        return;
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if glibc_version().is_some_and(|version| version >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_version() -> Option<(u32, u32)> {
    let output = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}
