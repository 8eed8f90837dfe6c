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
        reason: format!("not a GGUF file: {e}"),
    })?;
    Ok((content, reader))
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
