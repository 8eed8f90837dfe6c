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
//!
//! Function order (`--symbol-ordering-file`, `link/symbol-order.txt`, written by
//! `scripts/symbol-order.sh`): the kernel pages code in 64 KB at a time, and the ~2 MB of
//! functions `exoclaw` runs to start (and to serve a `/v1` request) were spread over 147 such
//! windows of its 21 MB of text, all of which stayed resident. Placed side by side they fill a few
//! dozen. Only for lld, Rust's default linker on x86_64 Linux, and only when no other linker is
//! configured; `EXOCLAW_NO_SYMBOL_ORDER=1` leaves it out. Names missing from the binary (the list
//! is older than the code) are skipped without a warning.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
    for var in [
        "EXOCLAW_NO_RELR",
        "EXOCLAW_NO_SYMBOL_ORDER",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
        "RUSTFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if !opted_out("EXOCLAW_NO_RELR") && glibc_version().is_some_and(|version| version >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // The package's folder as cargo gives it to this run (not `env!`, which bakes in the folder the
    // script was compiled in: a second checkout sharing the target folder would link with the
    // first one's file).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = std::path::Path::new(&manifest_dir).join("link/symbol-order.txt");
    if !opted_out("EXOCLAW_NO_SYMBOL_ORDER") && default_lld(&target) && order.is_file() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

fn opted_out(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v != "0")
}

/// Whether the binary is linked by rustc's own lld: the default for x86_64 Linux, unless a linker
/// (or linker features) is configured.
fn default_lld(target: &str) -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    target == "x86_64-unknown-linux-gnu"
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && !["linker", "fuse-ld"].iter().any(|custom| flags.contains(custom))
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_version() -> Option<(u32, u32)> {
    let output = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}
