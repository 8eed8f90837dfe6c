//! [`Encoder`]: a sentence-transformers BERT model folder loaded for inference — its tokenizer
//! (truncating as sentence-transformers does), the BERT encoder ([`super::bert`]), mean pooling
//! over each input's own tokens and L2 normalisation. Synchronous and CPU-bound:
//! [`super::LocalEmbedder`] runs it on blocking threads.

use super::bert::Bert;
use crate::LocalError;
use candle_transformers::models::bert::Config;
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// all-MiniLM-L6-v2's `max_seq_length` (its `sentence_bert_config.json`): longer inputs are cut to
/// this many tokens, `[CLS]` and `[SEP]` included, as sentence-transformers cuts them. A folder
/// whose `sentence_bert_config.json` says otherwise is cut where it says.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// The files an [`Encoder`] reads from a model folder.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// What to do about a model folder that cannot be loaded.
const REMEDY: &str = "a sentence-transformers model folder holds config.json, tokenizer.json and \
    model.safetensors; delete the folder and fetch it again (for all-MiniLM-L6-v2: \
    bash scripts/peers/minilm.sh)";

/// A loaded sentence-embedding model.
pub struct Encoder {
    model: Bert,
    tokenizer: Tokenizer,
    max_tokens: usize,
}

impl Encoder {
    /// Loads the model in `dir` (see [`MODEL_FILES`]); a missing or unreadable file is
    /// [`LocalError::BadModel`] saying which and what to do.
    pub fn load(dir: &Path) -> Result<Self, LocalError> {
        if !dir.is_dir() {
            return Err(bad(dir, format!("there is no such folder; {REMEDY}")));
        }
        let file = |name: &str| -> Result<PathBuf, LocalError> {
            let path = dir.join(name);
            if path.is_file() { Ok(path) } else { Err(bad(dir, format!("it has no {name}; {REMEDY}"))) }
        };
        let (config_path, tokenizer_path, weights_path) =
            (file(MODEL_FILES[0])?, file(MODEL_FILES[1])?, file(MODEL_FILES[2])?);

        let text = read(&config_path)?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| bad(&config_path, format!("not a BERT config.json ({e}); {REMEDY}")))?;
        let max_tokens =
            max_seq_length(dir)?.unwrap_or(DEFAULT_MAX_TOKENS).min(config.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| bad(&tokenizer_path, format!("not a tokenizers tokenizer.json ({e}); {REMEDY}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..TruncationParams::default() }))
            .map_err(|e| bad(&tokenizer_path, format!("cannot truncate at {max_tokens} tokens: {e}")))?;
        // Batches are padded here, to the longest input of each, not by the tokenizer (whose file
        // pads every input to 128).
        tokenizer.with_padding(None);

        let tensors = super::safetensors::read(&weights_path)
            .map_err(|e| bad(&weights_path, format!("not a readable safetensors file: {e}; {REMEDY}")))?;
        let model = Bert::new(&config, tensors).map_err(|reason| {
            bad(&weights_path, format!("not the weights config.json describes: {reason}; {REMEDY}"))
        })?;
        Ok(Self { model, tokenizer, max_tokens })
    }

    /// The vectors' length.
    pub fn dimensions(&self) -> usize {
        self.model.hidden()
    }

    /// Most tokens of one input the model sees (longer inputs are cut).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of each text, `[CLS]` and `[SEP]` added, cut at [`Self::max_tokens`].
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, LocalError> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings =
            self.tokenizer.encode_batch(texts, true).map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// One unit vector per token sequence, in order: the sequences run through BERT together, and
    /// each one's token vectors averaged over its own tokens.
    pub fn embed(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, LocalError> {
        let hidden = self.model.forward(batch)?;
        let dims = self.dimensions();
        let mut start = 0;
        Ok(batch
            .iter()
            .map(|seq| {
                let end = start + seq.len() * dims;
                let vector = mean_normalised(&hidden[start..end], dims);
                start = end;
                vector
            })
            .collect())
    }
}

/// The mean of the `dims`-long token vectors laid end to end in `tokens`, scaled to unit length
/// (sentence-transformers' mean pooling then `Normalize`: a zero vector stays zero).
pub(crate) fn mean_normalised(tokens: &[f32], dims: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dims];
    for token in tokens.chunks_exact(dims) {
        for (s, x) in sum.iter_mut().zip(token) {
            *s += x;
        }
    }
    // Dividing by the token count before normalising changes nothing but rounding; it is kept so
    // the vector is the mean, as sentence-transformers computes it.
    let count = (tokens.len() / dims.max(1)).max(1) as f32;
    sum.iter_mut().for_each(|s| *s /= count);
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|s| *s /= norm);
    sum
}

/// `max_seq_length` from the folder's `sentence_bert_config.json`, if it has one.
fn max_seq_length(dir: &Path) -> Result<Option<usize>, LocalError> {
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let json: serde_json::Value =
        serde_json::from_str(&read(&path)?).map_err(|e| bad(&path, format!("not JSON ({e}); {REMEDY}")))?;
    Ok(json.get("max_seq_length").and_then(serde_json::Value::as_u64).map(|n| n as usize))
}

fn read(path: &Path) -> Result<String, LocalError> {
    std::fs::read_to_string(path).map_err(|source| LocalError::Io { path: path.to_owned(), source })
}

fn bad(path: &Path, reason: String) -> LocalError {
    LocalError::BadModel { path: path.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::mean_normalised;

    #[test]
    fn pooling_averages_the_tokens_and_scales_to_unit_length() {
        let v = mean_normalised(&[1.0, 0.0, 3.0, 4.0], 2);
        // mean (2, 2) → (1/√2, 1/√2)
        assert!((v[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6 && (v[1] - v[0]).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn a_zero_vector_stays_zero() {
        assert_eq!(mean_normalised(&[0.0; 6], 3), vec![0.0; 3]);
    }
}
