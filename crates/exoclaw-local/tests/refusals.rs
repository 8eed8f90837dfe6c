//! GGUFs the embedded model cannot run are refused at load with an error naming what is wrong:
//! an architecture it does not implement, a tensor type it cannot read. The files are written
//! here, byte by byte, in the GGUF v3 layout.

#![allow(clippy::unwrap_used, clippy::panic)]

use exoclaw_local::{LocalError, LocalModel};
use std::path::{Path, PathBuf};

/// A GGUF v3 file with the string metadata `strings` and one 256×1 tensor `blk.0.weight` of GGML
/// type `tensor_type` (its data: zeros).
fn gguf(name: &str, strings: &[(&str, &str)], tensor_type: u32) -> PathBuf {
    let mut out = Vec::new();
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend((strings.len() as u64).to_le_bytes());
    for (key, value) in strings {
        string(&mut out, key);
        out.extend(8u32.to_le_bytes()); // string
        string(&mut out, value);
    }
    string(&mut out, "blk.0.weight");
    out.extend(2u32.to_le_bytes());
    out.extend(256u64.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend(tensor_type.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.resize(out.len().next_multiple_of(32) + 1024, 0);
    let path = std::env::temp_dir().join(format!("exoclaw-refusal-{name}-{}.gguf", std::process::id()));
    std::fs::write(&path, out).unwrap();
    path
}

fn refusal(path: &Path) -> String {
    match LocalModel::load(path) {
        Err(e @ LocalError::BadModel { .. }) => e.to_string(),
        Err(other) => panic!("expected a bad-model error, got {other}"),
        Ok(_) => panic!("{} loaded", path.display()),
    }
}

#[test]
fn an_unsupported_architecture_is_named() {
    let path = gguf("mamba", &[("general.architecture", "mamba")], 0);
    let message = refusal(&path);
    assert!(message.contains("architecture `mamba` is not supported"), "{message}");
    assert!(message.contains("gemma3"), "the supported ones are listed: {message}");
}

#[test]
fn an_unreadable_tensor_type_is_named() {
    // 23: IQ4_XS, an importance-matrix type.
    let path = gguf("iq4", &[("general.architecture", "llama")], 23);
    let message = refusal(&path);
    assert!(message.contains("IQ4_XS") && message.contains("Q4_K_M"), "{message}");
}
