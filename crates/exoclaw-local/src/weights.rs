//! Loading a GGUF's transformer weights, re-quantising weight types that have no fast CPU kernel.

use crate::LocalError;
use crate::gguf::{Metadata, md_str, md_u64};
use crate::transformer::Transformer;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Content;
use std::{fs::File, io::BufReader, path::Path};

/// Weight types neither candle nor this crate has a fast (AVX2/NEON) CPU kernel for, which are
/// re-quantised to Q8_0 when loaded. None at present: [`crate::kernels`] multiplies Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K as they are stored, and candle has SIMD kernels for the
/// other K-quants. (Q5_0 and Q5_1, which candle multiplies with scalar code ≈ 3× slower than
/// Q8_0, used to be re-quantised: 34 bytes per 32 weights where they are 22 and 24.)
pub(crate) fn needs_requantising(dtype: GgmlDType) -> bool {
    let _ = dtype;
    false
}

/// The transformer families this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama, Llama 2/3, SmolLM, Mistral-style GGUFs (`general.architecture = llama`).
    Llama,
    /// Qwen2 / Qwen2.5 (`qwen2`): llama-like with attention biases.
    Qwen2,
    /// Qwen3 (`qwen3`): llama-like with RMS norms on each query and key head.
    Qwen3,
    /// Gemma 3 (`gemma3`): norms on query/key heads and after attention and FFN, GELU, scaled
    /// embeddings, and five sliding-window layers to each global one.
    Gemma3,
}

/// The names [`Architecture::from_gguf`] knows, for errors.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2, qwen3, gemma3";

/// What sets one family's forward pass apart from the others', as data (the tensors a layer has
/// — biases, per-head norms, post-norms — are read from the file itself).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    /// The prefix of the family's metadata keys (`llama.block_count`).
    pub key_prefix: &'static str,
    /// Rotary embedding over the two halves of a head ("neox") rather than interleaved pairs.
    pub rope_neox: bool,
    /// Input embeddings multiplied by `√dim`.
    pub scale_embeddings: bool,
    /// The FFN's gate activation.
    pub activation: Activation,
    /// Layers that attend through a sliding window, if any.
    pub sliding: Option<SlidingLayers>,
}

/// The gate activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): llama, Qwen.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// A layer pattern of local (sliding-window) and global attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingLayers {
    /// Every `period`-th layer (the last of each period) attends to the whole context; the
    /// others see only the last `{prefix}.attention.sliding_window` positions.
    pub period: usize,
    /// The rotary base of the local layers (the global ones use `{prefix}.rope.freq_base`).
    pub local_rope_base: f32,
}

impl Architecture {
    /// The architecture named by `general.architecture`.
    pub fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "qwen3" => Some(Architecture::Qwen3),
            "gemma3" => Some(Architecture::Gemma3),
            _ => None,
        }
    }

    /// The prefix of this architecture's metadata keys.
    pub fn key_prefix(self) -> &'static str {
        self.family().key_prefix
    }

    /// How this family's forward pass runs (llama.cpp's `src/llama-model.cpp` for each).
    pub fn family(self) -> Family {
        let llama = Family {
            key_prefix: "llama",
            rope_neox: false,
            scale_embeddings: false,
            activation: Activation::Silu,
            sliding: None,
        };
        match self {
            Architecture::Llama => llama,
            Architecture::Qwen2 => Family { key_prefix: "qwen2", rope_neox: true, ..llama },
            Architecture::Qwen3 => Family { key_prefix: "qwen3", rope_neox: true, ..llama },
            Architecture::Gemma3 => Family {
                key_prefix: "gemma3",
                rope_neox: true,
                scale_embeddings: true,
                activation: Activation::GeluTanh,
                sliding: Some(SlidingLayers { period: 6, local_rope_base: 10_000.0 }),
            },
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

/// The architecture of the GGUF at `path`, or an error naming the one it has (checked before
/// anything else is read, so that an unsupported model says so rather than fail on its tokenizer).
pub fn architecture_of(path: &Path, metadata: &Metadata) -> Result<Architecture, LocalError> {
    let name = md_str(metadata, "general.architecture").unwrap_or("(none)");
    Architecture::from_gguf(name).ok_or_else(|| LocalError::BadModel {
        path: path.to_owned(),
        reason: format!("architecture `{name}` is not supported (supported: {SUPPORTED_ARCHITECTURES})"),
    })
}

/// Loads the weights of the GGUF at `path`, whose header was already read into `content`.
pub fn load_weights(
    path: &Path,
    content: Content,
    mut reader: BufReader<File>,
) -> Result<ModelFile, LocalError> {
    let bad = |reason: String| LocalError::BadModel { path: path.to_owned(), reason };
    let architecture = architecture_of(path, &content.metadata)?;
    let context_length = md_u64(&content.metadata, &format!("{}.context_length", architecture.key_prefix()))
        .ok_or_else(|| bad("no context length in the metadata".into()))? as usize;
    let requantised = content.tensor_infos.values().any(|t| needs_requantising(t.ggml_dtype));
    let weights = Transformer::from_gguf(&content, &mut reader, architecture.family(), context_length)
        .map_err(|e| bad(e.to_string()))?;
    Ok(ModelFile { architecture, context_length, weights, requantised })
}
