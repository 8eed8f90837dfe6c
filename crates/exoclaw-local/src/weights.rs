//! Loading a GGUF's transformer weights, re-quantising weight types that have no fast CPU kernel.

use crate::LocalError;
use crate::gguf::{md_str, md_u64};
use crate::transformer::Transformer;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Content;
use std::{fs::File, io::BufReader, path::Path};

/// Weight types neither candle nor this crate has a fast (AVX2/NEON) CPU kernel for. Candle's
/// products over them are scalar code ≈ 3× slower than Q8_0, so they are re-quantised to Q8_0 when
/// loaded. Q4_1 (SmolLM2's GGUF) is not among them: [`crate::kernels::q4_1`] multiplies it as it
/// is stored.
pub(crate) fn needs_requantising(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// The transformer families this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama, Llama 2/3, SmolLM, Mistral-style GGUFs (`general.architecture = llama`).
    Llama,
    /// Qwen2 / Qwen2.5 (`general.architecture = qwen2`): llama-like with attention biases.
    Qwen2,
}

impl Architecture {
    fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            _ => None,
        }
    }

    /// The prefix of this architecture's metadata keys.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// The parts of a GGUF model file.
pub struct ModelFile {
    /// Family of the transformer.
    pub architecture: Architecture,
    /// Context window in tokens.
    pub context_length: usize,
    /// The weights, ready to run.
    pub weights: Transformer,
    /// Whether some weight types were re-quantised to Q8_0 while loading.
    pub requantised: bool,
}

/// Loads the weights of the GGUF at `path`, whose header was already read into `content`.
pub fn load_weights(
    path: &Path,
    content: Content,
    mut reader: BufReader<File>,
) -> Result<ModelFile, LocalError> {
    let bad = |reason: String| LocalError::BadModel { path: path.to_owned(), reason };
    let arch_name = md_str(&content.metadata, "general.architecture").unwrap_or("(none)").to_owned();
    let architecture = Architecture::from_gguf(&arch_name).ok_or_else(|| {
        bad(format!("architecture `{arch_name}` is not supported (supported: llama, qwen2)"))
    })?;
    let context_length = md_u64(&content.metadata, &format!("{}.context_length", architecture.key_prefix()))
        .ok_or_else(|| bad("no context length in the metadata".into()))? as usize;
    let requantised = content.tensor_infos.values().any(|t| needs_requantising(t.ggml_dtype));
    let weights = Transformer::from_gguf(&content, &mut reader, architecture.key_prefix(), context_length)
        .map_err(|e| bad(e.to_string()))?;
    Ok(ModelFile { architecture, context_length, weights, requantised })
}
