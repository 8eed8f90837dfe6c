//! The forward pass of llama-family transformers (Llama, SmolLM, Mistral-style, Qwen2) over GGUF
//! weights, written for one sequence on the CPU.
//!
//! It follows candle-transformers' `quantized_llama` (MIT/Apache-2.0) in its maths and tensor
//! names, and differs where that model spends its time on small models:
//! - the KV cache is allocated once per answer and written in place, instead of concatenating the
//!   whole cache again for every token in every layer;
//! - grouped-query attention multiplies each KV head with its group of query heads at once
//!   (queries reshaped to `(kv_heads, group × seq, head_dim)`), instead of copying the keys and
//!   values once per query head;
//! - long prompts go through the weight matrices as dense f32 (see [`Linear`]).

use crate::kernels::{QuantMatrix, attention};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use std::collections::HashMap;
use std::io::{Read, Seek};

/// Rows at or above which a matrix product dequantises the weights and multiplies in f32. A
/// quantised product redoes the integer dot products for every row; a dense one uses a blocked
/// f32 kernel whose cost per row is far lower once the dequantisation (a few hundred µs per
/// matrix) is spread over enough rows.
const DENSE_ROWS: usize = 16;

/// A prompt goes through the model in chunks of this many positions, aligned to multiples of it.
/// A chunk's keys and values then depend only on the tokens up to its end, not on how the prompt
/// was split into calls, so the prompt cache can reuse whole chunks and an answer comes out
/// exactly as it would cold (see [`Transformer::resume`]). Each chunk pays one dequantisation of
/// the weights (see [`DENSE_ROWS`]): smaller chunks reuse more and prefill slower.
pub const PREFILL_CHUNK: usize = 256;

/// A weight matrix (and bias, for Qwen2's attention) applied as `x · Wᵀ + b`.
struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

enum Weight {
    /// Q4_1 and Q8_0, multiplied by our kernels ([`crate::kernels`]).
    Ours(QuantMatrix),
    /// Any other type, multiplied by candle.
    Candle(QMatMul),
}

impl Linear {
    fn new(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let weight = match QuantMatrix::from_qtensor(&weight)? {
            Some(ours) => Weight::Ours(ours),
            None => Weight::Candle(QMatMul::from_qtensor(weight)?),
        };
        Ok(Self { weight, bias })
    }

    /// `x · Wᵀ + b`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, &mut None)
    }

    /// `x · Wᵀ + b` for each of `xs`. Inputs of [`DENSE_ROWS`] rows or more multiply in dense f32,
    /// with the weights dequantised once for all of them; each input's result is what it would be
    /// alone.
    fn forward_each(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut dense = None;
        xs.iter().map(|x| self.apply(x, &mut dense)).collect()
    }

    /// `x · Wᵀ + b`, the dense weights taken from (or, the first time, put in) `dense`.
    fn apply(&self, x: &Tensor, dense: &mut Option<Tensor>) -> Result<Tensor> {
        let rows = x.dim(0)?;
        let y = match &self.weight {
            Weight::Candle(QMatMul::QTensor(_)) | Weight::Ours(_) if rows >= DENSE_ROWS => {
                let weights = match dense {
                    Some(weights) => weights,
                    None => dense.insert(self.dense()?),
                };
                x.matmul(weights)?
            }
            Weight::Candle(weight) => weight.forward(x)?,
            Weight::Ours(w) => {
                let y = w.matmul(&x.flatten_all()?.to_vec1::<f32>()?, rows)?;
                Tensor::from_vec(y, (rows, w.dims().0), &Device::Cpu)?
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// `Wᵀ` as dense f32.
    fn dense(&self) -> Result<Tensor> {
        match &self.weight {
            Weight::Candle(QMatMul::QTensor(q)) => q.dequantize(&Device::Cpu)?.t(),
            Weight::Candle(_) => candle_core::bail!("no dense form of these weights"),
            Weight::Ours(w) => Tensor::from_vec(w.dequantize(), w.dims(), &Device::Cpu)?.t(),
        }
    }
}

/// Projections that read the same input (attention's q, k and v; the FFN's gate and up).
///
/// When their weights are of one of our kernels' types (Q4_1, Q8_0, or re-quantised to Q8_0),
/// they are stacked into one matrix at load: one product per layer instead of three (or two)
/// means the input is quantised once and the threads meet at one barrier, not three — about a
/// tenth of a generated token's time on two cores. Those blocks never span rows, so the stacked
/// matrix holds exactly the values the separate ones would. Other weight types keep separate
/// matrices.
enum Projections {
    Stacked { linear: Linear, widths: Vec<usize> },
    Separate(Vec<Linear>),
}

impl Projections {
    /// The projections of each of `xs`: `out[input][projection]`.
    fn forward_each(&self, xs: &[Tensor]) -> Result<Vec<Vec<Tensor>>> {
        match self {
            Projections::Separate(linears) => {
                let per_linear = linears.iter().map(|l| l.forward_each(xs)).collect::<Result<Vec<_>>>()?;
                Ok((0..xs.len()).map(|i| per_linear.iter().map(|ys| ys[i].clone()).collect()).collect())
            }
            Projections::Stacked { linear, widths } => linear
                .forward_each(xs)?
                .into_iter()
                .map(|y| {
                    let mut offset = 0;
                    widths
                        .iter()
                        .map(|&width| {
                            let part = y.narrow(1, offset, width)?.contiguous();
                            offset += width;
                            part
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// The token-embedding table, kept in its GGUF blocks where our kernels read the format: a
/// looked-up row is dequantised when it is needed (SmolLM2's table is 113 MB as f32, 30 MB as
/// its Q8_0 blocks).
enum Embeddings {
    /// The output matrix's rows (tied embeddings, SmolLM2).
    Tied,
    /// A quantised matrix of its own.
    Quant(QuantMatrix),
    /// Dense f32, for types our kernels do not read.
    Dense(Tensor),
}

struct Layer {
    attn_norm: Tensor,
    /// q, k, v.
    qkv: Projections,
    wo: Linear,
    ffn_norm: Tensor,
    /// gate, up.
    gate_up: Projections,
    down: Linear,
    /// `(kv_heads, capacity, head_dim)`, written in place.
    k_cache: Tensor,
    v_cache: Tensor,
}

/// Shapes and constants from the GGUF metadata.
#[derive(Debug, Clone, Copy)]
struct Hyper {
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    rms_eps: f32,
    /// Non-interleaved ("neox") rotary embeddings, as Qwen2 uses; llama GGUFs are interleaved.
    rope_neox: bool,
}

/// A loaded transformer with its KV cache.
pub struct Transformer {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    hyper: Hyper,
    context_length: usize,
    /// Positions the KV cache holds room for.
    capacity: usize,
    /// The tokens whose keys and values the cache holds, at positions `0..cached.len()`.
    cached: Vec<u32>,
    /// How many leading positions of the cache were computed as whole aligned prefill chunks:
    /// the only ones a later prompt may reuse (a generated token's single-row pass rounds
    /// differently from the same position inside a chunk).
    reusable: usize,
    masks: HashMap<(usize, usize), Tensor>,
}

impl Transformer {
    /// Builds the model from a GGUF whose architecture's metadata keys start with `prefix`
    /// (`llama`, `qwen2`).
    pub fn from_gguf<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        prefix: &str,
        context_length: usize,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let md = |key: &str| {
            content
                .metadata
                .get(&format!("{prefix}.{key}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("no `{prefix}.{key}` in the metadata")))
        };
        let n_head = md("attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("attention.head_count_kv")?.to_u32()? as usize;
        let n_layer = md("block_count")?.to_u32()? as usize;
        let dim = md("embedding_length")?.to_u32()? as usize;
        let rms_eps = md("attention.layer_norm_rms_epsilon")?.to_f32()?;
        let head_dim = dim / n_head;
        let rope_dim = md("rope.dimension_count").and_then(|v| v.to_u32()).map_or(head_dim, |v| v as usize);
        let freq_base = md("rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0);
        if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) || rope_dim != head_dim {
            candle_core::bail!(
                "unsupported attention shape: {n_head} heads, {n_kv_head} KV heads, rope over {rope_dim} of {head_dim}"
            );
        }
        // Weight types without a fast CPU kernel (ours or candle's) are re-quantised to Q8_0 as
        // they are read.
        let tensor = |reader: &mut R, name: &str| {
            let t = content.tensor(reader, name, &device)?;
            if crate::weights::needs_requantising(t.dtype()) {
                QTensor::quantize(&t.dequantize(&device)?, GgmlDType::Q8_0)
            } else {
                Ok(t)
            }
        };
        let optional = |reader: &mut R, name: &str| {
            if content.tensor_infos.contains_key(name) { tensor(reader, name).map(Some) } else { Ok(None) }
        };
        let dense = |t: QTensor| t.dequantize(&device);

        let embeddings_q = tensor(reader, "token_embd.weight")?;
        let output_q = optional(reader, "output.weight")?;
        let embeddings = if !QuantMatrix::reads(embeddings_q.dtype()) {
            Embeddings::Dense(embeddings_q.dequantize(&device)?)
        } else if output_q.is_none() {
            Embeddings::Tied // SmolLM2: the output matrix is the table
        } else {
            match QuantMatrix::from_qtensor(&embeddings_q)? {
                Some(ours) => Embeddings::Quant(ours),
                None => Embeddings::Dense(embeddings_q.dequantize(&device)?),
            }
        };
        let output = output_q.unwrap_or(embeddings_q);
        let norm = dense(tensor(reader, "output_norm.weight")?)?;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            let linear = |reader: &mut R, name: &str| -> Result<Linear> {
                let weight = tensor(reader, &format!("{p}.{name}.weight"))?;
                let bias = optional(reader, &format!("{p}.{name}.bias"))?.map(dense).transpose()?;
                Linear::new(weight, bias)
            };
            let projections = |reader: &mut R, names: &[&str]| -> Result<Projections> {
                let mut weights = Vec::with_capacity(names.len());
                let mut biases = Vec::with_capacity(names.len());
                for name in names {
                    weights.push(tensor(reader, &format!("{p}.{name}.weight"))?);
                    biases.push(optional(reader, &format!("{p}.{name}.bias"))?.map(dense).transpose()?);
                }
                let widths = weights
                    .iter()
                    .map(|w| w.shape().dims2().map(|(rows, _)| rows))
                    .collect::<Result<Vec<_>>>()?;
                let Some(weight) = QuantMatrix::stack(&weights)? else {
                    return weights
                        .into_iter()
                        .zip(biases)
                        .map(|(weight, bias)| Linear::new(weight, bias))
                        .collect::<Result<_>>()
                        .map(Projections::Separate);
                };
                let bias = match biases.iter().all(Option::is_some) {
                    true => Some(Tensor::cat(&biases.into_iter().flatten().collect::<Vec<_>>(), 0)?),
                    false if biases.iter().all(Option::is_none) => None,
                    false => candle_core::bail!("{p}: some of {names:?} have a bias and some do not"),
                };
                Ok(Projections::Stacked { linear: Linear { weight: Weight::Ours(weight), bias }, widths })
            };
            let qkv = projections(reader, &["attn_q", "attn_k", "attn_v"])?;
            let gate_up = projections(reader, &["ffn_gate", "ffn_up"])?;
            let wo = linear(reader, "attn_output")?;
            let down = linear(reader, "ffn_down")?;
            let empty = Tensor::zeros((n_kv_head, 0, head_dim), DType::F32, &device)?;
            layers.push(Layer {
                attn_norm: dense(tensor(reader, &format!("{p}.attn_norm.weight"))?)?,
                ffn_norm: dense(tensor(reader, &format!("{p}.ffn_norm.weight"))?)?,
                qkv,
                wo,
                gate_up,
                down,
                k_cache: empty.clone(),
                v_cache: empty,
            });
        }
        let (cos, sin) = rope_tables(head_dim, freq_base, context_length, &device)?;
        let rope_neox = prefix == "qwen2";
        Ok(Self {
            embeddings,
            layers,
            norm,
            output: Linear::new(output, None)?,
            cos,
            sin,
            hyper: Hyper { n_head, n_kv_head, head_dim, rms_eps, rope_neox },
            context_length,
            capacity: 0,
            cached: Vec::new(),
            reusable: 0,
            masks: HashMap::new(),
        })
    }

    /// Starts a new sequence with room for `positions` tokens (prompt and answer), forgetting the
    /// previous one. The cache is allocated here, once, rather than grown token by token.
    pub fn start(&mut self, positions: usize) -> Result<()> {
        self.cached.clear();
        self.reusable = 0;
        self.make_room(positions, 0)
    }

    /// Starts a sequence for `prompt` with room for `positions` tokens, keeping the cached keys
    /// and values of the whole prefill chunks it shares with the previous sequence: the prompt
    /// cache. Returns how many prompt tokens are cached (a multiple of [`PREFILL_CHUNK`], short of
    /// the last token, whose logits pick the first new one); [`Self::prefill`] goes on from there.
    pub fn resume(&mut self, prompt: &[u32], positions: usize) -> Result<usize> {
        let shared = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let usable = shared.min(self.reusable).min(prompt.len().saturating_sub(1));
        let kept = usable - usable % PREFILL_CHUNK;
        self.cached.truncate(kept);
        self.reusable = kept;
        self.make_room(positions, kept)?;
        Ok(kept)
    }

    /// Runs the prompt `tokens` at `position` (a multiple of [`PREFILL_CHUNK`]: 0, or what
    /// [`Self::resume`] kept) in aligned chunks, and returns the logits of the last position.
    pub fn prefill(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        if !position.is_multiple_of(PREFILL_CHUNK) {
            candle_core::bail!("a prefill starts at a multiple of {PREFILL_CHUNK}, not at {position}");
        }
        let chunks: Vec<(&[u32], usize)> =
            tokens.chunks(PREFILL_CHUNK).zip((position..).step_by(PREFILL_CHUNK)).collect();
        let logits = self.run(&chunks)?;
        for (chunk, at) in chunks {
            if chunk.len() == PREFILL_CHUNK && self.reusable == at {
                self.reusable += PREFILL_CHUNK;
            }
        }
        Ok(logits)
    }

    /// Room for `positions` tokens, the first `kept` cached positions kept. The cache only grows
    /// (to at most the context window): a later, shorter sequence writes over the start of it.
    fn make_room(&mut self, positions: usize, kept: usize) -> Result<()> {
        let positions = positions.min(self.context_length);
        if positions <= self.capacity {
            return Ok(());
        }
        let Hyper { n_kv_head, head_dim, .. } = self.hyper;
        for layer in &mut self.layers {
            let k = Tensor::zeros((n_kv_head, positions, head_dim), DType::F32, &Device::Cpu)?;
            let v = Tensor::zeros((n_kv_head, positions, head_dim), DType::F32, &Device::Cpu)?;
            if kept > 0 {
                k.slice_set(&layer.k_cache.narrow(1, 0, kept)?.contiguous()?, 1, 0)?;
                v.slice_set(&layer.v_cache.narrow(1, 0, kept)?.contiguous()?, 1, 0)?;
            }
            layer.k_cache = k;
            layer.v_cache = v;
        }
        self.capacity = positions;
        Ok(())
    }

    /// The embeddings of `tokens`: `(tokens, dim)`.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let quantised = match &self.embeddings {
            Embeddings::Dense(table) => return table.index_select(&Tensor::new(tokens, &Device::Cpu)?, 0),
            Embeddings::Quant(table) => table,
            Embeddings::Tied => match &self.output.weight {
                Weight::Ours(table) => table,
                Weight::Candle(_) => {
                    candle_core::bail!("tied embeddings in a format our kernels do not read")
                }
            },
        };
        let dim = quantised.dims().1;
        Tensor::from_vec(quantised.rows(tokens)?, (tokens.len(), dim), &Device::Cpu)
    }

    /// Runs `tokens` at positions `position..position + tokens.len()`, extending the KV cache, and
    /// returns the logits of the last position.
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        self.run(&[(tokens, position)])
    }

    /// Runs consecutive chunks of tokens (each with its first position), extending the KV cache,
    /// and returns the logits of the last position. The chunks go through the model layer by
    /// layer, one after another within a layer: each weight matrix is dequantised once for all of
    /// them (see [`Linear::forward_each`]), and each chunk's numbers are those of a pass of its own.
    fn run(&mut self, chunks: &[(&[u32], usize)]) -> Result<Tensor> {
        let (Some(&(_, position)), Some(&(last_tokens, last_at))) = (chunks.first(), chunks.last()) else {
            candle_core::bail!("nothing to run");
        };
        let end = last_at + last_tokens.len();
        if last_tokens.is_empty() || end > self.capacity {
            candle_core::bail!(
                "positions {position}..{end} do not fit the {} the cache was started with",
                self.capacity
            );
        }
        if position > self.cached.len() {
            candle_core::bail!("position {position} is past the {} cached tokens", self.cached.len());
        }
        // Positions from here on are being rewritten: until this pass succeeds, nothing past
        // `position` is known to be in the cache.
        self.cached.truncate(position);
        self.reusable = self.reusable.min(position);
        let mut xs = chunks.iter().map(|(tokens, _)| self.embed(tokens)).collect::<Result<Vec<_>>>()?;
        let mut contexts = Vec::with_capacity(chunks.len());
        for &(tokens, at) in chunks {
            let seq = tokens.len();
            let mask = if seq > 1 { Some(self.mask(seq, at)?) } else { None };
            contexts.push(Positions {
                at,
                mask,
                cos: self.cos.narrow(0, at, seq)?,
                sin: self.sin.narrow(0, at, seq)?,
            });
        }
        let hyper = self.hyper;
        for layer in &mut self.layers {
            let hs = xs
                .iter()
                .map(|x| candle_nn::ops::rms_norm(x, &layer.attn_norm, hyper.rms_eps))
                .collect::<Result<Vec<_>>>()?;
            let qkvs = layer.qkv.forward_each(&hs)?;
            let attns = qkvs
                .into_iter()
                .zip(&contexts)
                .map(|(qkv, cx)| attention(layer, qkv, cx, hyper))
                .collect::<Result<Vec<_>>>()?;
            for (x, out) in xs.iter_mut().zip(layer.wo.forward_each(&attns)?) {
                *x = (&*x + out)?;
            }
            let hs = xs
                .iter()
                .map(|x| candle_nn::ops::rms_norm(x, &layer.ffn_norm, hyper.rms_eps))
                .collect::<Result<Vec<_>>>()?;
            let ffs = layer
                .gate_up
                .forward_each(&hs)?
                .into_iter()
                .map(|gate_up| {
                    let [gate, up] = <[Tensor; 2]>::try_from(gate_up).map_err(|_| {
                        candle_core::Error::Msg("gate/up projections: expected two outputs".into())
                    })?;
                    candle_nn::ops::silu(&gate)? * up
                })
                .collect::<Result<Vec<_>>>()?;
            for (x, out) in xs.iter_mut().zip(layer.down.forward_each(&ffs)?) {
                *x = (&*x + out)?;
            }
        }
        for (tokens, _) in chunks {
            self.cached.extend_from_slice(tokens);
        }
        let x = xs.pop().ok_or_else(|| candle_core::Error::Msg("nothing ran".into()))?;
        let last = x.narrow(0, last_tokens.len() - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, hyper.rms_eps)?;
        self.output.forward(&last)?.squeeze(0)
    }

    /// The additive causal mask for `seq` new rows at `position`, repeated for each query head of
    /// a KV group: `(group × seq, position + seq)`, `-inf` above the diagonal.
    fn mask(&mut self, seq: usize, position: usize) -> Result<Tensor> {
        let group = self.hyper.n_head / self.hyper.n_kv_head;
        if let Some(mask) = self.masks.get(&(seq, position)) {
            return Ok(mask.clone());
        }
        let width = position + seq;
        let row = |i: usize| (0..width).map(move |j| if j > position + i { f32::NEG_INFINITY } else { 0.0 });
        let values: Vec<f32> = (0..group).flat_map(|_| (0..seq).flat_map(row)).collect();
        let mask = Tensor::from_vec(values, (group * seq, width), &Device::Cpu)?;
        if self.masks.len() > 16 {
            self.masks.clear();
        }
        self.masks.insert((seq, position), mask.clone());
        Ok(mask)
    }
}

/// Where a chunk of rows sits: its first position, its causal mask (none for one row) and its
/// rotary tables.
struct Positions {
    at: usize,
    mask: Option<Tensor>,
    cos: Tensor,
    sin: Tensor,
}

/// Self-attention of one chunk's q, k and v projections (`(seq, …)` each) against the cache, which
/// it extends. Returns `(seq, n_head × head_dim)`, ready for the output projection.
fn attention(layer: &mut Layer, qkv: Vec<Tensor>, cx: &Positions, hyper: Hyper) -> Result<Tensor> {
    let Hyper { n_head, n_kv_head, head_dim, rope_neox, .. } = hyper;
    let (position, mask) = (cx.at, cx.mask.as_ref());
    let [q, k, v] = <[Tensor; 3]>::try_from(qkv)
        .map_err(|_| candle_core::Error::Msg("q/k/v projections: expected three outputs".into()))?;
    let seq = q.dim(0)?;
    let heads = |t: Tensor, n: usize| t.reshape((1, seq, n, head_dim))?.transpose(1, 2)?.contiguous();
    let rope = |t: Tensor| {
        if rope_neox {
            candle_nn::rotary_emb::rope(&t, &cx.cos, &cx.sin)
        } else {
            candle_nn::rotary_emb::rope_i(&t, &cx.cos, &cx.sin)
        }
    };
    let q = rope(heads(q, n_head)?)?.squeeze(0)?;
    let k = rope(heads(k, n_kv_head)?)?.squeeze(0)?;
    let v = heads(v, n_kv_head)?.squeeze(0)?;
    layer.k_cache.slice_set(&k, 1, position)?;
    layer.v_cache.slice_set(&v, 1, position)?;
    let len = position + seq;
    if seq == 1 {
        return decode_attention(layer, &q, len, hyper);
    }
    let keys = layer.k_cache.narrow(1, 0, len)?;
    let values = layer.v_cache.narrow(1, 0, len)?;

    // Query heads `g·group .. (g+1)·group` share KV head `g`: stack them as rows.
    let group = n_head / n_kv_head;
    let q = q.reshape((n_kv_head, group * seq, head_dim))?;
    let scores = (q.matmul(&keys.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    let weights = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = weights.matmul(&values)?; // (n_kv, group·seq, head_dim)
    out.reshape((n_head, seq, head_dim))?.transpose(0, 1)?.reshape((seq, n_head * head_dim))
}

/// Attention of one new token against the cache ([`crate::kernels::attention`]).
fn decode_attention(layer: &Layer, q: &Tensor, len: usize, hyper: Hyper) -> Result<Tensor> {
    let Hyper { n_head, n_kv_head, head_dim, .. } = hyper;
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let (k_storage, k_layout) = layer.k_cache.storage_and_layout();
    let (v_storage, v_layout) = layer.v_cache.storage_and_layout();
    let (
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(keys)),
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(values)),
    ) = (&*k_storage, &*v_storage)
    else {
        candle_core::bail!("the KV cache is not f32 on the CPU");
    };
    let cache = attention::Cache {
        keys: &keys[k_layout.start_offset()..],
        values: &values[v_layout.start_offset()..],
        capacity: layer.k_cache.dim(1)?,
        head_dim,
    };
    let out = attention::decode(&q, &cache, len, n_head / n_kv_head);
    Tensor::from_vec(out, (1, n_head * head_dim), &Device::Cpu)
}

/// Cosine and sine tables of the rotary embedding for every position: `(positions, head_dim / 2)`.
fn rope_tables(
    head_dim: usize,
    freq_base: f32,
    positions: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> =
        (0..head_dim).step_by(2).map(|i| 1.0 / freq_base.powf(i as f32 / head_dim as f32)).collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
    let positions =
        Tensor::arange(0, positions as u32, device)?.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}
