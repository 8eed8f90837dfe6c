//! Products over Q5_K weights, read as the GGUF stores them.
//!
//! # The Q5_K super-block (ggml's `block_q5_K`, candle's `BlockQ5K`)
//!
//! Q4_K's super-block ([`q4_k`](super::q4_k)) with a fifth bit per weight: 176 bytes of `d` and
//! `dmin` (f16), the same 12 bytes of 6-bit scales and minimums, 32 bytes `qh` whose byte `l`
//! holds in bit `s` the high bit of weight `l` of sub-block `s`, then the 128 bytes of low
//! nibbles laid out as Q4_K's. Weight `l` of sub-block `s` is `d·sc_s · q − dmin·m_s`, `q < 32`.
//!
//! # The dot product
//!
//! Q4_K's, with each sub-block's high bits shifted to bit 4 of its bytes and or-ed in before the
//! `maddubs` (5-bit values are still unsigned bytes).

use super::q4_k::scale_bytes;
use super::{BLOCK, Format, Kernel, Q8Vector, QK_K, f16_to_f32};
use candle_core::quantized::GgmlDType;

/// The Q5_K format.
pub(crate) struct Q5K;

/// A Q5_K super-block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    /// The f16 bits of `d`.
    d: u16,
    /// The f16 bits of `dmin`.
    dmin: u16,
    /// The packed scales and minimums, as three little-endian words.
    scales: [u32; 3],
    /// Byte `l`, bit `s`: the high bit of weight `l` of sub-block `s`.
    qh: [u8; 32],
    /// Bytes `32j .. 32j + 32`: the low bits of sub-blocks `2j` (low nibbles) and `2j + 1` (high).
    qs: [[u8; 32]; 4],
}

impl Block {
    /// `q` of the 256 weights, in order.
    fn values(&self) -> [u8; QK_K] {
        std::array::from_fn(|w| {
            let (s, l) = (w / BLOCK, w % BLOCK);
            let byte = self.qs[s / 2][l];
            let low = if s % 2 == 0 { byte & 0x0f } else { byte >> 4 };
            low | (self.qh[l] >> s & 1) << 4
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
        let (d, rest) = block.split_first_chunk::<2>()?;
        let (dmin, rest) = rest.split_first_chunk::<2>()?;
        let (scales, rest) = rest.split_first_chunk::<12>()?;
        let (qh, rest) = rest.split_first_chunk::<32>()?;
        let (qs, []) = rest.as_chunks::<32>() else { return None };
        let scales = std::array::from_fn(|i| u32::from_le_bytes([0, 1, 2, 3].map(|b| scales[4 * i + b])));
        let (d, dmin) = (u16::from_le_bytes(*d), u16::from_le_bytes(*dmin));
        Some(((), Block { d, dmin, scales, qh: *qh, qs: qs.try_into().ok()? }))
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
                let (sc, m) = scale_bytes(block.scales);
                let q = block.values();
                let mut dot = 0i32;
                for ((q, p), sc) in q.chunks_exact(BLOCK).zip(p).zip(sc) {
                    let sub: i32 = q.iter().zip(p).map(|(q, p)| i32::from(*q) * i32::from(*p)).sum();
                    dot += i32::from(sc) * sub;
                }
                let mins: f32 = m.iter().zip(sx).map(|(m, sx)| f32::from(*m) * sx).sum();
                total += f16_to_f32(block.d) * dx * dot as f32 - f16_to_f32(block.dmin) * mins;
            }
            total
        })
    }

    #[inline(always)]
    fn dequantize((): (), block: &Block, out: &mut [f32]) {
        let (d, dmin) = (f16_to_f32(block.d), f16_to_f32(block.dmin));
        let (sc, m) = scale_bytes(block.scales);
        for (((out, q), sc), m) in
            out.chunks_exact_mut(BLOCK).zip(block.values().chunks_exact(BLOCK)).zip(sc).zip(m)
        {
            // In candle's order of operations, so that the values are the same to the bit.
            let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
            for (out, q) in out.iter_mut().zip(q) {
                *out = scale * f32::from(*q) - min;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::q4_k::x86::{scaled_dot, unpack_scales};
    use super::super::x86::row_sums;
    use super::super::{Q8Vector, f16_to_f32};
    use super::Block;
    use core::arch::x86_64::{__m256, __m256i};
    use pulp::x86::V3;

    /// [`super::Q5K::rows_dot`]: the same sums as its scalar loop, each activation block loaded
    /// once for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(simd: V3, blocks: [&[Block]; R], x: &Q8Vector) -> [f32; R] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let (low, fifth) = (avx._mm256_set1_epi8(0x0f), avx._mm256_set1_epi8(0x10));
        let activations = x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(x.sums.as_chunks::<8>().0);
        for (b, ((p, dx), sx)) in activations.enumerate() {
            let sx: __m256 = pulp::cast(*sx);
            let mut scales = [avx._mm256_setzero_si256(); R];
            let mut high = [avx._mm256_setzero_si256(); R];
            let mut dots = [avx._mm256_setzero_si256(); R];
            for r in 0..R {
                let block = &blocks[r][b];
                let (sc, mins) = unpack_scales(simd, block.scales, f16_to_f32(block.dmin));
                scales[r] = sc;
                high[r] = pulp::cast(block.qh);
                acc[r] = fma._mm256_fnmadd_ps(mins, sx, acc[r]);
            }
            for j in 0..4 {
                let (p_low, p_high): (__m256i, __m256i) = (pulp::cast(p[2 * j]), pulp::cast(p[2 * j + 1]));
                for r in 0..R {
                    // Bits 2j and 2j + 1 of `qh` were shifted down to bits 0 and 1 (16-bit
                    // shifts by at most 4 never move a bit 4 across bytes).
                    let h = high[r];
                    let h_low = avx2._mm256_and_si256(avx2._mm256_slli_epi16::<4>(h), fifth);
                    let h_high = avx2._mm256_and_si256(avx2._mm256_slli_epi16::<3>(h), fifth);
                    high[r] = avx2._mm256_srli_epi16::<2>(h);
                    let q: __m256i = pulp::cast(blocks[r][b].qs[j]);
                    let q_low = avx2._mm256_or_si256(avx2._mm256_and_si256(q, low), h_low);
                    let q_high = avx2
                        ._mm256_or_si256(avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(q), low), h_high);
                    let sums = avx2._mm256_add_epi32(
                        scaled_dot(simd, q_low, p_low, scales[r], 2 * j),
                        scaled_dot(simd, q_high, p_high, scales[r], 2 * j + 1),
                    );
                    dots[r] = avx2._mm256_add_epi32(dots[r], sums);
                }
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
        super::super::tests::check_format::<super::Q5K>();
    }
}
