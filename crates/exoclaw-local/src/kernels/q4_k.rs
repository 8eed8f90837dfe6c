//! Products over Q4_K weights, read as the GGUF stores them.
//!
//! # The Q4_K super-block (ggml's `block_q4_K`, candle's `BlockQ4K`)
//!
//! 256 consecutive weights of a row in 144 bytes: `d` and `dmin` (f16), 12 bytes packing eight
//! 6-bit scales `sc_s` and eight 6-bit minimums `m_s` (see [`scales_and_mins`]), then 128 bytes
//! of nibbles. Sub-block `s` is weights `32s .. 32s + 32`; bytes `32j .. 32j + 32` hold
//! sub-block `2j` in their low nibbles and `2j + 1` in their high ones, and weight `l` of
//! sub-block `s` is `d·sc_s · q − dmin·m_s`. [`Matrix`](super::Matrix) keeps the blocks whole.
//!
//! # The dot product
//!
//! Against activations with one scale per super-block, `x ≈ dx · p`, and `sx_s = dx · Σ p` over
//! each sub-block ([`Q8Vector`]):
//!
//! `Σ_s Σ_l (d·sc_s·q_sl − dmin·m_s) · dx·p_sl = d·dx · Σ_s sc_s · Σ_l q_sl·p_sl − dmin · Σ_s m_s·sx_s`
//!
//! The first sum is integer arithmetic to the end of the super-block: with AVX2, per 32 weights a
//! `maddubs` (nibbles × activations, to i16 pairs) and a `madd` by the sub-block's scale (to
//! i32), so there is one conversion to f32 per 256 weights. (ggml's Q8_K activations, which
//! candle's kernel also uses; candle's is as much work per block, but a call per row and block.)

use super::{BLOCK, Format, Kernel, Q8Vector, QK_K, f16_to_f32};
use candle_core::quantized::GgmlDType;

/// The Q4_K format.
pub(crate) struct Q4K;

/// A Q4_K super-block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    /// The f16 bits of `d`.
    d: u16,
    /// The f16 bits of `dmin`.
    dmin: u16,
    /// The packed scales and minimums, as three little-endian words.
    scales: [u32; 3],
    /// Bytes `32j .. 32j + 32`: sub-blocks `2j` (low nibbles) and `2j + 1` (high).
    qs: [[u8; 32]; 4],
}

/// The eight 6-bit scales (bytes 0..8) and minimums (bytes 8..16) packed in 12 bytes (ggml's
/// `get_scale_min_k4`: scale `s < 4` is the low six bits of byte `s`, minimum `s < 4` those of
/// byte `s + 4`; for `s ≥ 4` the low four bits come from the nibbles of byte `s + 4` and the high
/// two from the top bits of bytes `s − 4` and `s`), unpacked a word at a time, as ggml does.
/// Shared with Q5_K.
#[inline(always)]
pub(super) fn scales_and_mins(packed: [u32; 3]) -> [u32; 4] {
    const LOW_6: u32 = 0x3f3f_3f3f;
    const LOW_4: u32 = 0x0f0f_0f0f;
    const LOW_2: u32 = 0x0303_0303;
    let [a, b, c] = packed;
    [
        a & LOW_6,
        (c & LOW_4) | ((a >> 6) & LOW_2) << 4,
        b & LOW_6,
        ((c >> 4) & LOW_4) | ((b >> 6) & LOW_2) << 4,
    ]
}

/// [`scales_and_mins`] as bytes: the scales and the minimums.
pub(super) fn scale_bytes(packed: [u32; 3]) -> ([u8; 8], [u8; 8]) {
    let words = scales_and_mins(packed);
    let byte = |i: usize| (words[i / 4] >> (8 * (i % 4))) as u8;
    (std::array::from_fn(byte), std::array::from_fn(|i| byte(i + 8)))
}

impl Block {
    /// `q` of the 256 weights, in order.
    fn values(&self) -> [u8; QK_K] {
        std::array::from_fn(|w| {
            let (s, l) = (w / BLOCK, w % BLOCK);
            let byte = self.qs[s / 2][l];
            if s % 2 == 0 { byte & 0x0f } else { byte >> 4 }
        })
    }
}

impl Format for Q4K {
    const DTYPE: GgmlDType = GgmlDType::Q4K;
    const BLOCK_LEN: usize = QK_K;
    const BLOCK_BYTES: usize = 144;
    /// Kept in the block.
    type Scale = ();
    type Quants = Block;

    fn split(block: &[u8]) -> Option<((), Block)> {
        let (d, rest) = block.split_first_chunk::<2>()?;
        let (dmin, rest) = rest.split_first_chunk::<2>()?;
        let (scales, rest) = rest.split_first_chunk::<12>()?;
        let (qs, []) = rest.as_chunks::<32>() else { return None };
        let scales = std::array::from_fn(|i| u32::from_le_bytes([0, 1, 2, 3].map(|b| scales[4 * i + b])));
        Some((
            (),
            Block {
                d: u16::from_le_bytes(*d),
                dmin: u16::from_le_bytes(*dmin),
                scales,
                qs: qs.try_into().ok()?,
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
pub(super) mod x86 {
    use super::super::x86::row_sums;
    use super::super::{Q8Vector, f16_to_f32};
    use super::{Block, scales_and_mins};
    use core::arch::x86_64::{__m128i, __m256, __m256i};
    use pulp::x86::V3;

    /// `pshufb` controls that broadcast 16-bit lane `s` of each 128-bit half (sub-block `s`'s
    /// scale) to all its lanes.
    pub(in super::super) const BROADCAST_16: [[u8; 32]; 8] = {
        let mut controls = [[0; 32]; 8];
        let mut s = 0;
        while s < 8 {
            let mut i = 0;
            while i < 32 {
                controls[s][i] = (2 * s + i % 2) as u8;
                i += 1;
            }
            s += 1;
        }
        controls
    };

    /// A row's unpacked scales for one super-block: the eight scales as 16-bit lanes, in both
    /// halves of the vector (for [`BROADCAST_16`]), and `dmin · m_s` as f32.
    #[inline(always)]
    pub(in super::super) fn unpack_scales(simd: V3, block_scales: [u32; 3], dmin: f32) -> (__m256i, __m256) {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let packed: __m128i = pulp::cast(scales_and_mins(block_scales));
        let both = avx2._mm256_cvtepu8_epi16(packed);
        let scales = avx2._mm256_permute2x128_si256::<0x00>(both, both);
        let mins = avx2._mm256_cvtepi16_epi32(avx2._mm256_extracti128_si256::<1>(both));
        (scales, avx._mm256_mul_ps(avx._mm256_cvtepi32_ps(mins), avx._mm256_set1_ps(dmin)))
    }

    /// `sc_s · Σ q·p` of one sub-block (`q` unsigned, below 32), as eight i32 partial sums.
    #[inline(always)]
    pub(in super::super) fn scaled_dot(
        simd: V3,
        q: __m256i,
        p: __m256i,
        scales: __m256i,
        s: usize,
    ) -> __m256i {
        let avx2 = simd.avx2;
        let scale = avx2._mm256_shuffle_epi8(scales, pulp::cast(BROADCAST_16[s]));
        avx2._mm256_madd_epi16(avx2._mm256_maddubs_epi16(q, p), scale)
    }

    /// [`super::Q4K::rows_dot`]: the same sums as its scalar loop, each activation block loaded
    /// once for all `R` rows.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize>(simd: V3, blocks: [&[Block]; R], x: &Q8Vector) -> [f32; R] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [avx._mm256_setzero_ps(); R];
        let low = avx._mm256_set1_epi8(0x0f);
        let activations = x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(x.sums.as_chunks::<8>().0);
        for (b, ((p, dx), sx)) in activations.enumerate() {
            let sx: __m256 = pulp::cast(*sx);
            let mut scales = [avx._mm256_setzero_si256(); R];
            let mut dots = [avx._mm256_setzero_si256(); R];
            for r in 0..R {
                let block = &blocks[r][b];
                let (sc, mins) = unpack_scales(simd, block.scales, f16_to_f32(block.dmin));
                scales[r] = sc;
                acc[r] = fma._mm256_fnmadd_ps(mins, sx, acc[r]);
            }
            for j in 0..4 {
                let (p_low, p_high): (__m256i, __m256i) = (pulp::cast(p[2 * j]), pulp::cast(p[2 * j + 1]));
                for r in 0..R {
                    let q: __m256i = pulp::cast(blocks[r][b].qs[j]);
                    let q_low = avx2._mm256_and_si256(q, low);
                    let q_high = avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(q), low);
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
        super::super::tests::check_format::<super::Q4K>();
    }
}
