//! Loading a GGUF's transformer weights, re-quantising weight types that have no fast CPU kernel.

use crate::LocalError;
use crate::gguf::{md_str, md_u64};
use candle_core::quantized::gguf_file::{Content, Value};
use std::{fs::File, io::BufReader, path::Path};

use candle_core::{
    Device, Tensor,
    quantized::{GgmlDType, QTensor, gguf_file},
};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use std::io::Cursor;

/// Weight types candle has no fast (AVX2/NEON) CPU kernel for. Matrix products over them fall back
/// to scalar code ≈ 3× slower than Q8_0, so they are re-quantised to Q8_0 when loaded: the Q4_1
/// SmolLM2 goes from ≈ 22 to ≈ 60 tokens/s on two cores, for about 70 MB more memory.
fn needs_requantising(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
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

/// Loaded transformer weights with their KV cache.
pub enum Weights {
    /// A llama-architecture model.
    Llama(quantized_llama::ModelWeights),
    /// A qwen2-architecture model.
    Qwen2(quantized_qwen2::ModelWeights),
}

impl Weights {
    /// Runs `tokens` (shape `[1, n]`) at positions `position..position+n`, extending the KV cache,
    /// and returns the logits of the last position.
    pub fn forward(&mut self, tokens: &Tensor, position: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(m) => m.forward(tokens, position),
            Weights::Qwen2(m) => m.forward(tokens, position),
        }
    }

    /// Forgets the KV cache, for a new conversation.
    pub fn clear_cache(&mut self) {
        match self {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
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
    pub weights: Weights,
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
    let device = Device::Cpu;
    let requantised = content.tensor_infos.values().any(|t| needs_requantising(t.ggml_dtype));
    let weights = if requantised {
        let rewritten = requantise(&content, &mut reader, &device).map_err(|e| bad(e.to_string()))?;
        let mut cursor = Cursor::new(rewritten);
        let content = Content::read(&mut cursor).map_err(|e| bad(e.to_string()))?;
        from_gguf(architecture, content, &mut cursor, &device)
    } else {
        from_gguf(architecture, content, &mut reader, &device)
    }
    .map_err(|e| bad(e.to_string()))?;
    Ok(ModelFile { architecture, context_length, weights, requantised })
}

fn from_gguf<R: std::io::Read + std::io::Seek>(
    architecture: Architecture,
    content: Content,
    reader: &mut R,
    device: &Device,
) -> candle_core::Result<Weights> {
    Ok(match architecture {
        Architecture::Llama => {
            Weights::Llama(quantized_llama::ModelWeights::from_gguf(content, reader, device)?)
        }
        Architecture::Qwen2 => {
            Weights::Qwen2(quantized_qwen2::ModelWeights::from_gguf(content, reader, device)?)
        }
    })
}

/// A copy of the GGUF, in memory, with every slow weight type re-quantised to Q8_0. candle's model
/// loaders read tensors from a GGUF reader, so a rewritten GGUF is the narrowest seam to change
/// the weight types through.
fn requantise(
    content: &Content,
    reader: &mut BufReader<File>,
    device: &Device,
) -> candle_core::Result<Vec<u8>> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(reader, name, device)?;
        let tensor = if needs_requantising(tensor.dtype()) {
            QTensor::quantize(&tensor.dequantize(device)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let size: usize = tensors.iter().map(|(_, t)| t.storage_size_in_bytes() + 32).sum();
    let mut out = Cursor::new(Vec::with_capacity(size + (4 << 20)));
    gguf_file::write(&mut out, &metadata, &tensor_refs)?;
    Ok(out.into_inner())
}
