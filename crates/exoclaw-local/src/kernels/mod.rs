//! Matrix kernels of our own for the quantised weights a generated token and a prompt spend
//! their time on.
//!
//! Decoding multiplies every weight matrix by one activation row, so a token's time is mostly
//! spent streaming weight bytes through the cores. The positions of a prompt after its last whole
//! chunk go through these kernels too, each row exactly as it would be alone (so that the prompt
//! cache may reuse them; see [`crate::transformer`]): their time goes to the integer products
//! themselves, and the 32-weight formats and Q4_K unpack each weight block once for two rows
//! ([`Format::rows_dot_inputs`]). These kernels read the weights in the block
//! formats the GGUF stores them in (see each format's module) and quantise the activation row
//! once per product instead ([`Q8Vector`], ggml's Q8_1 or, for the K-quants, Q8_K), so that each
//! block's dot product is integer arithmetic:
//!
//! - [`q4_0`], [`q4_1`], [`q5_0`], [`q5_1`]: 32-weight blocks of unsigned 4- or 5-bit values
//!   ([`unsigned`] holds their common products), which candle multiplies with scalar code only
//!   but for Q4_0. Q4_1 is what SmolLM2's GGUF ships; Q5_0 is what Gemma 3's Q4_K_M file falls
//!   back to for its 640-column matrices, no multiple of a K-quant's 256 weights;
//! - [`q8_0`]: Q8_0 (tied embeddings/output matrices), where candle's kernel pays a call and two
//!   scalar f16 conversions per row and block;
//! - [`q4_k`], [`q5_k`], [`q6_k`]: the K-quants' 256-weight super-blocks (the bulk of every
//!   `Q4_K_M`/`Q5_K_M` file), of eight 32-weight sub-blocks with 6-bit scales and minimums, or
//!   sixteen 16-weight ones with 8-bit scales for Q6_K. Against activations that share one scale
//!   per 256 values, a super-block's integer products are summed, each times its sub-block's
//!   integer scale, before one conversion to f32.
//!
//! [`attention`] is the decode-time attention over the KV cache, spread over the same threads.
//!
//! With AVX2 (detected at run time; [`pulp`] provides the intrinsics as safe methods: our
//! crates keep `unsafe` out, this one but for `dense.rs`'s single checked call) the dot products are `maddubs`/`madd` on 32 bytes at a time; elsewhere
//! a scalar loop computes the same sums. Rows are spread over candle's CPU thread pool (the one
//! its own matrix products use, so its threads are already spinning between products and no
//! thread is started per call).

pub(crate) mod attention;
pub(crate) mod q4_0;
pub(crate) mod q4_1;
pub(crate) mod q4_k;
pub(crate) mod q5_0;
pub(crate) mod q5_1;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q8_0;
mod unsigned;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, bail};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Values per block of a quantised activation row ([`Q8Vector`]), and weights per block of the
/// formats that are not K-quants (a K-quant super-block is eight such blocks' width).
const BLOCK: usize = 32;
/// Weights per K-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;
/// Rows the kernels compute together.
const ROW_GROUP: usize = 4;
/// Inputs (a prompt's rows) the kernels compute together, where a format shares work between them.
const INPUT_GROUP: usize = 2;
/// Activation scales are padded to a multiple of this many blocks: the AVX2 kernels convert the
/// scales of eight weight blocks at once.
const SCALE_GROUP: usize = 8;
/// `2¹¹²`: the distance between the f32 and f16 exponent biases (127 − 15), see [`f16_to_f32`].
const TWO_POW_112: f32 = f32::from_bits((127 + 112) << 23);

/// f16 bits to f32: the exponent and mantissa moved into f32's positions and rescaled by `2¹¹²`
/// (exact for normal and subnormal values and zero; infinities and NaNs, which no weight has,
/// come out as large finite values). The AVX2 kernels do the same on eight lanes at once, so
/// both paths see the same scales.
fn f16_to_f32(bits: u16) -> f32 {
    let bits = u32::from(bits);
    f32::from_bits(((bits & 0x7fff) << 13) | ((bits & 0x8000) << 16)) * TWO_POW_112
}

/// A weight matrix in one of our formats, applied as `x · Wᵀ`.
pub(crate) enum QuantMatrix {
    Q4_0(Matrix<q4_0::Q4_0>),
    Q4_1(Matrix<q4_1::Q4_1>),
    Q5_0(Matrix<q5_0::Q5_0>),
    Q5_1(Matrix<q5_1::Q5_1>),
    Q8_0(Matrix<q8_0::Q8_0>),
    Q4K(Matrix<q4_k::Q4K>),
    Q5K(Matrix<q5_k::Q5K>),
    Q6K(Matrix<q6_k::Q6K>),
}

/// `$body` with `$m` bound to the [`Matrix`] inside `$matrix`, whatever its format.
macro_rules! with_matrix {
    ($matrix:expr, $m:ident => $body:expr) => {
        match $matrix {
            QuantMatrix::Q4_0($m) => $body,
            QuantMatrix::Q4_1($m) => $body,
            QuantMatrix::Q5_0($m) => $body,
            QuantMatrix::Q5_1($m) => $body,
            QuantMatrix::Q8_0($m) => $body,
            QuantMatrix::Q4K($m) => $body,
            QuantMatrix::Q5K($m) => $body,
            QuantMatrix::Q6K($m) => $body,
        }
    };
}

impl QuantMatrix {
    /// The tensor's blocks, if its type is one these kernels multiply (else `None`: candle's).
    pub(crate) fn from_qtensor(tensor: &QTensor) -> Result<Option<Self>> {
        Self::build(tensor.dtype(), std::slice::from_ref(tensor))
    }

    /// Whether these kernels read tensors of type `dtype`.
    pub(crate) fn reads(dtype: GgmlDType) -> bool {
        matches!(
            dtype,
            GgmlDType::Q4_0
                | GgmlDType::Q4_1
                | GgmlDType::Q5_0
                | GgmlDType::Q5_1
                | GgmlDType::Q8_0
                | GgmlDType::Q4K
                | GgmlDType::Q5K
                | GgmlDType::Q6K
        )
    }

    /// The matrices' rows one after another (one product instead of several over the same
    /// input), or `None` if they are not all of one of our formats.
    pub(crate) fn stack(parts: &[QTensor]) -> Result<Option<Self>> {
        match parts.first().map(QTensor::dtype) {
            Some(dtype) if parts.iter().all(|p| p.dtype() == dtype) => Self::build(dtype, parts),
            _ => Ok(None),
        }
    }

    /// `parts` stacked as a matrix of type `dtype` (which they all have), if it is one of ours.
    fn build(dtype: GgmlDType, parts: &[QTensor]) -> Result<Option<Self>> {
        Ok(Some(match dtype {
            GgmlDType::Q4_0 => QuantMatrix::Q4_0(Matrix::stack(parts)?),
            GgmlDType::Q4_1 => QuantMatrix::Q4_1(Matrix::stack(parts)?),
            GgmlDType::Q5_0 => QuantMatrix::Q5_0(Matrix::stack(parts)?),
            GgmlDType::Q5_1 => QuantMatrix::Q5_1(Matrix::stack(parts)?),
            GgmlDType::Q8_0 => QuantMatrix::Q8_0(Matrix::stack(parts)?),
            GgmlDType::Q4K => QuantMatrix::Q4K(Matrix::stack(parts)?),
            GgmlDType::Q5K => QuantMatrix::Q5K(Matrix::stack(parts)?),
            GgmlDType::Q6K => QuantMatrix::Q6K(Matrix::stack(parts)?),
            GgmlDType::F32
            | GgmlDType::F16
            | GgmlDType::BF16
            | GgmlDType::Q8_1
            | GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q8K => return Ok(None),
        }))
    }

    /// `(rows, cols)`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        with_matrix!(self, m => (m.rows, m.cols))
    }

    /// `x · Wᵀ` for the `m` rows of `x` (`m × cols`, row-major): `m × rows`, row-major.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        with_matrix!(self, w => w.matmul(Kernel::detect(), x, m))
    }

    /// The weights as f32, `rows × cols` (for a prompt's whole chunks, which multiply through a dense
    /// f32 kernel).
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        with_matrix!(self, w => w.dequantize())
    }

    /// Rows `ids` as f32, one after another (`ids.len() × cols`): a token-embedding lookup.
    pub(crate) fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        with_matrix!(self, w => w.rows(ids))
    }
}

/// A block format these kernels multiply: each block split into its scale(s) and its quants,
/// kept in two arrays so that eight 32-weight blocks' scales load as one vector. (A K-quant
/// super-block keeps its scales with its quants, in one array: its scale is `()`.)
pub(crate) trait Format {
    /// The GGUF type.
    const DTYPE: GgmlDType;
    /// Weights per block: [`BLOCK`], or [`QK_K`] for the K-quants. The activation row is
    /// quantised with one scale per as many values, so that a block's integer products add up
    /// before any f32 arithmetic.
    const BLOCK_LEN: usize;
    /// Bytes per block in the GGUF.
    const BLOCK_BYTES: usize;
    /// A block's scale bits.
    type Scale: Copy + Default + Send + Sync;
    /// A block's quants.
    type Quants: Copy + Send + Sync;

    /// Splits a GGUF block (`BLOCK_BYTES` long).
    fn split(block: &[u8]) -> Option<(Self::Scale, Self::Quants)>;

    /// The dot products of `R` rows with `x`. Each row's `scales` start at its first block and
    /// run on past its end, at least [`SCALE_GROUP`] − 1 further (into the next rows, and the
    /// matrix's padding after the last): the AVX2 kernels load a whole group of eight scales where
    /// a row ends inside one, and the zero-padded activation scales cancel what lies beyond it.
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[Self::Scale]; R],
        quants: [&[Self::Quants]; R],
        x: &Q8Vector,
    ) -> [f32; R];

    /// The dot products of `R` rows with each of `T` inputs: `out[t]` is, to the bit, what
    /// [`Self::rows_dot`] gives for `xs[t]` (a prompt's rows must come out as generated tokens'
    /// would). A format may share work between the inputs — each weight block unpacked once for
    /// all of them — where its kernel keeps each input's operations and their order.
    #[inline(always)]
    fn rows_dot_inputs<const R: usize, const T: usize>(
        kernel: Kernel,
        scales: [&[Self::Scale]; R],
        quants: [&[Self::Quants]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        // A loop, not `array::from_fn`: its closure may be compiled out of line, without AVX2.
        let mut sums = [[0.0; R]; T];
        for t in 0..T {
            sums[t] = Self::rows_dot(kernel, scales, quants, xs[t]);
        }
        sums
    }

    /// The [`Self::BLOCK_LEN`] weights of a block.
    fn dequantize(scale: Self::Scale, quants: &Self::Quants, out: &mut [f32]);
}

/// A weight matrix `(rows, cols)` in format `F`.
pub(crate) struct Matrix<F: Format> {
    rows: usize,
    cols: usize,
    /// Per block, row by row, then [`SCALE_GROUP`] zeros (see [`Format::rows_dot`]).
    scales: Vec<F::Scale>,
    quants: Vec<F::Quants>,
}

impl<F: Format> Matrix<F> {
    /// Takes the blocks of a 2-d tensor of type `F::DTYPE`.
    pub(crate) fn from_qtensor(tensor: &QTensor) -> Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        if tensor.dtype() != F::DTYPE {
            bail!("expected a {:?} matrix, got {:?}", F::DTYPE, tensor.dtype());
        }
        Self::from_blocks(&tensor.data()?, rows, cols)
    }

    /// Reads `rows × cols / F::BLOCK_LEN` GGUF blocks.
    pub(crate) fn from_blocks(data: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(F::BLOCK_LEN) || data.len() != rows * cols / F::BLOCK_LEN * F::BLOCK_BYTES {
            bail!("{} bytes are not a {rows}×{cols} {:?} matrix", data.len(), F::DTYPE);
        }
        let blocks = data.chunks_exact(F::BLOCK_BYTES);
        let mut scales = Vec::with_capacity(blocks.len());
        let mut quants = Vec::with_capacity(blocks.len());
        for block in blocks {
            let Some((scale, quant)) = F::split(block) else { bail!("a short {:?} block", F::DTYPE) };
            scales.push(scale);
            quants.push(quant);
        }
        scales.resize(scales.len() + SCALE_GROUP, F::Scale::default());
        Ok(Self { rows, cols, scales, quants })
    }

    /// The tensors' rows one after another. Blocks never span rows (a row's length is a multiple
    /// of the block's), so the stacked matrix holds exactly the blocks of the separate ones.
    pub(crate) fn stack(parts: &[QTensor]) -> Result<Self> {
        let mut stacked: Option<Self> = None;
        for part in parts {
            let part = Self::from_qtensor(part)?;
            match &mut stacked {
                None => stacked = Some(part),
                Some(s) if s.cols == part.cols => {
                    s.rows += part.rows;
                    s.scales.truncate(s.quants.len()); // the padding goes after the last row only
                    s.scales.extend(part.scales);
                    s.quants.extend(part.quants);
                }
                Some(_) => bail!("stacked matrices must have the same number of columns"),
            }
        }
        stacked.ok_or_else(|| candle_core::Error::Msg("nothing to stack".into()))
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / F::BLOCK_LEN
    }

    fn matmul(&self, kernel: Kernel, x: &[f32], m: usize) -> Result<Vec<f32>> {
        if x.len() != m * self.cols {
            bail!("{} inputs are not {m} rows of {}", x.len(), self.cols);
        }
        let inputs: Vec<Q8Vector> =
            x.chunks_exact(self.cols).map(|x| kernel.run(Quantize(x, F::BLOCK_LEN))).collect();
        // Computed as `rows × m` (each thread owns whole weight rows, read once for all inputs),
        // then transposed; for one input row (decoding) the two layouts are the same.
        let mut out = vec![0.0f32; self.rows * m];
        let part_rows = rows_per_part(self.rows);
        parallel_parts(&mut out, part_rows * m, |part, out| {
            kernel.run(Rows { matrix: self, kernel, inputs: &inputs, first: part * part_rows, out });
        });
        if m == 1 {
            return Ok(out);
        }
        let mut transposed = vec![0.0f32; out.len()];
        for (row, values) in out.chunks_exact(m).enumerate() {
            for (input, value) in values.iter().enumerate() {
                transposed[input * self.rows + row] = *value;
            }
        }
        Ok(transposed)
    }

    fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let per_row = self.blocks_per_row();
        let mut out = vec![0.0f32; ids.len() * self.cols];
        for (&id, out) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            let row = id as usize;
            if row >= self.rows {
                bail!("row {row} of a matrix of {} rows", self.rows);
            }
            let blocks = row * per_row..(row + 1) * per_row;
            for ((scale, quants), out) in self.scales[blocks.clone()]
                .iter()
                .zip(&self.quants[blocks])
                .zip(out.chunks_exact_mut(F::BLOCK_LEN))
            {
                F::dequantize(*scale, quants, out);
            }
        }
        Ok(out)
    }

    fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        let kernel = Kernel::detect();
        let part_rows = rows_per_part(self.rows);
        parallel_parts(&mut out, part_rows * self.cols, |part, out| {
            let first = part * part_rows * self.blocks_per_row();
            let blocks = first..first + out.len() / F::BLOCK_LEN;
            // The plain loop, compiled with AVX2 enabled where there is AVX2, so that it vectorises.
            kernel.run(Dequantize::<F> {
                scales: &self.scales[blocks.clone()],
                quants: &self.quants[blocks],
                out,
            });
        });
        out
    }
}

/// A part of a product: rows `first..` with every input, as many rows as `out` holds
/// (`out[row × inputs + input]`). The work of a part is a value rather than a closure so that it
/// runs inside [`pulp::x86::V3::vectorize`] with every call inlined: a closure there may be
/// compiled out of line, without AVX2, and then every intrinsic in it becomes a function call.
struct Rows<'a, F: Format> {
    matrix: &'a Matrix<F>,
    kernel: Kernel,
    inputs: &'a [Q8Vector],
    first: usize,
    out: &'a mut [f32],
}

impl<F: Format> pulp::NullaryFnOnce for Rows<'_, F> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Rows { matrix, kernel, inputs, first, out } = self;
        let nb = matrix.blocks_per_row();
        let m = inputs.len();
        let rows = out.len() / m;
        let scales = |row: usize| &matrix.scales[(first + row) * nb..];
        let quants = |row: usize| &matrix.quants[(first + row) * nb..(first + row + 1) * nb];
        // Four rows at a time share each activation block's load, and their four running sums
        // keep the multiply-adds busy; the last few rows go one by one. A prompt's inputs go two
        // at a time, sharing each weight block's unpacking where the format can.
        let mut row = 0;
        while row + ROW_GROUP <= rows {
            let group_scales: [&[F::Scale]; ROW_GROUP] = std::array::from_fn(|r| scales(row + r));
            let group_quants: [&[F::Quants]; ROW_GROUP] = std::array::from_fn(|r| quants(row + r));
            let mut pairs = inputs.chunks_exact(INPUT_GROUP);
            for (p, pair) in pairs.by_ref().enumerate() {
                let xs: [&Q8Vector; INPUT_GROUP] = std::array::from_fn(|t| &pair[t]);
                let sums = F::rows_dot_inputs(kernel, group_scales, group_quants, xs);
                for (t, sums) in sums.into_iter().enumerate() {
                    for (r, sum) in sums.into_iter().enumerate() {
                        out[(row + r) * m + p * INPUT_GROUP + t] = sum;
                    }
                }
            }
            let done = m - pairs.remainder().len();
            for (j, input) in pairs.remainder().iter().enumerate() {
                let sums = F::rows_dot(kernel, group_scales, group_quants, input);
                for (r, sum) in sums.into_iter().enumerate() {
                    out[(row + r) * m + done + j] = sum;
                }
            }
            row += ROW_GROUP;
        }
        for row in row..rows {
            for (j, input) in inputs.iter().enumerate() {
                let [sum] = F::rows_dot(kernel, [scales(row)], [quants(row)], input);
                out[row * m + j] = sum;
            }
        }
    }
}

/// Blocks dequantised into `out` (see [`Rows`] for why a value and not a closure).
struct Dequantize<'a, F: Format> {
    scales: &'a [F::Scale],
    quants: &'a [F::Quants],
    out: &'a mut [f32],
}

impl<F: Format> pulp::NullaryFnOnce for Dequantize<'_, F> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        for ((scale, quants), out) in
            self.scales.iter().zip(self.quants).zip(self.out.chunks_exact_mut(F::BLOCK_LEN))
        {
            F::dequantize(*scale, quants, out);
        }
    }
}

/// One activation row quantised for the product: per block of `block_len` values (32: ggml's
/// Q8_1 with f32 scales; 256: its Q8_K) `x_j ≈ dx · p_j`, kept as 32-value blocks.
pub(crate) struct Q8Vector {
    /// Per block of `block_len` values: `dx = max |x_j| / 127`; zero-padded to a multiple of
    /// [`SCALE_GROUP`].
    scales: Vec<f32>,
    /// Per 32 values: `dx · Σ p_j` (for formats with an offset, `Σ (d·q_j + m)·x_j` needs
    /// `m·Σ x_j`); zero-padded to a multiple of [`SCALE_GROUP`].
    sums: Vec<f32>,
    /// Per 256 values, when `block_len` is 256 (else empty): `Σ p_j` over each 16 (Q6_K's
    /// offset of 32, under a scale per 16 weights).
    sums16: Vec<[i16; 16]>,
    /// Per 32 values: `p_j = round(x_j / dx)`, in `-127..=127`; when `block_len` is 256, in the
    /// order of [`interleave`].
    quants: Vec<[i8; 32]>,
}

/// Quantises one activation row, with one scale per as many values as the second field (a value
/// rather than a closure, see [`Rows`]).
struct Quantize<'a>(&'a [f32], usize);

impl pulp::NullaryFnOnce for Quantize<'_> {
    type Output = Q8Vector;

    #[inline(always)]
    fn call(self) -> Q8Vector {
        Q8Vector::quantize(self.0, self.1)
    }
}

impl Q8Vector {
    /// `x` (a multiple of `block_len` values, itself [`BLOCK`] or [`QK_K`]) quantised.
    #[inline(always)]
    fn quantize(x: &[f32], block_len: usize) -> Self {
        let blocks = x.len() / BLOCK;
        let padded = |n: usize| n.div_ceil(SCALE_GROUP) * SCALE_GROUP;
        let mut vector = Self {
            scales: vec![0.0; padded(x.len() / block_len)],
            sums: vec![0.0; padded(blocks)],
            sums16: vec![[0; 16]; if block_len == QK_K { x.len() / QK_K } else { 0 }],
            quants: vec![[0; 32]; blocks],
        };
        let per_block = block_len / BLOCK;
        for ((values, scale), (sums, quants)) in x
            .chunks_exact(block_len)
            .zip(&mut vector.scales)
            .zip(vector.sums.chunks_exact_mut(per_block).zip(vector.quants.chunks_exact_mut(per_block)))
        {
            let max = values.iter().fold(0.0f32, |max, v| max.max(v.abs()));
            let d = max / 127.0;
            let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
            for ((values, sum), quants) in values.chunks_exact(BLOCK).zip(sums).zip(quants) {
                let mut total = 0i32;
                for (q, v) in quants.iter_mut().zip(values) {
                    // Ties to even, as ggml's AVX2 quantisation rounds (and one instruction here).
                    *q = (v * inverse).round_ties_even() as i8;
                    total += i32::from(*q);
                }
                *sum = d * total as f32;
            }
            *scale = d;
        }
        for (sums16, quants) in vector.sums16.iter_mut().zip(vector.quants.as_chunks_mut::<8>().0) {
            for (sum, p) in sums16.iter_mut().zip(quants.iter().flat_map(|q| q.chunks_exact(16))) {
                *sum = p.iter().map(|&p| i16::from(p)).sum();
            }
            *quants = interleave(quants);
        }
        vector
    }
}

/// The K-quant kernels' order of a super-block's 256 values (weights and activations alike):
/// eight vectors of 32, vector `g` holding values `4g .. 4g + 4` of each 32-value sub-block `s`,
/// at bytes `4s .. 4s + 4`. Every vector then has four values of every sub-block, so that one
/// vector of scales (one per pair of bytes) multiplies them all, with no broadcast of a scale per
/// sub-block, and the `maddubs` products of several vectors add up as i16 before they are scaled
/// at all. (The weights are reordered once, when a matrix is loaded; an activation row once per
/// product.)
fn interleave<T: Copy>(sub_blocks: &[[T; 32]; 8]) -> [[T; 32]; 8] {
    std::array::from_fn(|g| std::array::from_fn(|b| sub_blocks[b / 4][4 * g + b % 4]))
}

/// The sub-blocks that [`interleave`] reorders.
fn deinterleave<T: Copy>(vectors: &[[T; 32]; 8]) -> [[T; 32]; 8] {
    std::array::from_fn(|s| std::array::from_fn(|l| vectors[l / 4][4 * s + l % 4]))
}

/// How the dot products are computed on this machine.
#[derive(Clone, Copy)]
pub(crate) enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Scalar,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return Kernel::Avx2(simd);
        }
        Kernel::Scalar
    }

    /// Runs `work` compiled for this kernel's instruction set.
    #[inline(always)]
    fn run<W: pulp::NullaryFnOnce>(self, work: W) -> W::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => simd.vectorize(work),
            Kernel::Scalar => work.call(),
        }
    }
}

/// Splits `out` into parts of `part_len` values (the last may be shorter) and runs `work` on
/// every part, with the part's index, on candle's thread pool. Threads take the next part from a
/// shared cursor, so one that is slowed down (another process on its core) leaves its share to the
/// others instead of holding everyone at the barrier.
pub(crate) fn parallel_parts<F>(out: &mut [f32], part_len: usize, work: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let parts: Vec<Mutex<&mut [f32]>> = out.chunks_mut(part_len.max(1)).map(Mutex::new).collect();
    if let [only] = parts.as_slice() {
        return work(0, &mut only.lock().unwrap_or_else(PoisonError::into_inner));
    }
    let next = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute(|_thread| {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = parts.get(index) else { break };
            // Each part is taken once, so its lock is never contended; it only lets two threads
            // hold disjoint `&mut` parts of one buffer without `unsafe`.
            let mut part = part.lock().unwrap_or_else(PoisonError::into_inner);
            work(index, &mut part);
        }
    });
}

/// Rows per part when `rows` rows of output are split over the pool: about four parts per
/// thread (enough to even out a straggler, few enough that taking a part costs nothing), and
/// never so few rows that a part is mostly overhead.
fn rows_per_part(rows: usize) -> usize {
    let threads = candle_core::utils::barrier_pool().n_workers() + 1;
    rows.div_ceil(threads * 4).max(16).next_multiple_of(ROW_GROUP)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{SCALE_GROUP, TWO_POW_112};
    use core::arch::x86_64::{__m128i, __m256, __m256i};
    use pulp::x86::V3;

    /// [`super::f16_to_f32`] on the low halves of eight 32-bit lanes.
    #[inline(always)]
    pub(super) fn halves_to_f32(simd: V3, bits: __m256i) -> __m256 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let magnitude = avx2._mm256_and_si256(bits, avx._mm256_set1_epi32(0x7fff));
        let sign = avx2._mm256_and_si256(bits, avx._mm256_set1_epi32(0x8000));
        let f32_bits =
            avx2._mm256_or_si256(avx2._mm256_slli_epi32::<13>(magnitude), avx2._mm256_slli_epi32::<16>(sign));
        avx._mm256_mul_ps(pulp::cast(f32_bits), avx._mm256_set1_ps(TWO_POW_112))
    }

    /// Scales `start..start + SCALE_GROUP` of one row, zeros where the slice ends. Past the row's
    /// end (in its last group) these are the next row's scales, or padding; the activation's
    /// scales (and sums) are zero there.
    #[inline(always)]
    pub(super) fn scale_group<T: Copy + Default>(scales: &[T], start: usize) -> [T; SCALE_GROUP] {
        if let Some(group) = scales.get(start..start + SCALE_GROUP)
            && let Ok(group) = group.try_into()
        {
            group
        } else {
            [T::default(); SCALE_GROUP]
        }
    }

    /// The 32 nibbles of 16 bytes as bytes `0..16`, in the order of the Q4_0, Q4_1 and Q5_0
    /// blocks: byte `i`'s low nibble at `i`, its high one at `i + 16`.
    #[inline(always)]
    pub(super) fn nibbles(simd: V3, bytes: &[u8; 16]) -> __m256i {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let bytes: __m128i = pulp::cast(*bytes);
        let both = avx._mm256_set_m128i(simd.sse2._mm_srli_epi16::<4>(bytes), bytes);
        avx2._mm256_and_si256(both, avx._mm256_set1_epi8(0x0f))
    }

    /// `Σ_j q_j · p_j` of 32 unsigned `q_j < 64` and signed `p_j`, as eight f32 partial sums:
    /// u8 × i8 pairs summed to i16 (at most 2 · 63 · 127, no saturation), then to i32.
    #[inline(always)]
    pub(super) fn dot(simd: V3, q: __m256i, p: __m256i) -> __m256 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let pairs = avx2._mm256_maddubs_epi16(q, p);
        avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(pairs, avx._mm256_set1_epi16(1)))
    }

    /// Each row's accumulator summed. Not `acc.map(…)`: its closure may be compiled out of line,
    /// without AVX2.
    #[inline(always)]
    pub(super) fn row_sums<const R: usize>(simd: V3, acc: [__m256; R]) -> [f32; R] {
        let mut sums = [0.0; R];
        for (sum_r, acc) in sums.iter_mut().zip(acc) {
            *sum_r = sum(simd, acc);
        }
        sums
    }

    /// The sum of the eight lanes.
    #[inline(always)]
    fn sum(simd: V3, v: __m256) -> f32 {
        let (avx, sse, sse3) = (simd.avx, simd.sse, simd.sse3);
        let quad = sse._mm_add_ps(avx._mm256_castps256_ps128(v), avx._mm256_extractf128_ps::<1>(v));
        let pair = sse._mm_add_ps(quad, sse._mm_movehl_ps(quad, quad));
        sse._mm_cvtss_f32(sse._mm_add_ss(pair, sse3._mm_movehdup_ps(pair)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{Device, Tensor};

    /// Deterministic values in `-1..1` (xorshift).
    pub(super) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// A random `rows × cols` matrix quantised to `dtype` by candle, some rows shifted so that
    /// offsets and scales take both signs and several magnitudes.
    pub(super) fn quantised(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let shift = Tensor::from_vec(random(rows, seed + 1), (rows, 1), &Device::Cpu).unwrap();
        QTensor::quantize(&w.broadcast_add(&shift).unwrap(), dtype).unwrap()
    }

    /// `x · Wᵀ` with candle's dequantised weights, in f32.
    pub(super) fn reference(q: &QTensor, x: &[f32], m: usize) -> Vec<f32> {
        let (_, cols) = q.shape().dims2().unwrap();
        let w = q.dequantize(&Device::Cpu).unwrap();
        let x = Tensor::from_vec(x.to_vec(), (m, cols), &Device::Cpu).unwrap();
        x.matmul(&w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The largest difference, relative to the largest value of `expected`.
    pub(super) fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
        assert_eq!(actual.len(), expected.len());
        let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        actual.iter().zip(expected).fold(0.0f32, |m, (a, e)| m.max((a - e).abs())) / scale
    }

    /// The checks every format passes: its blocks dequantise to candle's values (the whole
    /// matrix, and rows looked up by index), its products match candle's dequantised product
    /// (only the activations' 8-bit quantisation separates them), the scalar kernel computes
    /// what the SIMD one does, and stacking keeps products.
    pub(super) fn check_format<F: Format>() {
        let dense = |q: &QTensor| {
            q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let cols = 2 * F::BLOCK_LEN;
        let q = quantised(4, cols, F::DTYPE, 1);
        let matrix = Matrix::<F>::from_qtensor(&q).unwrap();
        assert_eq!(matrix.dequantize(), dense(&q));
        assert_eq!(
            matrix.rows(&[3, 1]).unwrap(),
            [&dense(&q)[3 * cols..], &dense(&q)[cols..2 * cols]].concat()
        );

        // 32-weight blocks: counts per row that fill whole groups of eight scales, and that leave
        // a remainder (576 = 18 blocks, SmolLM2's width; 640 = 20, Gemma 3's). Super-blocks: one
        // to eight per row (Gemma 3's attention output and FFN down matrices are 1024 and 2048
        // wide). Row counts with and without a remainder of four.
        let shapes = match F::BLOCK_LEN {
            BLOCK => [(96, 576, 1), (40, 256, 1), (33, 1536, 3), (100, 576, 15), (66, 640, 2)],
            _ => [(96, 1024, 1), (40, 256, 1), (33, 2048, 3), (100, 768, 15), (66, 1280, 2)],
        };
        for (rows, cols, m) in shapes {
            let q = quantised(rows, cols, F::DTYPE, (rows * cols) as u64);
            let matrix = Matrix::<F>::from_qtensor(&q).unwrap();
            let x = random(m * cols, 7);
            let expected = reference(&q, &x, m);
            let simd = matrix.matmul(Kernel::detect(), &x, m).unwrap();
            let error = relative_error(&simd, &expected);
            assert!(error < 0.01, "{rows}×{cols}, {m} inputs: relative error {error}");
            // The same integer sums and scales; only the order of the f32 additions differs.
            let scalar = matrix.matmul(Kernel::Scalar, &x, m).unwrap();
            assert!(relative_error(&simd, &scalar) < 1e-5, "{rows}×{cols}: scalar and SIMD differ");
            // Each input's results are those of the input alone, to the bit (a prompt's rows are
            // what generated tokens would be: the prompt cache reuses either).
            for (i, input) in x.chunks_exact(cols).enumerate() {
                let alone = matrix.matmul(Kernel::detect(), input, 1).unwrap();
                assert_eq!(alone, simd[i * rows..(i + 1) * rows], "{rows}×{cols}: input {i} of {m}");
            }
        }

        let cols = if F::BLOCK_LEN == BLOCK { 576 } else { 1536 };
        let (a, b) = (quantised(32, cols, F::DTYPE, 5), quantised(64, cols, F::DTYPE, 6));
        let x = random(cols, 9);
        let separate = [reference(&a, &x, 1), reference(&b, &x, 1)].concat();
        let stacked = Matrix::<F>::stack(&[a, b]).unwrap();
        assert_eq!((stacked.rows, stacked.cols), (96, cols));
        assert!(relative_error(&stacked.matmul(Kernel::detect(), &x, 1).unwrap(), &separate) < 0.01);
    }

    #[test]
    fn f16_conversion_is_exact() {
        for bits in (0u16..0x7c00).chain(0x8000..0xfc00) {
            let (exponent, mantissa) = (i32::from(bits >> 10 & 0x1f), f32::from(bits & 0x3ff) / 1024.0);
            let magnitude = match exponent {
                0 => mantissa * 2f32.powi(-14),
                e => (1.0 + mantissa) * 2f32.powi(e - 15),
            };
            let expected = if bits & 0x8000 == 0 { magnitude } else { -magnitude };
            assert_eq!(f16_to_f32(bits).to_bits(), expected.to_bits(), "{bits:#x}");
        }
    }

    #[test]
    fn mixed_types_do_not_stack() {
        let parts = [quantised(32, 64, GgmlDType::Q4_1, 1), quantised(32, 64, GgmlDType::Q8_0, 2)];
        assert!(QuantMatrix::stack(&parts).unwrap().is_none());
        assert!(QuantMatrix::stack(&[quantised(32, 256, GgmlDType::Q2K, 3)]).unwrap().is_none());
    }
}

/// Throughput of the decode products (one input row) on the shapes of SmolLM2, Gemma 3 270M and
/// a larger llama-like model, against candle's `QMatMul` on the same matrices in the same run,
/// printed (not a check):
/// `cargo test --release -p exoclaw-local --lib kernels::throughput -- --ignored --nocapture`.
/// Each shape cycles through as many distinct matrices as make about [`WORKING_SET`] bytes, so
/// that the weights come from the last-level cache or memory rather than from L1/L2, as they do
/// when generating (a token of Gemma 3 270M reads ≈ 250 MB).
#[cfg(test)]
mod throughput {
    #![allow(clippy::unwrap_used, clippy::print_stderr)]
    use super::tests::{quantised, random};
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module, Tensor};
    use std::time::Instant;

    /// Bytes of distinct weights each measurement cycles through.
    const WORKING_SET: usize = 64 << 20;

    /// Seconds per call of `ours(i)` and of `theirs(i)`, `i` cycling through `copies`: the best
    /// of 40 rounds of about 5 ms each, the two taking turns, so that other work on the machine
    /// (which, when it takes a core from one of the pool's threads, holds up the others at the end
    /// of every product) slows neither more than the other, and rounds that ran undisturbed
    /// decide.
    fn seconds_per_call(
        copies: usize,
        mut ours: impl FnMut(usize),
        mut theirs: impl FnMut(usize),
    ) -> (f64, f64) {
        let round = |product: &mut dyn FnMut(usize)| {
            let (started, mut calls) = (Instant::now(), 0);
            while calls < 3 || started.elapsed().as_secs_f64() < 0.005 {
                product(calls % copies);
                calls += 1;
            }
            started.elapsed().as_secs_f64() / calls as f64
        };
        round(&mut ours); // warm-up: the pool's threads, the caches
        round(&mut theirs);
        let (mut best_ours, mut best_theirs) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..40 {
            best_ours = best_ours.min(round(&mut ours));
            best_theirs = best_theirs.min(round(&mut theirs));
        }
        (best_ours, best_theirs)
    }

    #[test]
    #[ignore = "a measurement; run it by name with --nocapture"]
    fn throughput() {
        use GgmlDType::{Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};
        let shapes = [
            ("SmolLM2 q/o", Q4_1, 576, 576),
            ("SmolLM2 down", Q4_1, 576, 1536),
            ("SmolLM2 gate+up", Q4_1, 3072, 576),
            ("SmolLM2 output", Q8_0, 49152, 576),
            ("Gemma3 q", Q5_0, 1024, 640),
            ("Gemma3 k", Q5_0, 256, 640),
            ("Gemma3 v", Q8_0, 256, 640),
            ("Gemma3 o", Q4K, 640, 1024),
            ("Gemma3 gate/up", Q5_0, 2048, 640),
            ("Gemma3 down", Q6K, 640, 2048),
            ("Gemma3 output", Q8_0, 262144, 640),
            ("2048² Q4_0", Q4_0, 2048, 2048),
            ("2048² Q5_1", Q5_1, 2048, 2048),
            ("2048² Q4_K", Q4K, 2048, 2048),
            ("2048² Q5_K", Q5K, 2048, 2048),
            ("2048² Q6_K", Q6K, 2048, 2048),
        ];
        eprintln!(
            "{:<16} {:<5} {:>12} {:>10} {:>9} {:>10} {:>9} {:>7}",
            "shape", "type", "rows×cols", "ours µs", "GB/s", "candle µs", "GB/s", "ratio"
        );
        for (name, dtype, rows, cols) in shapes {
            let bytes = rows * cols / dtype.block_size() * dtype.type_size();
            let copies = (WORKING_SET / bytes).clamp(1, 200);
            let tensors: Vec<QTensor> = (0..copies).map(|i| quantised(rows, cols, dtype, i as u64)).collect();
            let ours: Vec<QuantMatrix> =
                tensors.iter().map(|t| QuantMatrix::from_qtensor(t).unwrap().unwrap()).collect();
            let theirs: Vec<QMatMul> =
                tensors.into_iter().map(|t| QMatMul::from_qtensor(t).unwrap()).collect();
            let x = random(cols, 3);
            let input = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
            let (ours, candle) = seconds_per_call(
                copies,
                |i| {
                    std::hint::black_box(ours[i].matmul(&x, 1).unwrap());
                },
                |i| {
                    std::hint::black_box(theirs[i].forward(&input).unwrap());
                },
            );
            let rate = |seconds: f64| bytes as f64 / seconds / 1e9;
            eprintln!(
                "{name:<16} {:<5} {:>12} {:>10.1} {:>9.1} {:>10.1} {:>9.1} {:>6.2}×",
                format!("{dtype:?}"),
                format!("{rows}×{cols}"),
                ours * 1e6,
                rate(ours),
                candle * 1e6,
                rate(candle),
                candle / ours,
            );
        }
    }
}
