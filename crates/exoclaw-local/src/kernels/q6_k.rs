//! Products over Q6_K weights, read as the GGUF stores them.
//!
//! # The Q6_K super-block (ggml's `block_q6_K`, candle's `BlockQ6K`)
//!
//! 256 consecutive weights of a row in 210 bytes: 128 bytes `ql` of low nibbles, 64 bytes `qh` of
//! high bit pairs, sixteen `i8` scales `sc_k` (one per 16 weights), then `d` (f16). Weight `w` is
//! `d·sc_{w/16} · (q_w − 32)` with `q_w < 64`. Each half `n` of the super-block (128 weights)
//! takes its four 32-weight sub-blocks `t` from `ql[64n .. 64n + 64]` and `qh[32n .. 32n + 32]`:
//! weight `l` of sub-block `t` has its low four bits in the low (`t < 2`) or high nibble of byte
//! `ql[64n + 32·(t % 2) + l]` and its high two in bits `2t, 2t + 1` of `qh[32n + l]`.
//! [`Matrix`](super::Matrix) keeps the blocks whole.
//!
//! # The dot product
//!
//! Against activations with one scale per super-block, `x ≈ dx · p`, and `Σ p` over each 16
//! ([`Q8Vector::sums16`](super::Q8Vector)):
//!
//! `d·dx · Σ_k sc_k · (Σ_w q_w·p_w − 32 · Σ_w p_w)` (`w` over the 16 weights of scale `k`)
//!
//! With AVX2, per 32 weights a `maddubs` (6-bit values × activations) and a `madd` by the two
//! scales of the sub-block's halves; the offset is one `madd` of the scales by the activation
//! sums per super-block (where ggml spends another `maddubs` per 32 weights), and there is one
//! conversion to f32 per 256 weights.

use super::{BLOCK, Format, Kernel, Q8Vector, QK_K, f16_to_f32};
use candle_core::quantized::GgmlDType;

/// The Q6_K format.
pub(crate) struct Q6K;

/// A Q6_K super-block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    /// The low four bits of each weight (see the module's documentation for the order).
    ql: [[u8; 32]; 4],
    /// The high two bits of each weight.
    qh: [[u8; 32]; 2],
    /// One scale per 16 weights.
    scales: [i8; 16],
    /// The f16 bits of `d`.
    d: u16,
}

impl Block {
    /// `q` of the 256 weights, in order.
    fn values(&self) -> [u8; QK_K] {
        std::array::from_fn(|w| {
            let (n, t, l) = (w / 128, w % 128 / BLOCK, w % BLOCK);
            let byte = self.ql[2 * n + t % 2][l];
            let low = if t < 2 { byte & 0x0f } else { byte >> 4 };
            low | (self.qh[n][l] >> (2 * t) & 3) << 4
        })
    }
}

impl Format for Q6K {
    const DTYPE: GgmlDType = GgmlDType::Q6K;
    const BLOCK_LEN: usize = QK_K;
    const BLOCK_BYTES: usize = 210;
    /// Kept in the block.
    type Scale = ();
    type Quants = Block;

    fn split(block: &[u8]) -> Option<((), Block)> {
        let (ql, rest) = block.split_first_chunk::<128>()?;
        let (qh, rest) = rest.split_first_chunk::<64>()?;
        let (scales, d) = rest.split_first_chunk::<16>()?;
        let d: &[u8; 2] = d.try_into().ok()?;
        let ql = ql.as_chunks::<32>().0.try_into().ok()?;
        let qh = qh.as_chunks::<32>().0.try_into().ok()?;
        Some(((), Block { ql, qh, scales: scales.map(|s| s as i8), d: u16::from_le_bytes(*d) }))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        _: [&[()]; R],
        blocks: [&[Block]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Avx2(simd) = kernel {
            return x86::rows_dot(simd, blocks, x);
        }
        let _ = kernel;
        std::array::from_fn(|r| {
            let mut total = 0.0f32;
            let activations = x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(&x.sums16);
            for (block, ((p, dx), sums16)) in blocks[r].iter().zip(activations) {
                let q = block.values();
                let p = p.as_flattened();
                let mut dot = 0i32;
                for (((q, p), sc), sum) in
                    q.chunks_exact(16).zip(p.chunks_exact(16)).zip(block.scales).zip(sums16)
                {
                    let sub: i32 = q.iter().zip(p).map(|(q, p)| i32::from(*q) * i32::from(*p)).sum();
                    dot += i32::from(sc) * (sub - 32 * i32::from(*sum));
                }
                total += f16_to_f32(block.d) * dx * dot as f32;
            }
            total
        })
    }

    #[inline(always)]
    fn dequantize((): (), block: &Block, out: &mut [f32]) {
        let d = f16_to_f32(block.d);
        for ((out, q), sc) in out.chunks_exact_mut(16).zip(block.values().chunks_exact(16)).zip(block.scales)
        {
            // In candle's order of operations, so that the values are the same to the bit.
            let scale = d * f32::from(sc);
            for (out, q) in out.iter_mut().zip(q) {
                *out = scale * f32::from(*q as i8 - 32);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::row_sums;
    use super::super::{Q8Vector, f16_to_f32};
    use super::Block;
    use core::arch::x86_64::{__m128i, __m256i};
    use pulp::x86::V3;

    /// `pshufb` controls for sub-block `t` of a half: 16-bit lane `2t` of the low 128 bits and
    /// `2t + 1` of the high ones (the scales of its two 16 weights) broadcast over each half.
    const SCALE_PAIRS: [[u8; 32]; 4] = {
        let mut controls = [[0; 32]; 4];
        let mut t = 0;
        while t < 4 {
            let mut i = 0;
            while i < 32 {
                controls[t][i] = (4 * t + 2 * (i / 16) + i % 2) as u8;
                i += 1;
            }
            t += 1;
        }
        controls
    };

    /// Sub-block `T` of half `n`: its 6-bit values, one per byte.
    #[inline(always)]
    fn values<const T: usize>(simd: V3, block: &Block, n: usize) -> __m256i {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let ql: __m256i = pulp::cast(block.ql[2 * n + T % 2]);
        let qh: __m256i = pulp::cast(block.qh[n]);
        let low = if T < 2 { ql } else { avx2._mm256_srli_epi16::<4>(ql) };
        // Bits 2T, 2T + 1 to bits 4, 5 (16-bit shifts by at most 4 move none across bytes).
        let high = match T {
            0 => avx2._mm256_slli_epi16::<4>(qh),
            1 => avx2._mm256_slli_epi16::<2>(qh),
            2 => qh,
            _ => avx2._mm256_srli_epi16::<2>(qh),
        };
        avx2._mm256_or_si256(
            avx2._mm256_and_si256(low, avx._mm256_set1_epi8(0x0f)),
            avx2._mm256_and_si256(high, avx._mm256_set1_epi8(0x30)),
        )
    }

    /// Adds sub-block `T` of half `n` of super-block `b` of each row, times its scales, to `dots`.
    #[inline(always)]
    fn sub_block<const T: usize, const R: usize>(
        simd: V3,
        blocks: [&[Block]; R],
        b: usize,
        n: usize,
        p: &[i8; 32],
        scales: &[__m256i; R],
        dots: &mut [__m256i; R],
    ) {
        let avx2 = simd.avx2;
        let p: __m256i = pulp::cast(*p);
        let control: __m256i = pulp::cast(SCALE_PAIRS[T]);
        for r in 0..R {
            let q = values::<T>(simd, &blocks[r][b], n);
            let pairs = avx2._mm256_maddubs_epi16(q, p);
            let scaled = avx2._mm256_madd_epi16(pairs, avx2._mm256_shuffle_epi8(scales[r], control));
            dots[r] = avx2._mm256_add_epi32(dots[r], scaled);
        }
    }

    /// [`super::Q6K::rows_dot`]: the same sums as its scalar loop, each activation block loaded
    /// once for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(simd: V3, blocks: [&[Block]; R], x: &Q8Vector) -> [f32; R] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let activations = x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(&x.sums16);
        for (b, ((p, dx), sums16)) in activations.enumerate() {
            let sums16: __m256i = pulp::cast(*sums16);
            let mut all_scales = [avx._mm256_setzero_si256(); R];
            let mut dots = [avx._mm256_setzero_si256(); R];
            for r in 0..R {
                let scales: __m128i = pulp::cast(blocks[r][b].scales);
                all_scales[r] = avx2._mm256_cvtepi8_epi16(scales);
                // −32 · Σ_k sc_k · Σ p over scale k's 16 weights.
                let offset = avx2._mm256_madd_epi16(all_scales[r], sums16);
                dots[r] = avx2._mm256_sub_epi32(dots[r], avx2._mm256_slli_epi32::<5>(offset));
            }
            for n in 0..2 {
                let mut scales = [avx._mm256_setzero_si256(); R];
                for r in 0..R {
                    scales[r] = if n == 0 {
                        avx2._mm256_permute2x128_si256::<0x00>(all_scales[r], all_scales[r])
                    } else {
                        avx2._mm256_permute2x128_si256::<0x11>(all_scales[r], all_scales[r])
                    };
                }
                sub_block::<0, R>(simd, blocks, b, n, &p[4 * n], &scales, &mut dots);
                sub_block::<1, R>(simd, blocks, b, n, &p[4 * n + 1], &scales, &mut dots);
                sub_block::<2, R>(simd, blocks, b, n, &p[4 * n + 2], &scales, &mut dots);
                sub_block::<3, R>(simd, blocks, b, n, &p[4 * n + 3], &scales, &mut dots);
            }
            for r in 0..R {
                let scale = avx._mm256_set1_ps(f16_to_f32(blocks[r][b].d) * dx);
                acc[r] = fma._mm256_fmadd_ps(avx._mm256_cvtepi32_ps(dots[r]), scale, acc[r]);
            }
        }
        row_sums(simd, acc)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q6K>();
    }
}
