//! Products over Q6_K weights.
//!
//! # The Q6_K super-block (ggml's `block_q6_K`, candle's `BlockQ6K`)
//!
//! 256 consecutive weights of a row in 210 bytes: 128 bytes `ql` of low nibbles, 64 bytes `qh` of
//! high bit pairs, sixteen `i8` scales `sc_k` (one per 16 weights), then `d` (f16). Weight `w` is
//! `d·sc_{w/16} · (q_w − 32)` with `q_w < 64`. Each half `n` of the super-block (128 weights)
//! takes its four 32-weight sub-blocks `t` from `ql[64n .. 64n + 64]` and `qh[32n .. 32n + 32]`:
//! weight `l` of sub-block `t` has its low four bits in the low (`t < 2`) or high nibble of byte
//! `ql[64n + 32·(t % 2) + l]` and its high two in bits `2t, 2t + 1` of `qh[32n + l]`.
//! [`Matrix`](super::Matrix) keeps 210 bytes too, the values in the
//! [interleaved](super::interleave) order: vector `g`'s low bits in the low (`g` even) or high
//! nibbles of `ql[32·(g / 2) ..]`, its high bits in bits `2·(g % 4)` and up of `qh[32·(g / 4) ..]`.
//!
//! # The dot product
//!
//! Against activations with one scale per super-block, `x ≈ dx · p`, and `Σ p` over each 16
//! ([`Q8Vector::sums16`](super::Q8Vector)):
//!
//! `d·dx · Σ_k sc_k · (Σ_w q_w·p_w − 32 · Σ_w p_w)` (`w` over the 16 weights of scale `k`)
//!
//! With AVX2, per 32 weights one `maddubs` (6-bit values × activations, to i16 pairs); the pairs
//! of two vectors add up as i16 (at most 2 · 2 · 63 · 127) and one `madd` by the scales (in the
//! interleaved order, vectors `0..4` hold the first 16 weights of each sub-block, `4..8` the
//! last) takes them to i32. The offset is one `madd` of the scales by the activation sums per
//! super-block (ggml spends another `maddubs` per 32 weights on it), and there is one conversion
//! to f32 per 256 weights.

use super::{BLOCK, Format, Kernel, Q8Vector, QK_K, deinterleave, f16_to_f32, interleave};
use candle_core::quantized::GgmlDType;

/// The Q6_K format.
pub(crate) struct Q6K;

/// A Q6_K super-block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    /// The low four bits of the interleaved vectors `2j` (low nibbles) and `2j + 1` (high).
    ql: [[u8; 32]; 4],
    /// The high two bits of the interleaved vectors `4h + t`, in bits `2t, 2t + 1`.
    qh: [[u8; 32]; 2],
    /// One scale per 16 weights.
    scales: [i8; 16],
    /// The f16 bits of `d`.
    d: u16,
}

impl Block {
    /// `q` of the 256 weights, in order.
    fn values(&self) -> [u8; QK_K] {
        let vectors = std::array::from_fn(|g| {
            std::array::from_fn(|b| {
                let low = (self.ql[g / 2][b] >> (4 * (g % 2))) & 0x0f;
                low | ((self.qh[g / 4][b] >> (2 * (g % 4))) & 3) << 4
            })
        });
        let sub_blocks: [[u8; 32]; 8] = deinterleave(&vectors);
        std::array::from_fn(|w| sub_blocks[w / BLOCK][w % BLOCK])
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
        let vectors = interleave(&std::array::from_fn(|s| {
            std::array::from_fn(|l| {
                let (n, t) = (s / 4, s % 4);
                let low = (ql[64 * n + 32 * (t % 2) + l] >> (4 * (t / 2))) & 0x0f;
                low | ((qh[32 * n + l] >> (2 * t)) & 3) << 4
            })
        }));
        Some((
            (),
            Block {
                ql: std::array::from_fn(|j| {
                    std::array::from_fn(|b| vectors[2 * j][b] & 0x0f | (vectors[2 * j + 1][b] & 0x0f) << 4)
                }),
                qh: std::array::from_fn(|h| {
                    std::array::from_fn(|b| {
                        (0..4).fold(0, |bits, t| bits | (vectors[4 * h + t][b] >> 4) << (2 * t))
                    })
                }),
                scales: scales.map(|s| s as i8),
                d: u16::from_le_bytes(*d),
            },
        ))
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
                let p = deinterleave(p);
                let mut dot = 0i32;
                for (((q, p), sc), sum) in
                    q.chunks_exact(16).zip(p.as_flattened().chunks_exact(16)).zip(block.scales).zip(sums16)
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

    /// `pshufb` controls that double the even (first 16 weights of each sub-block) or odd (last
    /// 16) scales, one per pair of bytes of an interleaved vector.
    const FIRST_HALVES: [u8; 16] = [0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14];
    const SECOND_HALVES: [u8; 16] = [1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15];

    /// Interleaved vector `4h + T` of a block: its 6-bit values, one per byte.
    #[inline(always)]
    fn values<const T: usize>(simd: V3, block: &Block, h: usize) -> __m256i {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let ql: __m256i = pulp::cast(block.ql[2 * h + T / 2]);
        let qh: __m256i = pulp::cast(block.qh[h]);
        let low = if T.is_multiple_of(2) { ql } else { avx2._mm256_srli_epi16::<4>(ql) };
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

    /// Adds interleaved vectors `4h + T0` and `4h + T1` (`T1 = T0 + 1`) of super-block `b` of each
    /// row, times their scales, to `dots`.
    #[inline(always)]
    fn pair<const T0: usize, const T1: usize, const R: usize>(
        simd: V3,
        blocks: [&[Block]; R],
        b: usize,
        h: usize,
        p: &[[i8; 32]; 8],
        scales: &[__m256i; R],
        dots: &mut [__m256i; R],
    ) {
        let avx2 = simd.avx2;
        let p0: __m256i = pulp::cast(p[4 * h + T0]);
        let p1: __m256i = pulp::cast(p[4 * h + T1]);
        for r in 0..R {
            let block = &blocks[r][b];
            let pairs = avx2._mm256_add_epi16(
                avx2._mm256_maddubs_epi16(values::<T0>(simd, block, h), p0),
                avx2._mm256_maddubs_epi16(values::<T1>(simd, block, h), p1),
            );
            dots[r] = avx2._mm256_add_epi32(dots[r], avx2._mm256_madd_epi16(pairs, scales[r]));
        }
    }

    /// [`super::Q6K::rows_dot`]: the same sums as its scalar loop, each activation vector loaded
    /// once for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(simd: V3, blocks: [&[Block]; R], x: &Q8Vector) -> [f32; R] {
        let (avx, avx2, fma, ssse3) = (simd.avx, simd.avx2, simd.fma, simd.ssse3);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let activations = x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(&x.sums16);
        for (b, ((p, dx), sums16)) in activations.enumerate() {
            let sums16: __m256i = pulp::cast(*sums16);
            let mut halves = [[avx._mm256_setzero_si256(); R]; 2];
            let mut dots = [avx._mm256_setzero_si256(); R];
            for r in 0..R {
                let scales: __m128i = pulp::cast(blocks[r][b].scales);
                // −32 · Σ_k sc_k · Σ p over scale k's 16 weights.
                let offset = avx2._mm256_madd_epi16(avx2._mm256_cvtepi8_epi16(scales), sums16);
                dots[r] = avx2._mm256_sub_epi32(dots[r], avx2._mm256_slli_epi32::<5>(offset));
                halves[0][r] =
                    avx2._mm256_cvtepi8_epi16(ssse3._mm_shuffle_epi8(scales, pulp::cast(FIRST_HALVES)));
                halves[1][r] =
                    avx2._mm256_cvtepi8_epi16(ssse3._mm_shuffle_epi8(scales, pulp::cast(SECOND_HALVES)));
            }
            for (h, scales) in halves.iter().enumerate() {
                pair::<0, 1, R>(simd, blocks, b, h, p, scales, &mut dots);
                pair::<2, 3, R>(simd, blocks, b, h, p, scales, &mut dots);
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
