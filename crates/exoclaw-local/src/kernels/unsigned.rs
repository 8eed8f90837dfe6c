//! The products the 32-weight formats of unsigned 4- or 5-bit values share: Q4_0, Q5_0
//! (`w_j = d · (q_j − 8)` or `d · (q_j − 16)`) and Q4_1, Q5_1 (`w_j = d · q_j + m`, each block
//! with its own `m`).
//!
//! # The dot product
//!
//! Against an activation block `x_j ≈ dx · p_j` with `sx = dx · Σ p_j` ([`Q8Vector`]), with
//! `m = −8·d` or `−16·d` for the formats without one:
//!
//! `Σ_j (d·q_j + m) · dx·p_j = d·dx · Σ_j q_j·p_j + m · sx`
//!
//! The `q_j` multiply as the unsigned bytes they are: with AVX2, one `maddubs` (unsigned × signed
//! bytes to i16 pairs) and one `madd` (to i32) per block. Per group of eight blocks, each row's
//! eight `d` (and `m`) are converted at once and its `m · sx` terms added as one vector; then
//! each activation block is loaded once for all the rows computed together.

use super::{Kernel, Q8Vector, f16_to_f32};

/// A 32-weight block's quants, as unsigned values.
pub(crate) trait Values: Copy + Send + Sync {
    /// `q_j` of the 32 weights, in order.
    fn values(&self) -> [u8; 32];

    /// [`Values::values`] in the bytes of a vector.
    #[cfg(target_arch = "x86_64")]
    fn values_avx2(&self, simd: pulp::x86::V3) -> core::arch::x86_64::__m256i;
}

/// Q4_0's and Q4_1's 16 bytes: byte `i` holds weight `i` in its low nibble and weight `i + 16` in
/// its high nibble.
impl Values for [u8; 16] {
    fn values(&self) -> [u8; 32] {
        std::array::from_fn(|j| if j < 16 { self[j] & 0x0f } else { self[j - 16] >> 4 })
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn values_avx2(&self, simd: pulp::x86::V3) -> core::arch::x86_64::__m256i {
        x86::nibbles(simd, self)
    }
}

/// `Σ_j q_j · p_j` of one block.
fn dot(q: &impl Values, p: &[i8; 32]) -> i32 {
    q.values().iter().zip(p).map(|(q, p)| i32::from(*q) * i32::from(*p)).sum()
}

/// A block's scale bits: `d`, and `m` unless the format has a fixed offset.
pub(crate) trait Scale: Copy + Default + Send + Sync {
    /// `(d, m)`, with `m = offset · d` where the block has no `m` of its own.
    fn d_and_m(self, offset: f32) -> (f32, f32);

    /// The weights of a block of values `q`, computed as candle computes them (so that they are
    /// the same to the bit).
    fn dequantize(self, offset: f32, q: [u8; 32], out: &mut [f32]);

    /// [`Scale::d_and_m`] of eight blocks at once.
    #[cfg(target_arch = "x86_64")]
    fn d_and_m_avx2(
        simd: pulp::x86::V3,
        scales: [Self; super::SCALE_GROUP],
        offset: f32,
    ) -> (core::arch::x86_64::__m256, core::arch::x86_64::__m256);
}

/// Q4_0's and Q5_0's: the f16 bits of `d`.
impl Scale for u16 {
    fn d_and_m(self, offset: f32) -> (f32, f32) {
        let d = f16_to_f32(self);
        (d, offset * d)
    }

    #[inline(always)]
    fn dequantize(self, offset: f32, q: [u8; 32], out: &mut [f32]) {
        let d = f16_to_f32(self);
        for (out, q) in out.iter_mut().zip(q) {
            *out = (f32::from(q) + offset) * d;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn d_and_m_avx2(
        simd: pulp::x86::V3,
        scales: [u16; super::SCALE_GROUP],
        offset: f32,
    ) -> (core::arch::x86_64::__m256, core::arch::x86_64::__m256) {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let d = x86::halves_to_f32(simd, avx2._mm256_cvtepu16_epi32(pulp::cast(scales)));
        (d, avx._mm256_mul_ps(d, avx._mm256_set1_ps(offset)))
    }
}

/// Q4_1's and Q5_1's: the f16 bits of `d` (low half) and `m` (high half), as in the GGUF block.
impl Scale for u32 {
    fn d_and_m(self, _: f32) -> (f32, f32) {
        (f16_to_f32(self as u16), f16_to_f32((self >> 16) as u16))
    }

    #[inline(always)]
    fn dequantize(self, _: f32, q: [u8; 32], out: &mut [f32]) {
        let (d, m) = self.d_and_m(0.0);
        for (out, q) in out.iter_mut().zip(q) {
            *out = f32::from(q) * d + m;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn d_and_m_avx2(
        simd: pulp::x86::V3,
        scales: [u32; super::SCALE_GROUP],
        _: f32,
    ) -> (core::arch::x86_64::__m256, core::arch::x86_64::__m256) {
        let bits = pulp::cast(scales);
        let m = x86::halves_to_f32(simd, simd.avx2._mm256_srli_epi32::<16>(bits));
        (x86::halves_to_f32(simd, bits), m)
    }
}

/// The dot products of `R` rows of weights `d · q_j + m` with each of the `T` inputs `xs` (see
/// [`super::Format::rows_dot_inputs`]); `m = offset · d` for blocks without an `m` of their own.
#[inline(always)]
pub(super) fn rows_dot<S: Scale, Q: Values, const R: usize, const T: usize>(
    kernel: Kernel,
    offset: f32,
    scales: [&[S]; R],
    quants: [&[Q]; R],
    xs: [&Q8Vector; T],
) -> [[f32; R]; T] {
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Avx2(simd) = kernel {
        return x86::rows_dot(simd, offset, scales, quants, xs);
    }
    let _ = kernel;
    std::array::from_fn(|t| {
        let x = xs[t];
        std::array::from_fn(|r| {
            let mut total = 0.0f32;
            for (((scale, q), p), (dx, sx)) in
                scales[r].iter().zip(quants[r]).zip(&x.quants).zip(x.scales.iter().zip(&x.sums))
            {
                let (d, m) = scale.d_and_m(offset);
                total += d * dx * dot(q, p) as f32 + m * sx;
            }
            total
        })
    })
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::x86::{dot, row_sums, scale_group};
    pub(super) use super::super::x86::{halves_to_f32, nibbles};
    use super::super::{Q8Vector, SCALE_GROUP};
    use super::{Scale, Values};
    use core::arch::x86_64::__m256i;
    use pulp::x86::V3;

    /// [`super::rows_dot`]: the same sums as its scalar loop. Each row's scales are converted
    /// once per group of eight blocks and each weight block unpacked once, for all the inputs;
    /// every input's sums see the same operations in the same order whatever `T` is, so an
    /// input's results do not depend on the others.
    #[inline(always)]
    pub(super) fn rows_dot<S: Scale, Q: Values, const R: usize, const T: usize>(
        simd: V3,
        offset: f32,
        scales: [&[S]; R],
        quants: [&[Q]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        let (avx, fma) = (simd.avx, simd.fma);
        let mut acc = [[avx._mm256_setzero_ps(); R]; T];
        let blocks = xs[0].quants.len();
        let groups = xs[0].scales.len() / SCALE_GROUP;
        for g in 0..groups {
            let start = g * SCALE_GROUP;
            let end = blocks.min(start + SCALE_GROUP);
            let mut block_scales = [[[0.0f32; SCALE_GROUP]; R]; T];
            let mut dx = [[0.0f32; SCALE_GROUP]; T];
            let mut sx = [[0.0f32; SCALE_GROUP]; T];
            for t in 0..T {
                dx[t] = xs[t].scales.as_chunks::<SCALE_GROUP>().0[g];
                sx[t] = xs[t].sums.as_chunks::<SCALE_GROUP>().0[g];
            }
            for r in 0..R {
                let (d, m) = S::d_and_m_avx2(simd, scale_group(scales[r], start), offset);
                for t in 0..T {
                    acc[t][r] = fma._mm256_fmadd_ps(m, pulp::cast(sx[t]), acc[t][r]);
                    block_scales[t][r] = pulp::cast(avx._mm256_mul_ps(d, pulp::cast(dx[t])));
                }
            }
            for i in start..end {
                for r in 0..R {
                    let q = quants[r][i].values_avx2(simd);
                    for t in 0..T {
                        let p: __m256i = pulp::cast(xs[t].quants[i]);
                        let products = dot(simd, q, p);
                        let scale = avx._mm256_set1_ps(block_scales[t][r][i - start]);
                        acc[t][r] = fma._mm256_fmadd_ps(products, scale, acc[t][r]);
                    }
                }
            }
        }
        let mut sums = [[0.0; R]; T];
        for t in 0..T {
            sums[t] = row_sums(simd, acc[t]);
        }
        sums
    }
}
