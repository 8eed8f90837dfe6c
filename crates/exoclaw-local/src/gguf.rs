//! Reading GGUF files: metadata, and (later) weights.

use crate::LocalError;
use candle_core::quantized::gguf_file::{Content, Value};
use std::{collections::HashMap, fs::File, io::BufReader, path::Path};

/// GGUF metadata: key → value.
pub type Metadata = HashMap<String, Value>;

/// Reads only the header (metadata and tensor table) of a GGUF file.
pub fn read_content(path: &Path) -> Result<(Content, BufReader<File>), LocalError> {
    let file = File::open(path).map_err(|source| LocalError::Io { path: path.to_owned(), source })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| LocalError::BadModel {
        path: path.to_owned(),
        reason: match unknown_tensor_type(&e.to_string()) {
            Some(name) => format!(
                "it holds {name} tensors, a type exoclaw cannot read (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q2_K…Q6_K): use a GGUF of the model in one of those, such as Q4_K_M"
            ),
            None => format!("not a GGUF file: {e}"),
        },
    })?;
    Ok((content, reader))
}

/// The name of the GGML tensor type candle's reader refused (`unknown dtype for tensor 23`).
fn unknown_tensor_type(message: &str) -> Option<String> {
    // The first line: with `RUST_BACKTRACE` set, candle's message goes on with a backtrace.
    let first = message.lines().next()?;
    let number: u32 = first.strip_prefix("unknown dtype for tensor ")?.trim().parse().ok()?;
    // ggml's `enum ggml_type`, for the types candle does not read.
    let name = match number {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return Some(format!("GGML type {number}")),
    };
    Some(name.to_owned())
}

/// A string metadata value.
pub fn md_str<'a>(md: &'a Metadata, key: &str) -> Option<&'a str> {
    md.get(key).and_then(|v| v.to_string().ok()).map(String::as_str)
}

/// An unsigned integer metadata value of any width.
pub fn md_u64(md: &Metadata, key: &str) -> Option<u64> {
    let v = md.get(key)?;
    v.to_u64()
        .ok()
        .or_else(|| v.to_u32().ok().map(u64::from))
        .or_else(|| v.to_i32().ok().and_then(|n| u64::try_from(n).ok()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_tensor_type_candle_cannot_read_is_named() {
        assert_eq!(super::unknown_tensor_type("unknown dtype for tensor 23").as_deref(), Some("IQ4_XS"));
        assert_eq!(
            super::unknown_tensor_type("unknown dtype for tensor 99").as_deref(),
            Some("GGML type 99")
        );
        assert_eq!(super::unknown_tensor_type("unexpected end of file"), None);
    }
}
