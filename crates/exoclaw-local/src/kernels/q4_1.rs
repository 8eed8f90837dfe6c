//! Products over Q4_1 weights, read as the GGUF stores them.
//!
//! # The Q4_1 block (ggml's `block_q4_1`, candle's `BlockQ4_1`)
//!
//! 32 consecutive weights of a row in 20 bytes: `d` (f16), `m` (f16), then 16 bytes of nibbles.
//! Byte `i` holds weight `i` in its low nibble and weight `i + 16` in its high nibble, and weight
//! `j = d · q_j + m` with `q_j ∈ 0..16`. [`Matrix`](super::Matrix) keeps the same 20 bytes per
//! block: the four bytes of `d` and `m` as one `u32` (`d` in the low half) and the 16 bytes of
//! nibbles.
//!
//! # The dot product
//!
//! Against an activation block `x_j ≈ dx · p_j` with `sx = dx · Σ p_j` ([`Q8Vector`]):
//!
//! `Σ_j (d·q_j + m) · dx·p_j = d·dx · Σ_j q_j·p_j + m · sx`
//!
//! With AVX2, `Σ q_j·p_j` is one `maddubs` (unsigned nibbles × signed bytes) and one `madd`.
//! Q4_1 is 20 bytes per 32 weights where the Q8_0 it used to be re-quantised to (for candle's fast
//! kernel) is 34: decoding reads 40 % fewer bytes.

use super::{BLOCK, Format, Kernel, Q8Vector, f16_to_f32};
use candle_core::quantized::GgmlDType;

/// The Q4_1 format.
pub(crate) struct Q4_1;

impl Format for Q4_1 {
    const DTYPE: GgmlDType = GgmlDType::Q4_1;
    const BLOCK_BYTES: usize = 20;
    /// The f16 bits of `d` (low half) and `m` (high half), as in the GGUF block.
    type Scale = u32;
    /// The 16 bytes of nibbles.
    type Quants = [u8; 16];

    fn split(block: &[u8]) -> Option<(u32, [u8; 16])> {
        let (scale, nibbles) = block.split_first_chunk::<4>()?;
        Some((u32::from_le_bytes(*scale), nibbles.try_into().ok()?))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[u32]; R],
        quants: [&[[u8; 16]]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Avx2(simd) = kernel {
            return x86::rows_dot(simd, scales, quants, x);
        }
        let _ = kernel;
        std::array::from_fn(|r| {
            let mut total = 0.0f32;
            for (((scale, nibbles), p), (dx, sx)) in
                scales[r].iter().zip(quants[r]).zip(&x.quants).zip(x.scales.iter().zip(&x.sums))
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
        })
    }

    #[inline(always)]
    fn dequantize(scale: u32, nibbles: &[u8; 16], out: &mut [f32]) {
        let (d, m) = (f16_to_f32(scale as u16), f16_to_f32((scale >> 16) as u16));
        let (low, high) = out.split_at_mut(BLOCK / 2);
        for ((byte, low), high) in nibbles.iter().zip(low).zip(high) {
            *low = f32::from(byte & 0x0f) * d + m;
            *high = f32::from(byte >> 4) * d + m;
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
    fn block_dot(simd: V3, nibbles: &[u8; 16], p: __m256i) -> __m256 {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let bytes: __m128i = pulp::cast(*nibbles);
        // Weights 0..16 from the low nibbles in the low lane, 16..32 from the high ones above.
        let q = avx._mm256_set_m128i(simd.sse2._mm_srli_epi16::<4>(bytes), bytes);
        let q = avx2._mm256_and_si256(q, avx._mm256_set1_epi8(0x0f));
        // u8 × i8 pairs summed to i16 (at most 2 · 15 · 127, no saturation), then to i32.
        let pairs = avx2._mm256_maddubs_epi16(q, p);
        avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(pairs, avx._mm256_set1_epi16(1)))
    }

    /// [`super::Q4_1::rows_dot`]: the same sums as its scalar loop. Per group of eight blocks,
    /// each row's eight `(d, m)` pairs are converted at once and its `m · sx` terms added as one
    /// vector; then each activation block is loaded once for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(
        simd: V3,
        scales: [&[u32]; R],
        quants: [&[[u8; 16]]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let blocks = x.quants.len();
        let groups = x.scales.as_chunks::<SCALE_GROUP>().0.iter().zip(x.sums.as_chunks::<SCALE_GROUP>().0);
        for (g, (dx, sx)) in groups.enumerate() {
            let start = g * SCALE_GROUP;
            let end = blocks.min(start + SCALE_GROUP);
            let mut block_scales = [[0.0f32; SCALE_GROUP]; R];
            for r in 0..R {
                let bits: __m256i = pulp::cast(scale_group(scales[r], start));
                let d = halves_to_f32(simd, bits);
                let m = halves_to_f32(simd, avx2._mm256_srli_epi32::<16>(bits));
                acc[r] = fma._mm256_fmadd_ps(m, pulp::cast(*sx), acc[r]);
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
        super::super::tests::check_format::<super::Q4_1>();
    }
}
