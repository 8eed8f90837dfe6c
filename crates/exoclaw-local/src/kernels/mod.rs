//! Matrix kernels of our own for the quantised weights a generated token spends its time on.
//!
//! Decoding multiplies every weight matrix by one activation row, so a token's time is mostly
//! spent streaming weight bytes through the cores. These kernels read the weights in the block
//! formats the GGUF stores them in (see each format's module) and quantise the activation row
//! once per product instead ([`Q8Vector`], ggml's Q8_1), so that each block's dot product is
//! integer arithmetic:
//!
//! - [`q4_1`]: Q4_1 (what SmolLM2's GGUF ships), which candle multiplies with scalar code only;
//! - [`q8_0`]: Q8_0 (SmolLM2's tied embeddings/output matrix, and what Q5_0/Q5_1 are re-quantised
//!   to), where candle's kernel pays a call and two scalar f16 conversions per row and block.
//!
//! [`attention`] is the decode-time attention over the KV cache, spread over the same threads.
//!
//! With AVX2 (detected at run time; [`pulp`] provides the intrinsics as safe methods, since our
//! crates forbid `unsafe`) the dot products are `maddubs`/`madd` on 32 bytes at a time; elsewhere
//! a scalar loop computes the same sums. Rows are spread over candle's CPU thread pool (the one
//! its own matrix products use, so its threads are already spinning between products and no
//! thread is started per call).

pub(crate) mod attention;
pub(crate) mod q4_1;
pub(crate) mod q8_0;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, bail};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Weights per block, in every format here.
const BLOCK: usize = 32;
/// Rows the kernels compute together.
const ROW_GROUP: usize = 4;
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
    Q4_1(Matrix<q4_1::Q4_1>),
    Q8_0(Matrix<q8_0::Q8_0>),
}

impl QuantMatrix {
    /// The tensor's blocks, if its type is one these kernels multiply (else `None`: candle's).
    pub(crate) fn from_qtensor(tensor: &QTensor) -> Result<Option<Self>> {
        Ok(match tensor.dtype() {
            GgmlDType::Q4_1 => Some(QuantMatrix::Q4_1(Matrix::from_qtensor(tensor)?)),
            GgmlDType::Q8_0 => Some(QuantMatrix::Q8_0(Matrix::from_qtensor(tensor)?)),
            _ => None,
        })
    }

    /// Whether these kernels read tensors of type `dtype`.
    pub(crate) fn reads(dtype: GgmlDType) -> bool {
        matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q8_0)
    }

    /// The matrices' rows one after another (one product instead of several over the same
    /// input), or `None` if they are not all of one of our formats.
    pub(crate) fn stack(parts: &[QTensor]) -> Result<Option<Self>> {
        let dtype = parts.first().map(QTensor::dtype);
        if parts.iter().any(|p| Some(p.dtype()) != dtype) {
            return Ok(None);
        }
        Ok(match dtype {
            Some(GgmlDType::Q4_1) => Some(QuantMatrix::Q4_1(Matrix::stack(parts)?)),
            Some(GgmlDType::Q8_0) => Some(QuantMatrix::Q8_0(Matrix::stack(parts)?)),
            _ => None,
        })
    }

    /// `(rows, cols)`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        match self {
            QuantMatrix::Q4_1(m) => (m.rows, m.cols),
            QuantMatrix::Q8_0(m) => (m.rows, m.cols),
        }
    }

    /// `x · Wᵀ` for the `m` rows of `x` (`m × cols`, row-major): `m × rows`, row-major.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        match self {
            QuantMatrix::Q4_1(w) => w.matmul(Kernel::detect(), x, m),
            QuantMatrix::Q8_0(w) => w.matmul(Kernel::detect(), x, m),
        }
    }

    /// The weights as f32, `rows × cols` (for long prompts, which multiply through a dense f32
    /// kernel).
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        match self {
            QuantMatrix::Q4_1(w) => w.dequantize(),
            QuantMatrix::Q8_0(w) => w.dequantize(),
        }
    }

    /// Rows `ids` as f32, one after another (`ids.len() × cols`): a token-embedding lookup.
    pub(crate) fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        match self {
            QuantMatrix::Q4_1(w) => w.rows(ids),
            QuantMatrix::Q8_0(w) => w.rows(ids),
        }
    }
}

/// A block format these kernels multiply: each block split into its scale(s) and its quants,
/// kept in two arrays so that eight blocks' scales load as one vector.
pub(crate) trait Format {
    /// The GGUF type.
    const DTYPE: GgmlDType;
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

    /// The 32 weights of a block.
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

    /// Reads `rows × cols / 32` GGUF blocks.
    pub(crate) fn from_blocks(data: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(BLOCK) || data.len() != rows * cols / BLOCK * F::BLOCK_BYTES {
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
    /// of 32), so the stacked matrix holds exactly the blocks of the separate ones.
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
        self.cols / BLOCK
    }

    fn matmul(&self, kernel: Kernel, x: &[f32], m: usize) -> Result<Vec<f32>> {
        if x.len() != m * self.cols {
            bail!("{} inputs are not {m} rows of {}", x.len(), self.cols);
        }
        let inputs: Vec<Q8Vector> = x.chunks_exact(self.cols).map(|x| kernel.run(Quantize(x))).collect();
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
            for ((scale, quants), out) in
                self.scales[blocks.clone()].iter().zip(&self.quants[blocks]).zip(out.chunks_exact_mut(BLOCK))
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
            let blocks = first..first + out.len() / BLOCK;
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
        // keep the multiply-adds busy; the last few rows go one by one.
        let mut row = 0;
        while row + ROW_GROUP <= rows {
            let group_scales: [&[F::Scale]; ROW_GROUP] = std::array::from_fn(|r| scales(row + r));
            let group_quants: [&[F::Quants]; ROW_GROUP] = std::array::from_fn(|r| quants(row + r));
            for (j, input) in inputs.iter().enumerate() {
                let sums = F::rows_dot(kernel, group_scales, group_quants, input);
                for (r, sum) in sums.into_iter().enumerate() {
                    out[(row + r) * m + j] = sum;
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
            self.scales.iter().zip(self.quants).zip(self.out.chunks_exact_mut(BLOCK))
        {
            F::dequantize(*scale, quants, out);
        }
    }
}

/// One activation row quantised for the product (ggml's Q8_1, with f32 scales): per 32 values
/// `x_j ≈ dx · p_j`.
pub(crate) struct Q8Vector {
    /// Per block: `dx = max |x_j| / 127`; zero-padded to a multiple of [`SCALE_GROUP`] blocks.
    scales: Vec<f32>,
    /// Per block: `dx · Σ p_j` (for formats with an offset, `Σ (d·q_j + m)·x_j` needs `m·Σ x_j`);
    /// padded like `scales`.
    sums: Vec<f32>,
    /// Per block: `p_j = round(x_j / dx)`, in `-127..=127`.
    quants: Vec<[i8; 32]>,
}

/// Quantises one activation row (a value rather than a closure, see [`Rows`]).
struct Quantize<'a>(&'a [f32]);

impl pulp::NullaryFnOnce for Quantize<'_> {
    type Output = Q8Vector;

    #[inline(always)]
    fn call(self) -> Q8Vector {
        Q8Vector::quantize(self.0)
    }
}

impl Q8Vector {
    #[inline(always)]
    fn quantize(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let padded = blocks.div_ceil(SCALE_GROUP) * SCALE_GROUP;
        let mut vector =
            Self { scales: vec![0.0; padded], sums: vec![0.0; padded], quants: vec![[0; 32]; blocks] };
        for (((values, scale), sum), quants) in
            x.chunks_exact(BLOCK).zip(&mut vector.scales).zip(&mut vector.sums).zip(&mut vector.quants)
        {
            let max = values.iter().fold(0.0f32, |max, v| max.max(v.abs()));
            let d = max / 127.0;
            let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
            let mut total = 0i32;
            for (q, v) in quants.iter_mut().zip(values) {
                // Ties to even, as ggml's AVX2 quantisation rounds (and one instruction here).
                *q = (v * inverse).round_ties_even() as i8;
                total += i32::from(*q);
            }
            *scale = d;
            *sum = d * total as f32;
        }
        vector
    }
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
    use core::arch::x86_64::{__m256, __m256i};
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

    /// The checks every format passes: its blocks dequantise to candle's values, its products
    /// match candle's dequantised product (only the activations' 8-bit quantisation separates
    /// them), the scalar kernel computes what the SIMD one does, and stacking keeps products.
    pub(super) fn check_format<F: Format>() {
        let dense = |q: &QTensor| {
            q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let q = quantised(4, 64, F::DTYPE, 1);
        assert_eq!(Matrix::<F>::from_qtensor(&q).unwrap().dequantize(), dense(&q));

        // Block counts per row that fill whole groups of eight scales, and that leave a remainder
        // (576 = 18 blocks, SmolLM2's width).
        for (rows, cols, m) in [(96, 576, 1), (40, 256, 1), (33, 1536, 3), (100, 576, 15)] {
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
        }

        let (a, b) = (quantised(32, 576, F::DTYPE, 5), quantised(64, 576, F::DTYPE, 6));
        let x = random(576, 9);
        let separate = [reference(&a, &x, 1), reference(&b, &x, 1)].concat();
        let stacked = Matrix::<F>::stack(&[a, b]).unwrap();
        assert_eq!((stacked.rows, stacked.cols), (96, 576));
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
        assert!(QuantMatrix::stack(&[quantised(32, 256, GgmlDType::Q4K, 3)]).unwrap().is_none());
    }
}

/// Throughput of the decode products on SmolLM2's shapes, printed (not a check):
/// `cargo test --release -p exoclaw-local --lib kernels::throughput -- --ignored --nocapture`.
/// `copies` cycles through that many distinct matrices, so that the weights come from memory
/// rather than from a warm cache, as they do when generating.
#[cfg(test)]
mod throughput {
    #![allow(clippy::unwrap_used, clippy::print_stderr)]
    use super::tests::{quantised, random};
    use super::*;

    #[test]
    #[ignore = "a measurement; run it by name with --nocapture"]
    fn throughput() {
        for (dtype, rows, cols, copies) in [
            (GgmlDType::Q4_1, 576, 576, 30),
            (GgmlDType::Q4_1, 576, 1536, 30),
            (GgmlDType::Q4_1, 3072, 576, 30),
            (GgmlDType::Q8_0, 49152, 576, 1),
        ] {
            let matrices: Vec<QuantMatrix> = (0..copies)
                .map(|i| QuantMatrix::from_qtensor(&quantised(rows, cols, dtype, i)).unwrap().unwrap())
                .collect();
            let x = random(cols, 3);
            let calls = (200_000_000 / (rows * cols)).max(10);
            let started = std::time::Instant::now();
            for i in 0..calls {
                std::hint::black_box(matrices[i % matrices.len()].matmul(&x, 1).unwrap());
            }
            let seconds = started.elapsed().as_secs_f64() / calls as f64;
            let bytes = rows * cols / BLOCK * if dtype == GgmlDType::Q4_1 { 20 } else { 34 };
            eprintln!(
                "{dtype:?} {rows}×{cols}: {:.1} µs, {:.1} GB/s",
                seconds * 1e6,
                bytes as f64 / seconds / 1e9
            );
        }
    }
}
