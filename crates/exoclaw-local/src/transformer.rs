//! The forward pass of llama-family transformers (Llama, SmolLM, Mistral-style, Qwen2/3, Gemma 3)
//! over GGUF weights, written for one sequence on the CPU.
//!
//! It follows candle-transformers' `quantized_llama` (MIT/Apache-2.0) in its maths and tensor
//! names, with each family's differences ([`Family`]: per-head query/key norms, post-norms, GELU,
//! scaled embeddings, sliding-window layers) as llama.cpp's `src/llama-model.cpp` builds them, and
//! differs where that model spends its time on small models:
//! - the KV cache is allocated once per answer and written in place, instead of concatenating the
//!   whole cache again for every token in every layer;
//! - grouped-query attention multiplies each KV head with its group of query heads at once
//!   (queries reshaped to `(kv_heads, group × seq, head_dim)`), instead of copying the keys and
//!   values once per query head;
//! - a prompt's whole chunks of [`PREFILL_CHUNK`] positions go through the weight matrices as
//!   dense f32; every other position — a prompt's last, partial chunk and each generated token —
//!   is computed row by row as a generated token is, with our integer kernels. Which way a
//!   position is computed depends only on where it lies and on the length of the prompt it came
//!   in, so the prompt cache knows which cached positions a cold pass would compute the same way
//!   (see [`Transformer::resume`]).

use crate::kernels::{QuantMatrix, attention};
use crate::weights::{Activation, Family};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use std::collections::HashMap;
use std::io::{Read, Seek};

/// A prompt's whole chunks of this many positions, aligned to multiples of it, go through the
/// model as dense f32 products: a blocked f32 kernel multiplies many rows far faster than the
/// integer dot products redone for every row, once the weights' dequantisation (a few hundred µs
/// per matrix, shared by the chunks of one call) is spread over enough rows. A chunk's keys and
/// values depend only on the tokens up to its end. The positions after a prompt's last whole
/// chunk, and generated tokens, go row by row through the integer kernels, each row exactly as it
/// would be alone. So a position's numbers depend only on the tokens up to it and on whether it
/// lies in a whole chunk of its prompt, which lets the prompt cache reuse any prefix computed the
/// way a cold pass would compute it (see [`Transformer::resume`]).
pub const PREFILL_CHUNK: usize = 256;

/// The positions of a prompt of `len` tokens that lie in its whole chunks.
fn dense_end(len: usize) -> usize {
    len - len % PREFILL_CHUNK
}

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

    /// `x · Wᵀ + b`, each row of `x` as it would be alone.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        let y = match &self.weight {
            // Our kernels compute each row with the same integer products whatever the others.
            Weight::Ours(w) => {
                let y = w.matmul(&x.flatten_all()?.to_vec1::<f32>()?, rows)?;
                Tensor::from_vec(y, (rows, w.dims().0), &Device::Cpu)?
            }
            // Candle's products may round a row differently beside other rows: one at a time,
            // as a generated token's.
            Weight::Candle(weight) if rows > 1 => {
                let ys =
                    (0..rows).map(|r| weight.forward(&x.narrow(0, r, 1)?)).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&ys, 0)?
            }
            Weight::Candle(weight) => weight.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// `x · Wᵀ + b` for each of `xs` (a prompt's whole chunks), in dense f32, the weights
    /// dequantised once for all of them; each input's result is what it would be alone.
    fn forward_each(&self, xs: &[Tensor]) -> Result<Vec<Tensor>> {
        let weights = self.dense()?;
        xs.iter()
            .map(|x| {
                let y = crate::dense::matmul(x, &weights)?;
                match &self.bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            })
            .collect()
    }

    /// `Wᵀ` as dense f32.
    fn dense(&self) -> Result<Tensor> {
        match &self.weight {
            Weight::Candle(QMatMul::QTensor(q)) => q.dequantize(&Device::Cpu)?.t(),
            Weight::Candle(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => w.to_dtype(DType::F32)?.t(),
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
    /// The projections of `x`, each row as it would be alone, in order.
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Projections::Separate(linears) => linears.iter().map(|l| l.forward(x)).collect(),
            Projections::Stacked { linear, widths } => split(&linear.forward(x)?, widths),
        }
    }

    /// The projections of each of `xs` (whole chunks, in dense f32): `out[input][projection]`.
    fn forward_each(&self, xs: &[Tensor]) -> Result<Vec<Vec<Tensor>>> {
        match self {
            Projections::Separate(linears) => {
                let per_linear = linears.iter().map(|l| l.forward_each(xs)).collect::<Result<Vec<_>>>()?;
                Ok((0..xs.len()).map(|i| per_linear.iter().map(|ys| ys[i].clone()).collect()).collect())
            }
            Projections::Stacked { linear, widths } => {
                linear.forward_each(xs)?.iter().map(|y| split(y, widths)).collect()
            }
        }
    }
}

/// The stacked projections' outputs `y`, split into their `widths` of columns.
fn split(y: &Tensor, widths: &[usize]) -> Result<Vec<Tensor>> {
    let mut offset = 0;
    widths
        .iter()
        .map(|&width| {
            let part = y.narrow(1, offset, width)?.contiguous();
            offset += width;
            part
        })
        .collect()
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
    /// RMS norms over each query and key head, before the rotary embedding (Qwen3, Gemma 3).
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    wo: Linear,
    /// RMS norm of the attention's output before it joins the residual (Gemma 3).
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    /// gate, up.
    gate_up: Projections,
    down: Linear,
    /// RMS norm of the FFN's output before it joins the residual (Gemma 3).
    post_ffn_norm: Option<Tensor>,
    /// How many past positions this layer's attention sees (itself included), if it is a
    /// sliding-window layer.
    window: Option<usize>,
    /// Which of [`Transformer::ropes`] this layer's rotary embedding uses.
    rope: usize,
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
    /// Non-interleaved ("neox") rotary embeddings, as Qwen and Gemma use; llama GGUFs are
    /// interleaved.
    rope_neox: bool,
    /// What the input embeddings are multiplied by (`√dim` for Gemma, else 1).
    embedding_scale: f64,
    activation: Activation,
}

/// A loaded transformer with its KV cache.
pub struct Transformer {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    /// Cosine and sine tables of the rotary embeddings: one per rotary base the layers use.
    ropes: Vec<(Tensor, Tensor)>,
    hyper: Hyper,
    context_length: usize,
    /// Positions the KV cache holds room for.
    capacity: usize,
    /// The tokens whose keys and values the cache holds, at positions `0..cached.len()`.
    cached: Vec<u32>,
    /// How many leading positions of the cache were computed as whole chunks of their prompt (in
    /// dense f32); those after them were computed row by row.
    dense_end: usize,
    /// Causal masks by `(rows, position, window)`.
    masks: HashMap<(usize, usize, Option<usize>), Tensor>,
}

impl Transformer {
    /// Builds the model of `family` from a GGUF.
    pub fn from_gguf<R: Read + Seek>(
        content: &Content,
        reader: &mut R,
        family: Family,
        context_length: usize,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let prefix = family.key_prefix;
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
        // Heads may be wider than `dim / n_head` (Gemma 3: 4 heads of 256 over 640).
        let head_dim =
            md("attention.key_length").and_then(|v| v.to_u32()).map_or(dim / n_head, |v| v as usize);
        let value_dim =
            md("attention.value_length").and_then(|v| v.to_u32()).map_or(head_dim, |v| v as usize);
        let rope_dim = md("rope.dimension_count").and_then(|v| v.to_u32()).map_or(head_dim, |v| v as usize);
        let freq_base = md("rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0);
        if n_kv_head == 0
            || !n_head.is_multiple_of(n_kv_head)
            || rope_dim != head_dim
            || value_dim != head_dim
        {
            candle_core::bail!(
                "unsupported attention shape: {n_head} heads, {n_kv_head} KV heads, keys of {head_dim}, values of {value_dim}, rope over {rope_dim}"
            );
        }
        if let Ok(kind) = md("rope.scaling.type").and_then(|v| v.to_string().cloned())
            && kind != "none"
        {
            candle_core::bail!("rope scaling `{kind}` is not supported");
        }
        let window = match family.sliding {
            Some(_) => Some(md("attention.sliding_window")?.to_u32()? as usize),
            None => None,
        };
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
        let optional_dense = |reader: &mut R, name: &str| optional(reader, name)?.map(dense).transpose();

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
            // Gemma 3: the last layer of each period is global, the others local.
            let local = family.sliding.is_some_and(|s| !(i + 1).is_multiple_of(s.period));
            layers.push(Layer {
                attn_norm: dense(tensor(reader, &format!("{p}.attn_norm.weight"))?)?,
                ffn_norm: dense(tensor(reader, &format!("{p}.ffn_norm.weight"))?)?,
                q_norm: optional_dense(reader, &format!("{p}.attn_q_norm.weight"))?,
                k_norm: optional_dense(reader, &format!("{p}.attn_k_norm.weight"))?,
                post_attn_norm: optional_dense(reader, &format!("{p}.post_attention_norm.weight"))?,
                post_ffn_norm: optional_dense(reader, &format!("{p}.post_ffw_norm.weight"))?,
                qkv,
                wo,
                gate_up,
                down,
                window: if local { window } else { None },
                rope: usize::from(local),
                k_cache: empty.clone(),
                v_cache: empty,
            });
        }
        // Llama 3.1+: per-frequency divisors of the rotary angles.
        let freq_factors =
            optional_dense(reader, "rope_freqs.weight")?.map(|t| t.to_vec1::<f32>()).transpose()?;
        let mut ropes =
            vec![rope_tables(head_dim, freq_base, freq_factors.as_deref(), context_length, &device)?];
        if let Some(sliding) = family.sliding {
            ropes.push(rope_tables(head_dim, sliding.local_rope_base, None, context_length, &device)?);
        }
        let embedding_scale = if family.scale_embeddings { (dim as f64).sqrt() } else { 1.0 };
        Ok(Self {
            embeddings,
            layers,
            norm,
            output: Linear::new(output, None)?,
            ropes,
            hyper: Hyper {
                n_head,
                n_kv_head,
                head_dim,
                rms_eps,
                rope_neox: family.rope_neox,
                embedding_scale,
                activation: family.activation,
            },
            context_length,
            capacity: 0,
            cached: Vec::new(),
            dense_end: 0,
            masks: HashMap::new(),
        })
    }

    /// Starts a new sequence with room for `positions` tokens (prompt and answer), forgetting the
    /// previous one. The cache is allocated here, once, rather than grown token by token.
    pub fn start(&mut self, positions: usize) -> Result<()> {
        self.cached.clear();
        self.dense_end = 0;
        self.make_room(positions, 0)
    }

    /// Starts a sequence for `prompt` with room for `positions` tokens, keeping the cached keys
    /// and values of the previous sequence (prompt and answer) that a cold pass over `prompt`
    /// would compute the same way: the prompt cache. That is the prefix they share, as far as
    /// the positions computed in whole chunks are the same for both (see [`PREFILL_CHUNK`]): when
    /// they are — the usual next turn of a conversation, which stays in the chunk its previous
    /// prompt ended in — the previous answer is reused too. Returns how many prompt tokens are
    /// cached (short of the last, whose logits pick the first new token); [`Self::prefill`] goes
    /// on from there.
    pub fn resume(&mut self, prompt: &[u32], positions: usize) -> Result<usize> {
        let shared = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        let dense = dense_end(prompt.len());
        let mut kept = shared.min(prompt.len().saturating_sub(1));
        if self.dense_end != dense {
            // Positions one pass computed in a whole chunk and the other row by row differ.
            kept = kept.min(self.dense_end.min(dense));
        }
        if kept < dense {
            // The prompt's whole chunks are computed whole: from the start of one.
            kept -= kept % PREFILL_CHUNK;
        }
        self.cached.truncate(kept);
        self.dense_end = self.dense_end.min(kept);
        self.make_room(positions, kept)?;
        Ok(kept)
    }

    /// Runs the rest of a prompt, `tokens` at `position` (0, or what [`Self::resume`] kept), and
    /// returns the logits of its last position: its whole chunks in dense f32, then the positions
    /// after them row by row.
    pub fn prefill(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        let end = position + tokens.len();
        let dense = dense_end(end);
        let in_chunks = dense.saturating_sub(position).min(tokens.len());
        if in_chunks > 0 && !position.is_multiple_of(PREFILL_CHUNK) {
            candle_core::bail!(
                "a prompt's whole chunks start at a multiple of {PREFILL_CHUNK}, not at {position}"
            );
        }
        let (whole, rows) = tokens.split_at(in_chunks);
        let mut last = None;
        if !whole.is_empty() {
            let chunks: Vec<(&[u32], usize)> =
                whole.chunks(PREFILL_CHUNK).zip((position..).step_by(PREFILL_CHUNK)).collect();
            last = Some(self.run_chunks(&chunks)?);
            self.dense_end = dense;
        }
        for (chunk, at) in rows.chunks(PREFILL_CHUNK).zip((position + in_chunks..).step_by(PREFILL_CHUNK)) {
            last = Some(self.run_rows(chunk, at)?);
        }
        let last = last.ok_or_else(|| candle_core::Error::Msg("nothing to run".into()))?;
        self.logits(&last)
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

    /// The model's input for `tokens`: their embeddings, scaled where the family scales them.
    fn input(&self, tokens: &[u32]) -> Result<Tensor> {
        let x = self.embed(tokens)?;
        if self.hyper.embedding_scale == 1.0 { Ok(x) } else { x * self.hyper.embedding_scale }
    }

    /// Runs generated `tokens` at positions `position..`, extending the KV cache, and returns the
    /// logits of the last one.
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        let last = self.run_rows(tokens, position)?;
        self.logits(&last)
    }

    /// The logits of a final hidden state `(1, dim)`.
    fn logits(&self, last: &Tensor) -> Result<Tensor> {
        let last = candle_nn::ops::rms_norm(last, &self.norm, self.hyper.rms_eps)?;
        self.output.forward(&last)?.squeeze(0)
    }

    /// Runs consecutive whole chunks of a prompt (each with its first position) in dense f32,
    /// extending the KV cache, and returns the hidden state of the last position, `(1, dim)`.
    /// The chunks go through the model layer by layer, one after another within a layer: each
    /// weight matrix is dequantised once for all of them (see [`Linear::forward_each`]), and each
    /// chunk's numbers are those of a pass of its own.
    fn run_chunks(&mut self, chunks: &[(&[u32], usize)]) -> Result<Tensor> {
        let (Some(&(_, position)), Some(&(last_tokens @ [_, ..], last_at))) = (chunks.first(), chunks.last())
        else {
            candle_core::bail!("nothing to run");
        };
        self.rewrite(position, last_at + last_tokens.len())?;
        let mut xs = chunks.iter().map(|(tokens, _)| self.input(tokens)).collect::<Result<Vec<_>>>()?;
        // The windows the layers attend through (`None`: the whole context).
        let mut windows: Vec<Option<usize>> = self.layers.iter().map(|l| l.window).collect();
        windows.sort_unstable();
        windows.dedup();
        let mut contexts = Vec::with_capacity(chunks.len());
        for &(tokens, at) in chunks {
            let seq = tokens.len();
            let mut masks = Vec::with_capacity(windows.len());
            for &window in &windows {
                masks.push((window, if seq > 1 { Some(self.mask(seq, at, window)?) } else { None }));
            }
            let ropes = self
                .ropes
                .iter()
                .map(|(cos, sin)| Ok((cos.narrow(0, at, seq)?, sin.narrow(0, at, seq)?)))
                .collect::<Result<Vec<_>>>()?;
            contexts.push(Positions { at, masks, ropes });
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
                .map(|(qkv, cx)| chunk_attention(layer, qkv, cx, hyper))
                .collect::<Result<Vec<_>>>()?;
            for (x, out) in xs.iter_mut().zip(layer.wo.forward_each(&attns)?) {
                *x = (&*x + post_norm(out, layer.post_attn_norm.as_ref(), hyper.rms_eps)?)?;
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
                    match hyper.activation {
                        Activation::Silu => candle_nn::ops::silu(&gate)? * up,
                        Activation::GeluTanh => crate::fast_math::geglu(&gate, &up),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            for (x, out) in xs.iter_mut().zip(layer.down.forward_each(&ffs)?) {
                *x = (&*x + post_norm(out, layer.post_ffn_norm.as_ref(), hyper.rms_eps)?)?;
            }
        }
        for (tokens, _) in chunks {
            self.cached.extend_from_slice(tokens);
        }
        let x = xs.pop().ok_or_else(|| candle_core::Error::Msg("nothing ran".into()))?;
        x.narrow(0, last_tokens.len() - 1, 1)
    }

    /// Readies the cache for a pass over positions `position..end`: they must fit, and follow
    /// what is cached. Positions from `position` on are being rewritten: until the pass succeeds,
    /// nothing past it is known to be in the cache.
    fn rewrite(&mut self, position: usize, end: usize) -> Result<()> {
        if end > self.capacity {
            candle_core::bail!(
                "positions {position}..{end} do not fit the {} the cache was started with",
                self.capacity
            );
        }
        if position > self.cached.len() {
            candle_core::bail!("position {position} is past the {} cached tokens", self.cached.len());
        }
        self.cached.truncate(position);
        self.dense_end = self.dense_end.min(position);
        Ok(())
    }

    /// Runs `tokens` at positions `position..` row by row — each row computed as it would be
    /// alone, through the integer kernels — extending the KV cache, and returns the hidden state
    /// of the last one, `(1, dim)`.
    fn run_rows(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        let seq = tokens.len();
        if seq == 0 {
            candle_core::bail!("nothing to run");
        }
        self.rewrite(position, position + seq)?;
        let mut x = self.input(tokens)?;
        let ropes = self
            .ropes
            .iter()
            .map(|(cos, sin)| Ok((cos.narrow(0, position, seq)?, sin.narrow(0, position, seq)?)))
            .collect::<Result<Vec<_>>>()?;
        let cx = Positions { at: position, masks: Vec::new(), ropes };
        let hyper = self.hyper;
        for layer in &mut self.layers {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, hyper.rms_eps)?;
            let qkv = layer.qkv.forward(&h)?;
            let attn = row_attention(layer, qkv, &cx, hyper)?;
            let out = layer.wo.forward(&attn)?;
            x = (&x + post_norm(out, layer.post_attn_norm.as_ref(), hyper.rms_eps)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, hyper.rms_eps)?;
            let [gate, up] = <[Tensor; 2]>::try_from(layer.gate_up.forward(&h)?)
                .map_err(|_| candle_core::Error::Msg("gate/up projections: expected two outputs".into()))?;
            let ff = match hyper.activation {
                Activation::Silu => (candle_nn::ops::silu(&gate)? * up)?,
                Activation::GeluTanh => crate::fast_math::geglu(&gate, &up)?,
            };
            let out = layer.down.forward(&ff)?;
            x = (&x + post_norm(out, layer.post_ffn_norm.as_ref(), hyper.rms_eps)?)?;
        }
        self.cached.extend_from_slice(tokens);
        x.narrow(0, seq - 1, 1)
    }

    /// The additive causal mask for `seq` new rows at `position`, repeated for each query head of
    /// a KV group: `(group × seq, position + seq)`, `-inf` above the diagonal and, for a layer
    /// with a sliding `window`, on the positions that lie `window` or more before the row's.
    fn mask(&mut self, seq: usize, position: usize, window: Option<usize>) -> Result<Tensor> {
        let group = self.hyper.n_head / self.hyper.n_kv_head;
        if let Some(mask) = self.masks.get(&(seq, position, window)) {
            return Ok(mask.clone());
        }
        let width = position + seq;
        let hidden = move |i: usize, j: usize| j > i || window.is_some_and(|w| i - j >= w);
        let row = move |i: usize| {
            (0..width).map(move |j| if hidden(position + i, j) { f32::NEG_INFINITY } else { 0.0 })
        };
        let values: Vec<f32> = (0..group).flat_map(|_| (0..seq).flat_map(row)).collect();
        let mask = Tensor::from_vec(values, (group * seq, width), &Device::Cpu)?;
        if self.masks.len() > 16 {
            self.masks.clear();
        }
        self.masks.insert((seq, position, window), mask.clone());
        Ok(mask)
    }
}

/// Where a chunk of rows sits: its first position, its causal mask for each window the layers
/// use (none for one row) and its rows of each rotary table.
struct Positions {
    at: usize,
    masks: Vec<(Option<usize>, Option<Tensor>)>,
    ropes: Vec<(Tensor, Tensor)>,
}

/// `x`, RMS-normed by `norm` when the layer has one there.
fn post_norm(x: Tensor, norm: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    match norm {
        Some(norm) => candle_nn::ops::rms_norm(&x, norm, eps),
        None => Ok(x),
    }
}

/// One chunk's queries, keys and values from its q, k and v projections (`(seq, …)` each): each
/// head RMS-normed where the layer norms heads, the rotary embedding applied. The keys and values
/// are written into the cache; returns the queries, `(n_head, seq, head_dim)`.
fn queries(layer: &mut Layer, qkv: Vec<Tensor>, cx: &Positions, hyper: Hyper) -> Result<Tensor> {
    let Hyper { n_head, n_kv_head, head_dim, rope_neox, rms_eps, .. } = hyper;
    let (cos, sin) = cx
        .ropes
        .get(layer.rope)
        .ok_or_else(|| candle_core::Error::Msg("a layer names a rotary table that is not there".into()))?;
    let [q, k, v] = <[Tensor; 3]>::try_from(qkv)
        .map_err(|_| candle_core::Error::Msg("q/k/v projections: expected three outputs".into()))?;
    let seq = q.dim(0)?;
    // `(1, heads, seq, head_dim)`, each head RMS-normed first where the layer norms heads.
    let heads = |t: Tensor, n: usize, norm: Option<&Tensor>| {
        let t = t.reshape((1, seq, n, head_dim))?;
        let t = match norm {
            Some(norm) => candle_nn::ops::rms_norm(&t.contiguous()?, norm, rms_eps)?,
            None => t,
        };
        t.transpose(1, 2)?.contiguous()
    };
    let rope = |t: Tensor| {
        if rope_neox {
            candle_nn::rotary_emb::rope(&t, cos, sin)
        } else {
            candle_nn::rotary_emb::rope_i(&t, cos, sin)
        }
    };
    let q = rope(heads(q, n_head, layer.q_norm.as_ref())?)?.squeeze(0)?;
    let k = rope(heads(k, n_kv_head, layer.k_norm.as_ref())?)?.squeeze(0)?;
    let v = heads(v, n_kv_head, None)?.squeeze(0)?;
    layer.k_cache.slice_set(&k, 1, cx.at)?;
    layer.v_cache.slice_set(&v, 1, cx.at)?;
    Ok(q)
}

/// Self-attention of one whole chunk against the cache, which it extends, as masked dense
/// products. Returns `(seq, n_head × head_dim)`, ready for the output projection.
fn chunk_attention(layer: &mut Layer, qkv: Vec<Tensor>, cx: &Positions, hyper: Hyper) -> Result<Tensor> {
    let Hyper { n_head, n_kv_head, head_dim, .. } = hyper;
    let q = queries(layer, qkv, cx, hyper)?;
    let seq = q.dim(1)?;
    let mask =
        cx.masks.iter().find(|(window, _)| *window == layer.window).and_then(|(_, mask)| mask.as_ref());
    let len = cx.at + seq;
    let keys = layer.k_cache.narrow(1, 0, len)?;
    let values = layer.v_cache.narrow(1, 0, len)?;

    // Query heads `g·group .. (g+1)·group` share KV head `g`: stack them as rows.
    let group = n_head / n_kv_head;
    let q = q.reshape((n_kv_head, group * seq, head_dim))?;
    let scores = (crate::dense::matmul(&q, &keys.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    let weights = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = crate::dense::matmul(&weights, &values)?; // (n_kv, group·seq, head_dim)
    out.reshape((n_head, seq, head_dim))?.transpose(0, 1)?.reshape((seq, n_head * head_dim))
}

/// Self-attention of rows against the cache, which they extend, each row over the positions up
/// to its own as a generated token's ([`attention::rows`]). Returns `(seq, n_head × head_dim)`.
fn row_attention(layer: &mut Layer, qkv: Vec<Tensor>, cx: &Positions, hyper: Hyper) -> Result<Tensor> {
    let Hyper { n_head, n_kv_head, head_dim, .. } = hyper;
    let q = queries(layer, qkv, cx, hyper)?;
    let seq = q.dim(1)?;
    // `(seq, n_head, head_dim)`.
    let q = q.transpose(0, 1)?.flatten_all()?.to_vec1::<f32>()?;
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
    let out = attention::rows(&q, &cache, cx.at, layer.window, n_head, n_head / n_kv_head);
    Tensor::from_vec(out, (seq, n_head * head_dim), &Device::Cpu)
}

/// Cosine and sine tables of the rotary embedding for every position: `(positions, head_dim / 2)`.
/// `freq_factors` (one per pair of dimensions) divide the frequencies, as Llama 3.1's
/// `rope_freqs.weight` asks.
fn rope_tables(
    head_dim: usize,
    freq_base: f32,
    freq_factors: Option<&[f32]>,
    positions: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    if freq_factors.is_some_and(|f| f.len() != head_dim / 2) {
        candle_core::bail!(
            "rope_freqs.weight does not have one factor per pair of the {head_dim} head dimensions"
        );
    }
    let inv_freq: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| {
            let factor = freq_factors.map_or(1.0, |f| f[i / 2]);
            1.0 / (freq_base.powf(i as f32 / head_dim as f32) * factor)
        })
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
    let positions =
        Tensor::arange(0, positions as u32, device)?.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}
