//! Matrix products over Q4_1 weights, read as the GGUF stores them.
//!
//! # The Q4_1 block (ggml's `block_q4_1`, candle's `BlockQ4_1`)
//!
//! 32 consecutive weights of a row in 20 bytes: `d` (f16), `m` (f16), then 16 bytes of nibbles.
//! Byte `i` holds weight `i` in its low nibble and weight `i + 16` in its high nibble, and weight
//! `j = d · q_j + m` with `q_j ∈ 0..16`. Blocks never span rows (a row's length is a multiple of
//! 32), so matrices stack by rows without touching a block.
//!
//! [`Q4_1Matrix`] keeps the same 20 bytes per block in two arrays: the four bytes of `d` and `m`
//! (one `u32`, `d` in the low half) and the 16 bytes of nibbles, so that eight blocks' scales
//! load as one vector.
//!
//! # The product
//!
//! A generated token's time is mostly spent streaming weight bytes through the cores, and Q4_1 is
//! 20 bytes per 32 weights where the Q8_0 candle has fast kernels for is 34. So the activations
//! are quantised once per product instead ([`Q8Vector`], ggml's Q8_1): per 32 values a scale
//! `dx`, 32 `i8` values `x_j ≈ dx · p_j`, and `sx = dx · Σ p_j`. A block's dot product is then
//! integer arithmetic plus two multiplies:
//!
//! `Σ_j (d·q_j + m) · dx·p_j = d·dx · Σ_j q_j·p_j + m · sx`
//!
//! With AVX2 ([`pulp`]'s safe intrinsics, chosen at run time) `Σ q_j·p_j` is one `maddubs`
//! (unsigned nibbles × signed bytes) and one `madd`; elsewhere a scalar loop computes the same
//! sums. Rows are spread over candle's thread pool ([`super::parallel_parts`]).

use super::{parallel_parts, rows_per_part};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, bail};

/// Weights per block.
const BLOCK: usize = 32;
/// Bytes per block in the GGUF.
const BLOCK_BYTES: usize = 20;
/// Activation scales are padded to a multiple of this many blocks: the AVX2 kernel converts the
/// scales of eight weight blocks at once.
const SCALE_GROUP: usize = 8;
/// `2¹¹²`: the distance between the f32 and f16 exponent biases (127 − 15), see [`f16_to_f32`].
const TWO_POW_112: f32 = f32::from_bits((127 + 112) << 23);

/// f16 bits to f32: the exponent and mantissa moved into f32's positions and rescaled by `2¹¹²`
/// (exact for normal and subnormal values and zero; infinities and NaNs, which no weight has,
/// come out as large finite values). The AVX2 kernel does the same on eight lanes at once, so
/// both paths see the same scales.
fn f16_to_f32(bits: u16) -> f32 {
    let bits = u32::from(bits);
    f32::from_bits(((bits & 0x7fff) << 13) | ((bits & 0x8000) << 16)) * TWO_POW_112
}

/// A Q4_1 weight matrix `(rows, cols)`, applied as `x · Wᵀ` (see the module docs for the layout).
pub(crate) struct Q4_1Matrix {
    rows: usize,
    cols: usize,
    /// Per block: the f16 bits of `d` (low half) and `m` (high half), as in the GGUF block.
    scales: Vec<u32>,
    /// Per block: the 16 bytes of nibbles.
    quants: Vec<[u8; 16]>,
}

impl Q4_1Matrix {
    /// Takes the blocks of a 2-d Q4_1 tensor.
    pub(crate) fn from_qtensor(tensor: &QTensor) -> Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        if tensor.dtype() != GgmlDType::Q4_1 {
            bail!("expected a Q4_1 matrix, got {:?}", tensor.dtype());
        }
        Self::from_blocks(&tensor.data()?, rows, cols)
    }

    /// Reads `rows × cols / 32` GGUF blocks.
    pub(crate) fn from_blocks(data: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(BLOCK) || data.len() != rows * cols / BLOCK * BLOCK_BYTES {
            bail!("{} bytes are not a {rows}×{cols} Q4_1 matrix", data.len());
        }
        let blocks = data.chunks_exact(BLOCK_BYTES);
        let mut scales = Vec::with_capacity(blocks.len());
        let mut quants = Vec::with_capacity(blocks.len());
        for block in blocks {
            let (scale, nibbles) = block.split_at(4);
            scales.push(u32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]));
            quants.push(
                <[u8; 16]>::try_from(nibbles).map_err(|_| candle_core::Error::Msg("short block".into()))?,
            );
        }
        Ok(Self { rows, cols, scales, quants })
    }

    /// The matrices' rows one after another: one product instead of several over the same input.
    pub(crate) fn stack(parts: Vec<Self>) -> Result<Self> {
        let Some(cols) = parts.first().map(|p| p.cols) else { bail!("nothing to stack") };
        if parts.iter().any(|p| p.cols != cols) {
            bail!("stacked matrices must have the same number of columns");
        }
        let mut stacked = Self { rows: 0, cols, scales: Vec::new(), quants: Vec::new() };
        for part in parts {
            stacked.rows += part.rows;
            stacked.scales.extend(part.scales);
            stacked.quants.extend(part.quants);
        }
        Ok(stacked)
    }

    /// `(rows, cols)`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// `x · Wᵀ` for the `m` rows of `x` (`m × cols`, row-major): `m × rows`, row-major.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        self.matmul_with(Kernel::detect(), x, m)
    }

    fn matmul_with(&self, kernel: Kernel, x: &[f32], m: usize) -> Result<Vec<f32>> {
        if x.len() != m * self.cols {
            bail!("{} inputs are not {m} rows of {}", x.len(), self.cols);
        }
        let inputs: Vec<Q8Vector> = x.chunks_exact(self.cols).map(Q8Vector::quantize).collect();
        // Computed as `rows × m` (each thread owns whole weight rows, read once for all inputs),
        // then transposed; for one input row (decoding) the two layouts are the same.
        let mut out = vec![0.0f32; self.rows * m];
        let part_rows = rows_per_part(self.rows);
        parallel_parts(&mut out, part_rows * m, |part, out| {
            self.rows_into(kernel, &inputs, part * part_rows, out);
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

    /// Rows `first..` of the product with every input, as many rows as `out` holds
    /// (`out[row × inputs + input]`).
    fn rows_into(&self, kernel: Kernel, inputs: &[Q8Vector], first: usize, out: &mut [f32]) {
        kernel.run(Rows { matrix: self, kernel, inputs, first, out });
    }

    /// The weights as f32, `rows × cols` (for long prompts, which multiply through a dense f32
    /// kernel).
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        let kernel = Kernel::detect();
        let part_rows = rows_per_part(self.rows);
        parallel_parts(&mut out, part_rows * self.cols, |part, out| {
            let first = part * part_rows * self.blocks_per_row();
            let blocks = first..first + out.len() / BLOCK;
            // The plain loop, compiled with AVX2 enabled where there is AVX2, so that it vectorises.
            kernel.run(Dequantize {
                scales: &self.scales[blocks.clone()],
                quants: &self.quants[blocks],
                out,
            });
        });
        out
    }
}

/// A part of a product: rows `first..` with every input. The work of a part is a value rather
/// than a closure so that it runs inside [`pulp::x86::V3::vectorize`] with every call inlined: a
/// closure there may be compiled out of line, without AVX2, and then every intrinsic in it becomes
/// a function call.
struct Rows<'a> {
    matrix: &'a Q4_1Matrix,
    kernel: Kernel,
    inputs: &'a [Q8Vector],
    first: usize,
    out: &'a mut [f32],
}

impl pulp::NullaryFnOnce for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Rows { matrix, kernel, inputs, first, out } = self;
        let nb = matrix.blocks_per_row();
        for (i, values) in out.chunks_exact_mut(inputs.len()).enumerate() {
            let blocks = (first + i) * nb..(first + i + 1) * nb;
            let (scales, quants) = (&matrix.scales[blocks.clone()], &matrix.quants[blocks]);
            for (value, input) in values.iter_mut().zip(inputs) {
                *value = kernel.row_dot(scales, quants, input);
            }
        }
    }
}

/// Blocks dequantised into `out` (see [`Rows`] for why a value and not a closure).
struct Dequantize<'a> {
    scales: &'a [u32],
    quants: &'a [[u8; 16]],
    out: &'a mut [f32],
}

impl pulp::NullaryFnOnce for Dequantize<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        dequantize_blocks(self.scales, self.quants, self.out);
    }
}

#[inline(always)]
fn dequantize_blocks(scales: &[u32], quants: &[[u8; 16]], out: &mut [f32]) {
    for ((scale, nibbles), out) in scales.iter().zip(quants).zip(out.chunks_exact_mut(BLOCK)) {
        let (d, m) = (f16_to_f32(*scale as u16), f16_to_f32((*scale >> 16) as u16));
        let (low, high) = out.split_at_mut(BLOCK / 2);
        for ((byte, low), high) in nibbles.iter().zip(low).zip(high) {
            *low = f32::from(byte & 0x0f) * d + m;
            *high = f32::from(byte >> 4) * d + m;
        }
    }
}

/// One activation row quantised for the product (ggml's Q8_1, with f32 scales).
struct Q8Vector {
    /// Per block: `dx`; zero-padded to a multiple of [`SCALE_GROUP`] blocks.
    scales: Vec<f32>,
    /// Per block: `dx · Σ p_j`; padded like `scales`.
    sums: Vec<f32>,
    /// Per block: `p_j = round(x_j / dx)`, `dx = max |x_j| / 127`.
    quants: Vec<[i8; 32]>,
}

impl Q8Vector {
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
                *q = (v * inverse).round() as i8;
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
enum Kernel {
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

    #[inline(always)]
    fn row_dot(self, scales: &[u32], quants: &[[u8; 16]], x: &Q8Vector) -> f32 {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => x86::row_dot(simd, scales, quants, x),
            Kernel::Scalar => row_dot_scalar(scales, quants, x),
        }
    }
}

/// One row's dot product with `x`, block by block.
fn row_dot_scalar(scales: &[u32], quants: &[[u8; 16]], x: &Q8Vector) -> f32 {
    let mut total = 0.0f32;
    for (((scale, nibbles), p), (dx, sx)) in
        scales.iter().zip(quants).zip(&x.quants).zip(x.scales.iter().zip(&x.sums))
    {
        let (d, m) = (f16_to_f32(*scale as u16), f16_to_f32((*scale >> 16) as u16));
        let (low, high) = p.split_at(BLOCK / 2);
        let mut dot = 0i32;
        for ((byte, pl), ph) in nibbles.iter().zip(low).zip(high) {
            dot += i32::from(byte & 0x0f) * i32::from(*pl) + i32::from(byte >> 4) * i32::from(*ph);
        }
        total += d * dx * dot as f32 + m * sx;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Q8Vector, SCALE_GROUP, TWO_POW_112};
    use core::arch::x86_64::{__m128i, __m256, __m256i};
    use pulp::x86::V3;

    /// [`super::f16_to_f32`] on the low halves of eight 32-bit lanes.
    #[inline(always)]
    fn halves_to_f32(simd: V3, bits: __m256i) -> __m256 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let magnitude = avx2._mm256_and_si256(bits, avx._mm256_set1_epi32(0x7fff));
        let sign = avx2._mm256_and_si256(bits, avx._mm256_set1_epi32(0x8000));
        let f32_bits =
            avx2._mm256_or_si256(avx2._mm256_slli_epi32::<13>(magnitude), avx2._mm256_slli_epi32::<16>(sign));
        avx._mm256_mul_ps(pulp::cast(f32_bits), avx._mm256_set1_ps(TWO_POW_112))
    }

    /// `Σ_j q_j · p_j` of one block, as eight partial sums.
    #[inline(always)]
    fn block_dot(simd: V3, nibbles: &[u8; 16], p: &[i8; 32]) -> __m256 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let bytes: __m128i = pulp::cast(*nibbles);
        // Weights 0..16 from the low nibbles in the low lane, 16..32 from the high ones above.
        let q = avx._mm256_set_m128i(simd.sse2._mm_srli_epi16::<4>(bytes), bytes);
        let q = avx2._mm256_and_si256(q, avx._mm256_set1_epi8(0x0f));
        // u8 × i8 pairs summed to i16 (at most 2 · 15 · 128, no saturation), then to i32.
        let pairs = avx2._mm256_maddubs_epi16(q, pulp::cast::<[i8; 32], __m256i>(*p));
        avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(pairs, avx._mm256_set1_epi16(1)))
    }

    /// Running sums of a row's dot product: two for the blocks (alternating, so consecutive
    /// blocks do not wait on each other's multiply-add) and one for the `m · sx` terms.
    struct Sums {
        even: __m256,
        odd: __m256,
        mins: __m256,
    }

    /// Up to eight blocks whose scales are `scales` (zero-padded), with the activation blocks `p`
    /// and their scales and sums (zero-padded likewise, so padded lanes add nothing).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn group(
        simd: V3,
        sums: &mut Sums,
        scales: [u32; SCALE_GROUP],
        quants: &[[u8; 16]],
        p: &[[i8; 32]],
        dx: &[f32; SCALE_GROUP],
        sx: &[f32; SCALE_GROUP],
    ) {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let scales: __m256i = pulp::cast(scales);
        let d = halves_to_f32(simd, scales);
        let m = halves_to_f32(simd, avx2._mm256_srli_epi32::<16>(scales));
        sums.mins = fma._mm256_fmadd_ps(m, pulp::cast(*sx), sums.mins);
        let scale: [f32; SCALE_GROUP] = pulp::cast(avx._mm256_mul_ps(d, pulp::cast(*dx)));
        let n = quants.len().min(p.len());
        let mut i = 0;
        while i + 1 < n {
            sums.even = fma._mm256_fmadd_ps(
                block_dot(simd, &quants[i], &p[i]),
                avx._mm256_set1_ps(scale[i]),
                sums.even,
            );
            let j = i + 1;
            sums.odd = fma._mm256_fmadd_ps(
                block_dot(simd, &quants[j], &p[j]),
                avx._mm256_set1_ps(scale[j]),
                sums.odd,
            );
            i += 2;
        }
        if i < n {
            sums.even = fma._mm256_fmadd_ps(
                block_dot(simd, &quants[i], &p[i]),
                avx._mm256_set1_ps(scale[i]),
                sums.even,
            );
        }
    }

    /// One row's dot product with `x`: the same sums as [`super::row_dot_scalar`], with eight
    /// blocks' scales converted at once.
    #[inline(always)]
    pub(super) fn row_dot(simd: V3, scales: &[u32], quants: &[[u8; 16]], x: &Q8Vector) -> f32 {
        let avx = simd.avx;
        let zero = avx._mm256_setzero_ps();
        let mut sums = Sums { even: zero, odd: zero, mins: zero };
        let (full, rest) = scales.as_chunks::<SCALE_GROUP>();
        let (quants, rest_quants) = quants.split_at(full.len() * SCALE_GROUP);
        let (p, rest_p) = x.quants.split_at(full.len() * SCALE_GROUP);
        let (dx, sx) = (x.scales.as_chunks::<SCALE_GROUP>().0, x.sums.as_chunks::<SCALE_GROUP>().0);
        let groups = full.iter().zip(quants.as_chunks::<SCALE_GROUP>().0).zip(p.as_chunks::<SCALE_GROUP>().0);
        for (((scales, quants), p), (dx, sx)) in groups.zip(dx.iter().zip(sx)) {
            group(simd, &mut sums, *scales, quants, p, dx, sx);
        }
        if !rest.is_empty() {
            let mut padded = [0u32; SCALE_GROUP];
            padded[..rest.len()].copy_from_slice(rest);
            if let (Some(dx), Some(sx)) = (dx.get(full.len()), sx.get(full.len())) {
                group(simd, &mut sums, padded, rest_quants, rest_p, dx, sx);
            }
        }
        let total: [f32; 8] =
            pulp::cast(avx._mm256_add_ps(avx._mm256_add_ps(sums.even, sums.odd), sums.mins));
        total.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{Device, Tensor};

    /// Deterministic values in `-1..1` (xorshift).
    fn random(n: usize, seed: u64) -> Vec<f32> {
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

    fn q4_1(rows: usize, cols: usize, seed: u64) -> (QTensor, Q4_1Matrix) {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        // Shift some rows so that `m` takes both signs and several magnitudes.
        let w = w
            .broadcast_add(&Tensor::from_vec(random(rows, seed + 1), (rows, 1), &Device::Cpu).unwrap())
            .unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let matrix = Q4_1Matrix::from_qtensor(&q).unwrap();
        (q, matrix)
    }

    /// `x · Wᵀ` with candle's dequantised weights, in f32.
    fn reference(q: &QTensor, x: &[f32], m: usize) -> Vec<f32> {
        let (_, cols) = q.shape().dims2().unwrap();
        let w = q.dequantize(&Device::Cpu).unwrap();
        let x = Tensor::from_vec(x.to_vec(), (m, cols), &Device::Cpu).unwrap();
        x.matmul(&w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The largest difference, relative to the largest value of `expected`.
    fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
        assert_eq!(actual.len(), expected.len());
        let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        actual.iter().zip(expected).fold(0.0f32, |m, (a, e)| m.max((a - e).abs())) / scale
    }

    #[test]
    fn the_blocks_are_ggml_q4_1() {
        let (q, matrix) = q4_1(4, 64, 1);
        let dense = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(matrix.dequantize(), dense);
        let mut scalar = vec![0.0; dense.len()];
        dequantize_blocks(&matrix.scales, &matrix.quants, &mut scalar);
        assert_eq!(scalar, dense);
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
    fn products_match_the_dequantised_weights() {
        // Block counts per row that fill whole groups of eight scales, and that leave a remainder
        // (576 = 18 blocks, SmolLM2's width).
        for (rows, cols, m) in [(96, 576, 1), (40, 256, 1), (33, 1536, 3), (100, 576, 15)] {
            let (q, matrix) = q4_1(rows, cols, (rows * cols) as u64);
            let x = random(m * cols, 7);
            let expected = reference(&q, &x, m);
            let actual = matrix.matmul(&x, m).unwrap();
            // Only the activations' 8-bit quantisation separates the two.
            let error = relative_error(&actual, &expected);
            assert!(error < 0.01, "{rows}×{cols}, {m} inputs: relative error {error}");
        }
    }

    #[test]
    fn the_scalar_kernel_computes_what_the_simd_one_does() {
        let (_, matrix) = q4_1(64, 576, 3);
        let x = random(2 * 576, 11);
        let simd = matrix.matmul_with(Kernel::detect(), &x, 2).unwrap();
        let scalar = matrix.matmul_with(Kernel::Scalar, &x, 2).unwrap();
        // The same integer sums and scales; only the order of the f32 additions differs.
        assert!(relative_error(&simd, &scalar) < 1e-5);
    }

    #[test]
    fn stacked_matrices_give_the_separate_products() {
        let (_, a) = q4_1(32, 576, 5);
        let (_, b) = q4_1(64, 576, 6);
        let x = random(576, 9);
        let (ya, yb) = (a.matmul(&x, 1).unwrap(), b.matmul(&x, 1).unwrap());
        let stacked = Q4_1Matrix::stack(vec![a, b]).unwrap();
        assert_eq!(stacked.dims(), (96, 576));
        assert_eq!(stacked.matmul(&x, 1).unwrap(), [ya, yb].concat());
    }
}
