//! Which GGUF file a local model name means, and the GGUFs in the model cache.
//!
//! The embedded provider serves more than its default model. A name is, in this order:
//! - the default model's short name (`smollm2`), found in the cache or fetched;
//! - a path to a GGUF file (`./models/qwen3-0.6b-q4_k_m.gguf`, `/srv/gemma.gguf`, `~/m.gguf`):
//!   any name with a `/` in it or ending in `.gguf`;
//! - the name of a GGUF in the model cache, without `.gguf` (`gemma-3-270m-q4_k_m`).
//!
//! Only the default model is ever downloaded; the others are used where they are.

use crate::LocalError;
use crate::fetch::{Locator, ModelSpec};
use crate::gguf::{Metadata, md_str, md_u64, read_content};
use std::path::{Path, PathBuf};

/// What a local model name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The default model, located (or fetched) by its spec.
    Known(ModelSpec),
    /// A GGUF file on this machine.
    File(PathBuf),
}

/// Resolves the local model `name` (see the module docs); `default` is the provider's own model.
pub fn resolve(
    locator: &Locator,
    default: &ModelSpec,
    provider: &str,
    name: &str,
) -> Result<ModelSource, LocalError> {
    if name == default.name {
        return Ok(ModelSource::Known(*default));
    }
    if looks_like_path(name) {
        let path = expand_home(name);
        return if path.is_file() {
            Ok(ModelSource::File(path))
        } else {
            Err(LocalError::ModelUnavailable {
                name: name.to_owned(),
                reason: format!("{} is not a file", path.display()),
                how_to_get: "name an existing GGUF file (`local/PATH.gguf`), or run `exoclaw models` to see the cached ones"
                    .into(),
            })
        };
    }
    if let Some(found) = cached_files(&locator.cache_dir).into_iter().find(|path| cached_name(path) == name) {
        return Ok(ModelSource::File(found));
    }
    // The default model's own file is served under its short name.
    let default_file = locator.cache_dir.join(default.file_name);
    let mut served = vec![default.name.to_owned()];
    served.extend(
        cached_files(&locator.cache_dir).iter().filter(|p| **p != default_file).map(|p| cached_name(p)),
    );
    Err(LocalError::UnknownModel { provider: provider.to_owned(), requested: name.to_owned(), served })
}

/// Whether a model name is meant as a file path.
fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.contains(std::path::MAIN_SEPARATOR) || name.ends_with(".gguf")
}

/// `~/…` under `$HOME`; anything else as it is.
fn expand_home(name: &str) -> PathBuf {
    match (name.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(name),
    }
}

/// The name a cached GGUF is asked for by: its file name without `.gguf`.
pub fn cached_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The `.gguf` files directly in `dir`, by name (none when it does not exist).
fn cached_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    files.sort();
    files
}

/// A GGUF in the model cache, as `exoclaw models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// The name it is asked for by (`local/NAME`).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// `general.architecture` (`llama`, `gemma3`…).
    pub architecture: String,
    /// The quantisation (`Q4_K_M`, `Q4_1`…), from `general.file_type`.
    pub quantisation: String,
    /// Whether this crate runs its architecture.
    pub supported: bool,
}

/// The GGUFs in the cache folder `dir`, with what their headers say. A file that is not a
/// readable GGUF is listed with the reason as its architecture rather than left out.
pub fn cached_models(dir: &Path) -> Vec<CachedModel> {
    cached_files(dir)
        .into_iter()
        .map(|path| {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let (architecture, quantisation) = match read_content(&path) {
                Ok((content, _)) => {
                    let md = &content.metadata;
                    (md_str(md, "general.architecture").unwrap_or("(none)").to_owned(), quantisation(md))
                }
                Err(_) => ("(not a GGUF)".to_owned(), "-".to_owned()),
            };
            let supported = crate::weights::Architecture::from_gguf(&architecture).is_some();
            CachedModel { name: cached_name(&path), path, size, architecture, quantisation, supported }
        })
        .collect()
}

/// The quantisation named by `general.file_type` (llama.cpp's `llama_ftype`).
fn quantisation(md: &Metadata) -> String {
    let name = match md_u64(md, "general.file_type") {
        Some(0) => "F32",
        Some(1) => "F16",
        Some(2) => "Q4_0",
        Some(3) => "Q4_1",
        Some(7) => "Q8_0",
        Some(8) => "Q5_0",
        Some(9) => "Q5_1",
        Some(10) => "Q2_K",
        Some(11) => "Q3_K_S",
        Some(12) => "Q3_K_M",
        Some(13) => "Q3_K_L",
        Some(14) => "Q4_K_S",
        Some(15) => "Q4_K_M",
        Some(16) => "Q5_K_S",
        Some(17) => "Q5_K_M",
        Some(18) => "Q6_K",
        Some(32) => "BF16",
        Some(other) => return format!("type {other}"),
        None => "?",
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fetch::SMOLLM2_135M;

    fn locator(dir: &Path) -> Locator {
        Locator { cache_dir: dir.to_owned(), ..Locator::default() }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("exoclaw-catalog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_default_name_is_the_known_model() {
        let dir = temp_dir("default");
        assert_eq!(
            resolve(&locator(&dir), &SMOLLM2_135M, "local", "smollm2").unwrap(),
            ModelSource::Known(SMOLLM2_135M)
        );
    }

    #[test]
    fn a_cached_file_is_found_by_its_name_and_a_path_by_its_path() {
        let dir = temp_dir("cached");
        let file = dir.join("tiny-q4_0.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let locator = locator(&dir);
        assert_eq!(
            resolve(&locator, &SMOLLM2_135M, "local", "tiny-q4_0").unwrap(),
            ModelSource::File(file.clone())
        );
        let by_path = file.to_string_lossy().into_owned();
        assert_eq!(resolve(&locator, &SMOLLM2_135M, "local", &by_path).unwrap(), ModelSource::File(file));
    }

    #[test]
    fn an_unknown_name_lists_what_is_served() {
        let dir = temp_dir("unknown");
        std::fs::write(dir.join("other.gguf"), b"GGUF").unwrap();
        let error = resolve(&locator(&dir), &SMOLLM2_135M, "local", "gpt-5").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("gpt-5") && text.contains("local/smollm2") && text.contains("local/other"),
            "{text}"
        );
        let missing = resolve(&locator(&dir), &SMOLLM2_135M, "local", "./nowhere.gguf").unwrap_err();
        assert!(missing.to_string().contains("nowhere.gguf is not a file"), "{missing}");
    }

    #[test]
    fn a_file_that_is_not_a_gguf_is_listed_as_such() {
        let dir = temp_dir("listing");
        std::fs::write(dir.join("broken.gguf"), b"not a gguf at all").unwrap();
        let listed = cached_models(&dir);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].architecture.as_str()), ("broken", "(not a GGUF)"));
        assert!(!listed[0].supported);
    }
}
