//! Products over Q5_K weights.
//!
//! # The Q5_K super-block (ggml's `block_q5_K`, candle's `BlockQ5K`)
//!
//! Q4_K's super-block ([`q4_k`](super::q4_k)) with a fifth bit per weight: 176 bytes of `d` and
//! `dmin` (f16), the same 12 bytes of 6-bit scales and minimums, 32 bytes `qh` whose byte `l`
//! holds in bit `s` the high bit of weight `l` of sub-block `s`, then the 128 bytes of low
//! nibbles laid out as Q4_K's. Weight `l` of sub-block `s` is `d·sc_s · q − dmin·m_s`, `q < 32`.
//! [`Matrix`](super::Matrix) keeps 176 bytes too, reordered as Q4_K's, the high bits in the
//! [interleaved](super::interleave) order too: bit `g` of byte `b` of `qh` for byte `b` of
//! vector `g`.
//!
//! # The dot product
//!
//! Q4_K's, with each vector's high bits shifted to bit 4 of its bytes and or-ed in before the
//! `maddubs` (5-bit values are still unsigned bytes). The i16 pairs of only four vectors add up
//! before a `madd` (at most 4 · 2 · 31 · 127), so there are two per super-block.

use super::q4_k::{Header, gguf_nibbles, sub_block_dots};
use super::{BLOCK, Format, Kernel, Q8Vector, QK_K, deinterleave, f16_to_f32, interleave};
use candle_core::quantized::GgmlDType;

/// The Q5_K format.
pub(crate) struct Q5K;

/// A Q5_K super-block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    head: Header,
    /// Byte `b`, bit `g`: the high bit of byte `b` of the interleaved vector `g`.
    qh: [u8; 32],
    /// The low four bits of the interleaved vectors `2j` (low nibbles) and `2j + 1` (high).
    qs: [[u8; 32]; 4],
}

impl Block {
    /// `q` of the 256 weights, interleaved.
    fn values(&self) -> [[u8; 32]; 8] {
        std::array::from_fn(|g| {
            std::array::from_fn(|b| {
                (self.qs[g / 2][b] >> (4 * (g % 2))) & 0x0f | ((self.qh[b] >> g) & 1) << 4
            })
        })
    }
}

impl Format for Q5K {
    const DTYPE: GgmlDType = GgmlDType::Q5K;
    const BLOCK_LEN: usize = QK_K;
    const BLOCK_BYTES: usize = 176;
    /// Kept in the block.
    type Scale = ();
    type Quants = Block;

    fn split(block: &[u8]) -> Option<((), Block)> {
        let (head, rest) = block.split_first_chunk::<16>()?;
        let (qh, qs) = rest.split_first_chunk::<32>()?;
        let low = gguf_nibbles(qs.try_into().ok()?);
        let vectors = interleave(&std::array::from_fn(|s| {
            std::array::from_fn(|l| low[s][l] | ((qh[l] >> s) & 1) << 4)
        }));
        Some((
            (),
            Block {
                head: Header::new(head),
                qh: std::array::from_fn(|b| (0..8).fold(0, |bits, g| bits | (vectors[g][b] >> 4) << g)),
                qs: std::array::from_fn(|j| {
                    std::array::from_fn(|b| vectors[2 * j][b] & 0x0f | (vectors[2 * j + 1][b] & 0x0f) << 4)
                }),
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
            let activations =
                x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(x.sums.as_chunks::<8>().0);
            for (block, ((p, dx), sx)) in blocks[r].iter().zip(activations) {
                let (sc, m) = block.head.scales_and_mins();
                let dots = sub_block_dots(&block.values(), p);
                let dot: i32 = dots.iter().zip(sc).map(|(dot, sc)| dot * i32::from(sc)).sum();
                let mins: f32 = m.iter().zip(sx).map(|(m, sx)| f32::from(*m) * sx).sum();
                total += f16_to_f32(block.head.d()) * dx * dot as f32 - f16_to_f32(block.head.dmin()) * mins;
            }
            total
        })
    }

    #[inline(always)]
    fn dequantize((): (), block: &Block, out: &mut [f32]) {
        let (d, dmin) = (f16_to_f32(block.head.d()), f16_to_f32(block.head.dmin()));
        let (sc, m) = block.head.scales_and_mins();
        let values = deinterleave(&block.values());
        for (((out, q), sc), m) in out.chunks_exact_mut(BLOCK).zip(values).zip(sc).zip(m) {
            // In candle's order of operations, so that the values are the same to the bit.
            let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
            for (out, q) in out.iter_mut().zip(q) {
                *out = scale * f32::from(q) - min;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::q4_k::x86::unpack;
    use super::super::x86::row_sums;
    use super::super::{Q8Vector, f16_to_f32};
    use super::Block;
    use core::arch::x86_64::{__m256, __m256i};
    use pulp::x86::V3;

    /// [`super::Q5K::rows_dot`]: the same sums as its scalar loop, each activation vector loaded
    /// once for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(simd: V3, blocks: [&[Block]; R], x: &Q8Vector) -> [f32; R] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let (low, fifth) = (avx._mm256_set1_epi8(0x0f), avx._mm256_set1_epi8(0x10));
        let activations = x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(x.sums.as_chunks::<8>().0);
        for (b, ((p, dx), sx)) in activations.enumerate() {
            let sx: __m256 = pulp::cast(*sx);
            let mut high = [avx._mm256_setzero_si256(); R];
            let mut scales = [avx._mm256_setzero_si256(); R];
            let mut dots = [avx._mm256_setzero_si256(); R];
            for r in 0..R {
                let block = &blocks[r][b];
                let (sc, mins) = unpack(simd, &block.head);
                scales[r] = sc;
                high[r] = pulp::cast(block.qh);
                acc[r] = fma._mm256_fnmadd_ps(mins, sx, acc[r]);
            }
            for half in 0..2 {
                let mut pairs = [avx._mm256_setzero_si256(); R];
                for j in 2 * half..2 * half + 2 {
                    let (p_low, p_high): (__m256i, __m256i) =
                        (pulp::cast(p[2 * j]), pulp::cast(p[2 * j + 1]));
                    for r in 0..R {
                        // Bits 2j and 2j + 1 of `qh` were shifted down to bits 0 and 1 (16-bit
                        // shifts by at most 4 never move a bit 4 across bytes).
                        let h = high[r];
                        let h_low = avx2._mm256_and_si256(avx2._mm256_slli_epi16::<4>(h), fifth);
                        let h_high = avx2._mm256_and_si256(avx2._mm256_slli_epi16::<3>(h), fifth);
                        high[r] = avx2._mm256_srli_epi16::<2>(h);
                        let q: __m256i = pulp::cast(blocks[r][b].qs[j]);
                        let q_low = avx2._mm256_or_si256(avx2._mm256_and_si256(q, low), h_low);
                        let q_high = avx2._mm256_or_si256(
                            avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(q), low),
                            h_high,
                        );
                        let sums = avx2._mm256_add_epi16(
                            avx2._mm256_maddubs_epi16(q_low, p_low),
                            avx2._mm256_maddubs_epi16(q_high, p_high),
                        );
                        pairs[r] = avx2._mm256_add_epi16(pairs[r], sums);
                    }
                }
                for r in 0..R {
                    dots[r] = avx2._mm256_add_epi32(dots[r], avx2._mm256_madd_epi16(pairs[r], scales[r]));
                }
            }
            for r in 0..R {
                let scale = avx._mm256_set1_ps(f16_to_f32(blocks[r][b].head.d()) * dx);
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
        super::super::tests::check_format::<super::Q5K>();
    }
}
