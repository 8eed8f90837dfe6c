//! Products over Q4_K weights.
//!
//! # The Q4_K super-block (ggml's `block_q4_K`, candle's `BlockQ4K`)
//!
//! 256 consecutive weights of a row in 144 bytes: `d` and `dmin` (f16), 12 bytes packing eight
//! 6-bit scales `sc_s` and eight 6-bit minimums `m_s` (see [`Header`]), then 128 bytes of
//! nibbles `q`, sub-blocks `2j` and `2j + 1` in the low and high nibbles of bytes
//! `32j .. 32j + 32`. Weight `l` of sub-block `s` (weights `32s .. 32s + 32`) is
//! `d·sc_s · q − dmin·m_s`. [`Matrix`](super::Matrix) keeps 144 bytes too, reordered: the
//! scales as [`Header`] says, the nibbles as [`interleave`](super::interleave) does.
//!
//! # The dot product
//!
//! Against activations with one scale per super-block, `x ≈ dx · p`, and `sx_s = dx · Σ p` over
//! each sub-block ([`Q8Vector`]):
//!
//! `Σ_s Σ_l (d·sc_s·q_sl − dmin·m_s) · dx·p_sl = d·dx · Σ_s sc_s · Σ_l q_sl·p_sl − dmin · Σ_s m_s·sx_s`
//!
//! The first sum is integer arithmetic to the end of the super-block. With AVX2, per 32 weights
//! one `maddubs` (nibbles × activations, to i16 pairs of one sub-block each, thanks to the
//! interleaved order); the eight vectors' pairs add up as i16 (at most 8 · 2 · 15 · 127), and
//! one `madd` by the scales (each pair's own) takes them to i32: one conversion to f32 per 256
//! weights. (ggml, and candle after it, `madd` each 32 weights by a scale broadcast to the whole
//! vector, and unpack the scales with scalar code.)

use super::{BLOCK, Format, Kernel, Q8Vector, QK_K, deinterleave, f16_to_f32, interleave};
use candle_core::quantized::GgmlDType;

/// The Q4_K format.
pub(crate) struct Q4K;

/// The first 16 bytes of a Q4_K or Q5_K super-block: `d`, `dmin` (f16) and the 6-bit scales and
/// minimums, these reordered so that AVX2 unpacks them with a few byte shuffles and shifts:
/// byte `4 + s` holds `sc_s` in its low six bits and the high two bits of `m_s` above them, and
/// byte `12 + k` the low four bits of `m_2k` (low nibble) and `m_2k+1` (high nibble). (The GGUF
/// packs them as ggml's `get_scale_min_k4` reads them.)
#[derive(Clone, Copy)]
pub(super) struct Header([u8; 16]);

impl Header {
    /// The GGUF's 16 bytes.
    pub(super) fn new(gguf: &[u8; 16]) -> Self {
        let packed = &gguf[4..];
        let scale_min = |s: usize| {
            if s < 4 {
                (packed[s] & 63, packed[s + 4] & 63)
            } else {
                (
                    (packed[s + 4] & 0x0f) | (packed[s - 4] >> 6) << 4,
                    (packed[s + 4] >> 4) | (packed[s] >> 6) << 4,
                )
            }
        };
        let mut header = [0; 16];
        header[..4].copy_from_slice(&gguf[..4]);
        for s in 0..8 {
            let (sc, m) = scale_min(s);
            header[4 + s] = sc | (m >> 4) << 6;
            header[12 + s / 2] |= (m & 0x0f) << (4 * (s % 2));
        }
        Header(header)
    }

    /// The f16 bits of `d`.
    pub(super) fn d(&self) -> u16 {
        u16::from_le_bytes([self.0[0], self.0[1]])
    }

    /// The f16 bits of `dmin`.
    pub(super) fn dmin(&self) -> u16 {
        u16::from_le_bytes([self.0[2], self.0[3]])
    }

    /// The scales `sc_s` and the minimums `m_s`.
    pub(super) fn scales_and_mins(&self) -> ([u8; 8], [u8; 8]) {
        let h = &self.0;
        let scales = std::array::from_fn(|s| h[4 + s] & 63);
        let mins = std::array::from_fn(|s| (h[4 + s] >> 6) << 4 | (h[12 + s / 2] >> (4 * (s % 2))) & 0x0f);
        (scales, mins)
    }
}

/// The values `q` of the sub-blocks of a GGUF super-block's 128 bytes of nibbles.
pub(super) fn gguf_nibbles(qs: &[u8; 128]) -> [[u8; 32]; 8] {
    std::array::from_fn(|s| std::array::from_fn(|l| (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0x0f))
}

/// The dot products of the 32-weight sub-blocks of `q` and `p`, both interleaved.
pub(super) fn sub_block_dots(q: &[[u8; 32]; 8], p: &[[i8; 32]; 8]) -> [i32; 8] {
    let (q, p) = (deinterleave(q), deinterleave(p));
    std::array::from_fn(|s| q[s].iter().zip(&p[s]).map(|(q, p)| i32::from(*q) * i32::from(*p)).sum())
}

/// A Q4_K super-block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    head: Header,
    /// The interleaved vectors `2j` (low nibbles) and `2j + 1` (high nibbles).
    qs: [[u8; 32]; 4],
}

impl Block {
    /// `q` of the 256 weights, interleaved.
    fn values(&self) -> [[u8; 32]; 8] {
        std::array::from_fn(|g| self.qs[g / 2].map(|byte| (byte >> (4 * (g % 2))) & 0x0f))
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
        let (head, qs) = block.split_first_chunk::<16>()?;
        let vectors = interleave(&gguf_nibbles(qs.try_into().ok()?));
        let qs =
            std::array::from_fn(|j| std::array::from_fn(|b| vectors[2 * j][b] | vectors[2 * j + 1][b] << 4));
        Some(((), Block { head: Header::new(head), qs }))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[()]; R],
        blocks: [&[Block]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        let [sums] = Self::rows_dot_inputs(kernel, scales, blocks, [x]);
        sums
    }

    #[inline(always)]
    fn rows_dot_inputs<const R: usize, const T: usize>(
        kernel: Kernel,
        _: [&[()]; R],
        blocks: [&[Block]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        #[cfg(target_arch = "x86_64")]
        if let Kernel::Avx2(simd) = kernel {
            return x86::rows_dot(simd, blocks, xs);
        }
        let _ = kernel;
        std::array::from_fn(|t| {
            let x = xs[t];
            std::array::from_fn(|r| {
                let mut total = 0.0f32;
                let activations =
                    x.quants.as_chunks::<8>().0.iter().zip(&x.scales).zip(x.sums.as_chunks::<8>().0);
                for (block, ((p, dx), sx)) in blocks[r].iter().zip(activations) {
                    let (sc, m) = block.head.scales_and_mins();
                    let dots = sub_block_dots(&block.values(), p);
                    let dot: i32 = dots.iter().zip(sc).map(|(dot, sc)| dot * i32::from(sc)).sum();
                    let mins: f32 = m.iter().zip(sx).map(|(m, sx)| f32::from(*m) * sx).sum();
                    total +=
                        f16_to_f32(block.head.d()) * dx * dot as f32 - f16_to_f32(block.head.dmin()) * mins;
                }
                total
            })
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
pub(super) mod x86 {
    use super::super::x86::row_sums;
    use super::super::{Q8Vector, f16_to_f32};
    use super::{Block, Header};
    use core::arch::x86_64::{__m128i, __m256, __m256i};
    use pulp::x86::V3;

    /// A `pshufb` control putting each scale byte `4 + s` in bytes `2s, 2s + 1`.
    const SCALES: [u8; 16] = [4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11];
    /// A `pshufb` control putting the byte of `m_s`'s low bits, `12 + s / 2`, in byte `s`.
    const MIN_NIBBLES: [u8; 16] = [12, 12, 13, 13, 14, 14, 15, 15, 128, 128, 128, 128, 128, 128, 128, 128];

    /// A row's scales for one super-block: `sc_s` in 16-bit lanes `2s, 2s + 1` (for the `madd` of
    /// interleaved products), and `dmin · m_s` as f32.
    #[inline(always)]
    pub(in super::super) fn unpack(simd: V3, head: &Header) -> (__m256i, __m256) {
        let (avx, avx2, ssse3) = (simd.avx, simd.avx2, simd.ssse3);
        let v: __m128i = pulp::cast(head.0);
        let scales = avx2._mm256_and_si256(
            avx2._mm256_cvtepu8_epi16(ssse3._mm_shuffle_epi8(v, pulp::cast(SCALES))),
            avx._mm256_set1_epi16(63),
        );
        let bytes = avx2._mm256_cvtepu8_epi32(simd.sse2._mm_srli_si128::<4>(v));
        let high = avx2._mm256_and_si256(avx2._mm256_srli_epi32::<2>(bytes), avx._mm256_set1_epi32(0x30));
        let nibbles = avx2._mm256_cvtepu8_epi32(ssse3._mm_shuffle_epi8(v, pulp::cast(MIN_NIBBLES)));
        let low = avx2._mm256_and_si256(
            avx2._mm256_srlv_epi32(nibbles, avx._mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)),
            avx._mm256_set1_epi32(0x0f),
        );
        let mins = avx._mm256_cvtepi32_ps(avx2._mm256_or_si256(high, low));
        (scales, avx._mm256_mul_ps(mins, avx._mm256_set1_ps(f16_to_f32(head.dmin()))))
    }

    /// [`super::Q4K::rows_dot_inputs`]: the same sums as its scalar loop, each weight vector
    /// unpacked and each row's scales once for all `T` inputs; each input's sums see the same
    /// operations in the same order whatever `T` is.
    #[inline(always)]
    pub(super) fn rows_dot<const R: usize, const T: usize>(
        simd: V3,
        blocks: [&[Block]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        let (avx, avx2, fma) = (simd.avx, simd.avx2, simd.fma);
        let mut acc = [[avx._mm256_setzero_ps(); R]; T];
        let low = avx._mm256_set1_epi8(0x0f);
        for (b, _) in xs[0].quants.chunks_exact(8).enumerate() {
            let mut pairs = [[avx._mm256_setzero_si256(); R]; T];
            for j in 0..4 {
                for r in 0..R {
                    let q: __m256i = pulp::cast(blocks[r][b].qs[j]);
                    let q_low = avx2._mm256_and_si256(q, low);
                    let q_high = avx2._mm256_and_si256(avx2._mm256_srli_epi16::<4>(q), low);
                    for t in 0..T {
                        let p = &xs[t].quants[8 * b..8 * b + 8];
                        let (p_low, p_high): (__m256i, __m256i) =
                            (pulp::cast(p[2 * j]), pulp::cast(p[2 * j + 1]));
                        let sums = avx2._mm256_add_epi16(
                            avx2._mm256_maddubs_epi16(q_low, p_low),
                            avx2._mm256_maddubs_epi16(q_high, p_high),
                        );
                        pairs[t][r] = avx2._mm256_add_epi16(pairs[t][r], sums);
                    }
                }
            }
            for r in 0..R {
                let head = &blocks[r][b].head;
                let (scales, mins) = unpack(simd, head);
                let d = f16_to_f32(head.d());
                for t in 0..T {
                    let dot = avx._mm256_cvtepi32_ps(avx2._mm256_madd_epi16(pairs[t][r], scales));
                    acc[t][r] = fma._mm256_fmadd_ps(dot, avx._mm256_set1_ps(d * xs[t].scales[b]), acc[t][r]);
                    let sx: __m256 = pulp::cast(xs[t].sums.as_chunks::<8>().0[b]);
                    acc[t][r] = fma._mm256_fnmadd_ps(mins, sx, acc[t][r]);
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

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q4K>();
    }
}
