//! Choosing the next token from logits: repetition penalty, an optional allowed-token mask
//! (constrained decoding), then greedy, top-k, top-p or plain temperature sampling.

use crate::LocalError;
use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::utils::apply_repeat_penalty;

/// Sampling settings for one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// 0 picks the most likely token every time (greedy, deterministic).
    pub temperature: f64,
    /// Nucleus sampling mass; `None` or 1.0 for off.
    pub top_p: Option<f64>,
    /// Sample among the `k` most likely tokens; `None` for off.
    pub top_k: Option<usize>,
    /// Penalty (> 1 discourages) for tokens among the last `repeat_last_n`; 1.0 for off.
    pub repeat_penalty: f32,
    /// How many recent tokens (prompt included) the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the random generator: the same seed gives the same answer.
    pub seed: u64,
}

impl Default for SamplingOptions {
    /// Greedy by default: the default model (135M parameters) is torn between English and French on
    /// its first token, and sampled answers go astray even at temperature 0.1 — its most likely
    /// answer is its best. Top-k and top-p are llama.cpp's defaults, for when a temperature is set.
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: Some(0.95),
            top_k: Some(40),
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// Picks tokens according to [`SamplingOptions`].
pub struct Sampler {
    processor: LogitsProcessor,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

impl Sampler {
    /// A sampler seeded with `options.seed`.
    pub fn new(options: &SamplingOptions) -> Self {
        let t = options.temperature;
        let top_p = options.top_p.filter(|p| *p > 0.0 && *p < 1.0);
        let sampling = match (t <= 0.0, options.top_k, top_p) {
            (true, _, _) => Sampling::ArgMax,
            (false, Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature: t },
            (false, Some(k), None) => Sampling::TopK { k, temperature: t },
            (false, None, Some(p)) => Sampling::TopP { p, temperature: t },
            (false, None, None) => Sampling::All { temperature: t },
        };
        Self {
            processor: LogitsProcessor::from_sampling(options.seed, sampling),
            repeat_penalty: options.repeat_penalty,
            repeat_last_n: options.repeat_last_n,
        }
    }

    /// The next token. `history` is every token so far (prompt included); `allowed`, when given,
    /// lists for each token id whether it may come next (ids past its end are not allowed).
    pub fn sample(
        &mut self,
        logits: &Tensor,
        history: &[u32],
        allowed: Option<&[bool]>,
    ) -> Result<u32, LocalError> {
        let mut logits = logits.to_dtype(candle_core::DType::F32)?;
        if self.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(self.repeat_last_n);
            logits = apply_repeat_penalty(&logits, self.repeat_penalty, &history[start..])?;
        }
        if let Some(allowed) = allowed {
            let mut values = logits.to_vec1::<f32>()?;
            let mut any = false;
            for (i, v) in values.iter_mut().enumerate() {
                if allowed.get(i).copied().unwrap_or(false) {
                    any = true;
                } else {
                    *v = f32::NEG_INFINITY;
                }
            }
            if !any {
                return Err(LocalError::Grammar("no token is allowed next".into()));
            }
            logits = Tensor::new(values, logits.device())?;
        }
        Ok(self.processor.sample(&logits)?)
    }
}
