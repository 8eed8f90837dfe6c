//! A BERT encoder's forward pass written for sentence embeddings on the CPU: the weights of a
//! Hugging Face `BertModel` checkpoint (as candle's `bert` module names them), the matrix
//! products on candle's tensors through candle's kernel (`dense::matmul`), everything between
//! them in plain loops over the rows.
//!
//! Why not candle-transformers' `BertModel` as is (this crate used it first): on the project's
//! 2-core machine it ran at ≈ 0.6× sentence-transformers. Its matrix products were less than half
//! the time; the rest went to one tensor operation per step — each allocating and filling a fresh
//! buffer, a scalar `erf` for every GELU value and a multi-pass softmax — and to threads waiting on
//! one another between them. Here:
//!
//! - the inputs of a batch are packed end to end: the linear layers (≈ 90% of the arithmetic) see
//!   only real tokens, no padding;
//! - query, key and value are one product (their weights stacked at load);
//! - bias, GELU (erf by a rational approximation that vectorises, |error| < 5e-7), residual and
//!   layer norm are fused into one pass over the rows, spread over rayon's pool (the pool candle's
//!   matrix kernel runs on), done in place on the products' outputs (candle's in-place custom
//!   ops), so no activation is copied in or out of a tensor;
//! - attention runs sequence by sequence in parallel (each with its own length: no padding at
//!   all), heads batched in one product (`dense::matmul`), and a softmax whose `exp` vectorises
//!   (`fast_math::exp`).
//!
//! The arithmetic is BERT's: the same results as candle's `BertModel` and sentence-transformers
//! up to float rounding (`tests/minilm.rs` checks every vector against sentence-transformers).

use super::safetensors::Stored;
use crate::LocalError;
use crate::fast_math::exp;
use candle_core::{CpuStorage, Device, InplaceOp1, InplaceOp2, Layout, Storage, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;
use std::collections::HashMap;

/// Rows of a fused row-wise pass handed to one rayon task: enough work to outweigh the task.
const ROWS_PER_TASK: usize = 16;

/// A linear layer: `x · W + b` with `W` stored `(in, out)`, contiguous, as the product reads it
/// fastest.
struct Linear {
    weight: Tensor,
    bias: Vec<f32>,
}

impl Linear {
    /// `x · W` (without the bias, which the caller fuses into its next pass).
    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::dense::matmul(x, &self.weight)
    }
}

/// Layer norm's scale and shift.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// One encoder layer.
struct Layer {
    /// Query, key and value stacked: `hidden → 3 × hidden`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: Norm,
    up: Linear,
    down: Linear,
    output_norm: Norm,
}

/// The encoder, ready to run.
pub(super) struct Bert {
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0's embedding: sentence embeddings are single segments.
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    positions: usize,
    eps: f32,
}

/// The checkpoint's tensors, taken out by name.
struct Weights {
    tensors: HashMap<String, Stored>,
    /// `bert.` or nothing, as the checkpoint names them.
    prefix: &'static str,
}

impl Weights {
    /// The tensor `name`, checked to be of `shape`.
    fn stored(&mut self, name: &str, shape: &[usize]) -> Result<Stored, String> {
        let full = format!("{}{name}", self.prefix);
        let stored = self.tensors.remove(&full).ok_or_else(|| format!("it has no tensor `{full}`"))?;
        if stored.shape() != shape {
            return Err(format!("tensor `{full}` is {:?}, expected {shape:?}", stored.shape()));
        }
        Ok(stored)
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, String> {
        self.stored(name, shape)?.into_tensor().map_err(|e| format!("tensor `{name}`: {e}"))
    }

    /// The values of tensor `name` as they were read: the word embeddings, half the model, are
    /// not copied.
    fn vector(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        self.stored(name, shape)?.into_values().map_err(|e| format!("tensor `{name}`: {e}"))
    }

    fn norm(&mut self, name: &str, hidden: usize) -> Result<Norm, String> {
        Ok(Norm {
            weight: self.vector(&format!("{name}.weight"), &[hidden])?,
            bias: self.vector(&format!("{name}.bias"), &[hidden])?,
        })
    }

    /// The linear layers `names` (PyTorch's `(out, in)` weights) stacked into one, transposed.
    fn linear(&mut self, names: &[String], inputs: usize, outputs: usize) -> Result<Linear, String> {
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for name in names {
            weights.push(self.take(&format!("{name}.weight"), &[outputs, inputs])?);
            bias.extend(self.vector(&format!("{name}.bias"), &[outputs])?);
        }
        let weight = Tensor::cat(&weights, 0)
            .and_then(|w| w.t())
            .and_then(|w| w.contiguous())
            .map_err(|e| format!("{}: {e}", names.join(", ")))?;
        Ok(Linear { weight, bias })
    }
}

impl Bert {
    /// The encoder of `config` from a checkpoint's tensors; a missing or misshapen tensor is
    /// named in the error.
    pub(super) fn new(config: &Config, tensors: HashMap<String, Stored>) -> Result<Self, String> {
        if config.hidden_act != HiddenAct::Gelu {
            return Err(format!("its activation is {:?}; only `gelu` (erf) is supported", config.hidden_act));
        }
        let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || hidden % heads != 0 {
            return Err(format!("{hidden} dimensions do not split into {heads} heads"));
        }
        let prefix = if tensors.keys().any(|k| k.starts_with("bert.")) { "bert." } else { "" };
        let mut w = Weights { tensors, prefix };
        let (vocab, positions, inner) =
            (config.vocab_size, config.max_position_embeddings, config.intermediate_size);
        let token_types =
            w.vector("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, hidden])?;
        let mut bert = Bert {
            word: w.vector("embeddings.word_embeddings.weight", &[vocab, hidden])?,
            position: w.vector("embeddings.position_embeddings.weight", &[positions, hidden])?,
            token_type: token_types.get(..hidden).ok_or("it has no token type embeddings")?.to_vec(),
            embedding_norm: w.norm("embeddings.LayerNorm", hidden)?,
            layers: Vec::with_capacity(config.num_hidden_layers),
            hidden,
            heads,
            vocab,
            positions,
            eps: config.layer_norm_eps as f32,
        };
        for i in 0..config.num_hidden_layers {
            let at = |name: &str| format!("encoder.layer.{i}.{name}");
            let qkv = ["query", "key", "value"].map(|n| at(&format!("attention.self.{n}")));
            bert.layers.push(Layer {
                qkv: w.linear(&qkv, hidden, hidden)?,
                attention_out: w.linear(&[at("attention.output.dense")], hidden, hidden)?,
                attention_norm: w.norm(&at("attention.output.LayerNorm"), hidden)?,
                up: w.linear(&[at("intermediate.dense")], hidden, inner)?,
                down: w.linear(&[at("output.dense")], inner, hidden)?,
                output_norm: w.norm(&at("output.LayerNorm"), hidden)?,
            });
        }
        Ok(bert)
    }

    /// The vectors' length.
    pub(super) fn hidden(&self) -> usize {
        self.hidden
    }

    /// The last layer's token vectors of every sequence, packed end to end
    /// (`Σ len × hidden` values, sequence by sequence).
    pub(super) fn forward(&self, batch: &[Vec<u32>]) -> Result<Vec<f32>, LocalError> {
        let h = self.hidden;
        let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
        let tokens: usize = lens.iter().sum();
        if let Some(len) = lens.iter().find(|&&len| len > self.positions) {
            return Err(LocalError::Inference(format!(
                "{len} tokens, more than the model's {}",
                self.positions
            )));
        }
        let mut x = vec![0f32; tokens * h];
        let ids = batch.iter().flat_map(|seq| seq.iter().copied().enumerate());
        for (row, (position, id)) in x.chunks_exact_mut(h).zip(ids) {
            let id = id as usize;
            if id >= self.vocab {
                return Err(LocalError::Inference(format!("token id {id} is outside the vocabulary")));
            }
            let word = &self.word[id * h..(id + 1) * h];
            let pos = &self.position[position * h..(position + 1) * h];
            for (((v, w), p), t) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                *v = w + p + t;
            }
        }
        let none = vec![0f32; h];
        residual_norm(&mut x, &none, None, &self.embedding_norm, self.eps, h);
        // From here on every activation lives in a tensor: the products read their input where it
        // is, and the passes between them change the products' outputs in place.
        let mut x = Tensor::from_vec(x, (tokens, h), &Device::Cpu)?;
        for layer in &self.layers {
            let context = self.attention(layer, &x, &lens)?;
            let attended = layer.attention_out.product(&context)?;
            let norm =
                ResidualNorm { bias: &layer.attention_out.bias, norm: &layer.attention_norm, eps: self.eps };
            attended.inplace_op2(&x, &norm)?;
            let inner = layer.up.product(&attended)?;
            inner.inplace_op1(&BiasGelu { bias: &layer.up.bias })?;
            let out = layer.down.product(&inner)?;
            let norm = ResidualNorm { bias: &layer.down.bias, norm: &layer.output_norm, eps: self.eps };
            out.inplace_op2(&attended, &norm)?;
            x = out;
        }
        Ok(x.flatten_all()?.to_vec1()?)
    }

    /// Multi-head self-attention of the packed `x` (sequences of `lens` tokens); returns the
    /// heads' outputs side by side, packed the same way.
    ///
    /// Sequence by sequence, in parallel: each one's products are the size of the sequence, so
    /// nothing is padded, and each runs on one thread — products this small lose more to
    /// splitting across threads than they gain.
    fn attention(&self, layer: &Layer, x: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        let h = self.hidden;
        let tokens: usize = lens.iter().sum();
        let qkv = layer.qkv.product(x)?;
        let mut packed = vec![0f32; tokens * h];
        let mut parts = Vec::with_capacity(lens.len());
        let mut rest = packed.as_mut_slice();
        let mut first = 0;
        for &len in lens {
            let (part, after) = rest.split_at_mut(len * h);
            parts.push((first, len, part));
            rest = after;
            first += len;
        }
        read(&qkv, |qkv| {
            parts.into_par_iter().try_for_each(|(first, len, out)| {
                self.sequence_attention(&layer.qkv.bias, &qkv[first * 3 * h..(first + len) * 3 * h], len, out)
            })
        })??;
        Tensor::from_vec(packed, (tokens, h), &Device::Cpu)
    }

    /// One sequence's attention: `qkv` its `len` rows of query, key and value (before their bias),
    /// `out` its `len` rows of the heads' outputs.
    fn sequence_attention(
        &self,
        bias: &[f32],
        qkv: &[f32],
        len: usize,
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        let (h, heads) = (self.hidden, self.heads);
        let d = h / heads;
        // Head-major (heads, len, d). The query is scaled here rather than the scores.
        let scale = 1.0 / (d as f32).sqrt();
        let mut q = vec![0f32; len * h];
        let mut k = q.clone();
        let mut v = q.clone();
        for (i, row) in qkv.chunks_exact(3 * h).enumerate() {
            for head in 0..heads {
                let at = (head * len + i) * d;
                let c = head * d;
                let (dq, dk, dv) = (&mut q[at..at + d], &mut k[at..at + d], &mut v[at..at + d]);
                for ((o, x), b) in dq.iter_mut().zip(&row[c..c + d]).zip(&bias[c..c + d]) {
                    *o = (x + b) * scale;
                }
                let key = h + c..h + c + d;
                for ((o, x), b) in dk.iter_mut().zip(&row[key.clone()]).zip(&bias[key]) {
                    *o = x + b;
                }
                let value = 2 * h + c..2 * h + c + d;
                for ((o, x), b) in dv.iter_mut().zip(&row[value.clone()]).zip(&bias[value]) {
                    *o = x + b;
                }
            }
        }
        let shape = (heads, len, d);
        let (q, k, v) = (
            Tensor::from_vec(q, shape, &Device::Cpu)?,
            Tensor::from_vec(k, shape, &Device::Cpu)?,
            Tensor::from_vec(v, shape, &Device::Cpu)?,
        );
        let scores = crate::dense::matmul(&q, &k.t()?)?;
        scores.inplace_op1(&Softmax { len })?;
        let context = crate::dense::matmul(&scores, &v)?;
        read(&context, |context| {
            for (i, row) in out.chunks_exact_mut(h).enumerate() {
                for (head, part) in row.chunks_exact_mut(d).enumerate() {
                    let at = (head * len + i) * d;
                    part.copy_from_slice(&context[at..at + d]);
                }
            }
        })
    }
}

/// Runs `f` on the values of `tensor`, a contiguous f32 tensor on the CPU, where they are.
fn read<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Ok(f(&values[start..end])),
        _ => candle_core::bail!("expected a contiguous f32 tensor on the CPU"),
    }
}

/// The values of a contiguous f32 tensor's storage, to change in place.
fn values<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => Ok(&mut values[start..end]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 tensor"),
    }
}

/// `x ← GELU(x + bias)` on a product's output, in place ([`bias_gelu`]).
struct BiasGelu<'a> {
    bias: &'a [f32],
}

impl InplaceOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        bias_gelu(values(storage, layout, self.name())?, self.bias);
        Ok(())
    }
}

/// `x ← LayerNorm(x + bias + residual)` on a product's output, in place ([`residual_norm`]).
struct ResidualNorm<'a> {
    bias: &'a [f32],
    norm: &'a Norm,
    eps: f32,
}

impl InplaceOp2 for ResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let residual = match (s2, l2.contiguous_offsets()) {
            (CpuStorage::F32(values), Some((start, end))) => &values[start..end],
            _ => candle_core::bail!("{}: expected a contiguous f32 residual", self.name()),
        };
        let rows = values(s1, l1, self.name())?;
        if rows.len() != residual.len() {
            candle_core::bail!(
                "{}: {} values against a residual of {}",
                self.name(),
                rows.len(),
                residual.len()
            );
        }
        residual_norm(rows, self.bias, Some(residual), self.norm, self.eps, self.bias.len());
        Ok(())
    }
}

/// The attention scores `(heads, len, len)` of one sequence turned into weights in place: each
/// query row's softmax, head by head.
struct Softmax {
    len: usize,
}

impl InplaceOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (len, arch) = (self.len, pulp::Arch::new());
        for scores in values(storage, layout, self.name())?.chunks_exact_mut(len * len) {
            arch.dispatch(SoftmaxRows { scores, s: len, len });
        }
        Ok(())
    }
}

/// `rows ← LayerNorm(rows + bias + residual)`, row by row (`h` values each), in parallel.
fn residual_norm(rows: &mut [f32], bias: &[f32], residual: Option<&[f32]>, norm: &Norm, eps: f32, h: usize) {
    let arch = pulp::Arch::new();
    rows.par_chunks_mut(h * ROWS_PER_TASK).enumerate().for_each(|(task, rows)| {
        let at = task * ROWS_PER_TASK * h;
        let residual = residual.map(|r| &r[at..at + rows.len()]);
        arch.dispatch(NormRows { rows, bias, residual, norm, eps, h });
    });
}

/// `xs ← GELU(xs + bias)` (the erf form, as BERT's `gelu`), row by row, in parallel.
fn bias_gelu(xs: &mut [f32], bias: &[f32]) {
    let arch = pulp::Arch::new();
    xs.par_chunks_mut(bias.len() * ROWS_PER_TASK).for_each(|rows| arch.dispatch(GeluRows { rows, bias }));
}

// The row passes are values rather than closures so that [`pulp::Arch::dispatch`] compiles them,
// inlined, for the widest instruction set the CPU has (AVX-512, AVX2 + FMA), where the loops
// vectorise; a closure may be compiled out of line, for the baseline.

/// Rows of [`residual_norm`].
struct NormRows<'a> {
    rows: &'a mut [f32],
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    norm: &'a Norm,
    eps: f32,
    h: usize,
}

impl pulp::WithSimd for NormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let NormRows { rows, bias, residual, norm, eps, h } = self;
        for (i, row) in rows.chunks_exact_mut(h).enumerate() {
            if let Some(residual) = residual {
                for ((v, b), r) in row.iter_mut().zip(bias).zip(&residual[i * h..(i + 1) * h]) {
                    *v += b + r;
                }
            } else {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            let mean = sum(row) / h as f32;
            for v in row.iter_mut() {
                *v -= mean;
            }
            let variance = sum_of_squares(row) / h as f32;
            let inv = 1.0 / (variance + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&norm.weight).zip(&norm.bias) {
                *v = *v * inv * w + b;
            }
        }
    }
}

/// Rows of [`bias_gelu`].
struct GeluRows<'a> {
    rows: &'a mut [f32],
    bias: &'a [f32],
}

impl pulp::WithSimd for GeluRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for row in self.rows.chunks_exact_mut(self.bias.len()) {
            for (x, b) in row.iter_mut().zip(self.bias) {
                let v = *x + b;
                *x = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
    }
}

/// One head's `s × s` scores of a sequence of `len` tokens: each query row's softmax over its
/// `len` keys ([`softmax_prefix`]); rows of padding queries become 0.
struct SoftmaxRows<'a> {
    scores: &'a mut [f32],
    s: usize,
    len: usize,
}

impl pulp::WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (i, row) in self.scores.chunks_exact_mut(self.s).enumerate() {
            if i < self.len {
                softmax_prefix(row, self.len);
            } else {
                row.fill(0.0);
            }
        }
    }
}

/// Softmax of `row[..len]` in place; `row[len..]` (padding keys) becomes 0.
#[inline(always)]
fn softmax_prefix(row: &mut [f32], len: usize) {
    let (live, padding) = row.split_at_mut(len);
    padding.fill(0.0);
    let mut maxes = [f32::NEG_INFINITY; 8];
    let chunks = live.chunks_exact(8);
    let mut max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for chunk in chunks {
        for (m, &v) in maxes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    for m in maxes {
        max = if m > max { m } else { max };
    }
    for v in live.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(live);
    for v in live.iter_mut() {
        *v *= inv;
    }
}

/// A sum with eight running totals, so that it vectorises.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut totals = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (t, x) in totals.iter_mut().zip(chunk) {
            *t += x;
        }
    }
    totals.iter().sum::<f32>() + rest
}

/// A sum of squares with eight running totals, so that it vectorises.
#[inline(always)]
fn sum_of_squares(xs: &[f32]) -> f32 {
    let mut totals = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    for chunk in chunks {
        for (t, x) in totals.iter_mut().zip(chunk) {
            *t += x * x;
        }
    }
    totals.iter().sum::<f32>() + rest
}

/// `erf(x)` by the rational approximation of Eigen's `generic_fast_erf_float` (|error| < 5e-7 in
/// f32): branch-free, so a loop of it vectorises, where `libm`'s `erff` is a call per value.
#[inline(always)]
fn erf(x: f32) -> f32 {
    // Odd numerator and even denominator in x², highest power first.
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329_2e-3, -1.426_473_9e-2];
    // Beyond ±4, erf is ±1 in f32.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0, |p, &c| p * x2 + c);
    let q = Q.iter().fold(0.0, |q, &c| q * x2 + c);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::{erf, softmax_prefix};

    /// `erf` by its Taylor series, in f64 (exact enough for |x| ≤ 4).
    fn erf64(x: f64) -> f64 {
        let (mut term, mut total, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            total += term / (2.0 * n + 1.0);
        }
        total * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_5e_7() {
        // The series in f64 is exact enough up to 3.5, where erf is already 1 − 7.4e-7.
        let worst = (-3500..=3500)
            .map(|i| i as f64 / 1000.0)
            .map(|x| ((erf(x as f32) as f64) - erf64(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "{worst}");
        for x in [3.5f32, 4.0, 5.0, 9.0, f32::MAX] {
            assert!((erf(x) - 1.0).abs() < 1e-6 && (erf(-x) + 1.0).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn softmax_ignores_and_zeroes_the_padding() {
        let mut row = [1.0, 2.0, 3.0, 100.0];
        softmax_prefix(&mut row, 3);
        let total: f32 = row[..3].iter().sum();
        assert!((total - 1.0).abs() < 1e-6 && row[3] == 0.0 && row[2] > row[1], "{row:?}");
    }
}
