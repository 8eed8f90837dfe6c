//! Products over Q8_0 weights.
//!
//! # The Q8_0 block (ggml's `block_q8_0`, candle's `BlockQ8_0`)
//!
//! 32 consecutive weights of a row in 34 bytes: `d` (f16), then 32 `i8` values `q_j`, weight
//! `j = d · q_j`. [`Matrix`](super::Matrix) keeps the f16 bits of `d` and the 32 bytes apart.
//!
//! # The dot product
//!
//! Against an activation block `x_j ≈ dx · p_j` ([`Q8Vector`]): `d·dx · Σ_j q_j·p_j`. With AVX2,
//! `Σ q_j·p_j` is `maddubs(|q|, p·sign(q))` (maddubs multiplies unsigned by signed bytes; `p` is
//! never −128, so negating it cannot overflow) and one `madd`. Candle's own Q8_0 kernel computes
//! the same sums, but pays a function call and two scalar f16 conversions per row and block,
//! which made SmolLM2's 49152-row output matrix cost about a fifth of a generated token.

use super::{BLOCK, Format, Kernel, Q8Vector, f16_to_f32};
use candle_core::quantized::GgmlDType;

/// The Q8_0 format.
pub(crate) struct Q8_0;

impl Format for Q8_0 {
    const DTYPE: GgmlDType = GgmlDType::Q8_0;
    const BLOCK_LEN: usize = BLOCK;
    const BLOCK_BYTES: usize = 34;
    /// The f16 bits of `d`.
    type Scale = u16;
    /// The 32 values.
    type Quants = [i8; 32];

    fn split(block: &[u8]) -> Option<(u16, [i8; 32])> {
        let (scale, values) = block.split_first_chunk::<2>()?;
        let values: &[u8; 32] = values.try_into().ok()?;
        Some((u16::from_le_bytes(*scale), values.map(|v| v as i8)))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[u16]; R],
        quants: [&[[i8; 32]]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Avx2(simd) = kernel {
            return x86::rows_dot(simd, scales, quants, x);
        }
        let _ = kernel;
        std::array::from_fn(|r| {
            let mut total = 0.0f32;
            for ((scale, q), (p, dx)) in scales[r].iter().zip(quants[r]).zip(x.quants.iter().zip(&x.scales)) {
                let dot: i32 = q.iter().zip(p).map(|(q, p)| i32::from(*q) * i32::from(*p)).sum();
                total += f16_to_f32(*scale) * dx * dot as f32;
            }
            total
        })
    }

    #[inline(always)]
    fn dequantize(scale: u16, values: &[i8; 32], out: &mut [f32]) {
        let d = f16_to_f32(scale);
        for (out, q) in out.iter_mut().zip(values) {
            *out = f32::from(*q) * d;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{halves_to_f32, row_sums, scale_group};
    use super::super::{Q8Vector, SCALE_GROUP};
    use core::arch::x86_64::{__m128i, __m256, __m256i};
    use pulp::x86::V3;

    /// `Σ_j q_j · p_j` of one block, as eight partial sums.
    #[inline(always)]
    fn block_dot(simd: V3, q: &[i8; 32], p: __m256i) -> __m256 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let q: __m256i = pulp::cast(*q);
        // |q| × (p with q's sign) = q × p, as unsigned × signed bytes; pairs of products fit i16
        // (at most 2 · 128 · 127).
        let pairs = avx2._mm256_maddubs_epi16(avx2._mm256_abs_epi8(q), avx2._mm256_sign_epi8(p, q));
        avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(pairs, avx._mm256_set1_epi16(1)))
    }

    /// [`super::Q8_0::rows_dot`]: the same sums as its scalar loop. Per group of eight blocks,
    /// each row's eight scales are converted at once; then each activation block is loaded once
    /// for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(
        simd: V3,
        scales: [&[u16]; R],
        quants: [&[[i8; 32]]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let blocks = x.quants.len();
        for (g, dx) in x.scales.as_chunks::<SCALE_GROUP>().0.iter().enumerate() {
            let start = g * SCALE_GROUP;
            let end = blocks.min(start + SCALE_GROUP);
            let mut block_scales = [[0.0f32; SCALE_GROUP]; R];
            for r in 0..R {
                let bits: __m128i = pulp::cast(scale_group(scales[r], start));
                let d = halves_to_f32(simd, avx2._mm256_cvtepu16_epi32(bits));
                block_scales[r] = pulp::cast(avx._mm256_mul_ps(d, pulp::cast(*dx)));
            }
            for (i, p) in x.quants[start..end].iter().enumerate() {
                let p: __m256i = pulp::cast(*p);
                for r in 0..R {
                    let products = block_dot(simd, &quants[r][start + i], p);
                    acc[r] = fma._mm256_fmadd_ps(products, avx._mm256_set1_ps(block_scales[r][i]), acc[r]);
                }
            }
        }
        row_sums(simd, acc)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q8_0>();
    }
}
