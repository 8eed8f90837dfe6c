//! Products over Q5_0 weights, read as the GGUF stores them.
//!
//! # The Q5_0 block (ggml's `block_q5_0`, candle's `BlockQ5_0`)
//!
//! 32 consecutive weights of a row in 22 bytes: `d` (f16), a `u32` whose bit `j` is the fifth
//! (high) bit of weight `j`, then 16 bytes of nibbles laid out as Q4_0's (byte `i`: weight `i`
//! low, `i + 16` high). Weight `j = d · (q_j − 16)` with `q_j ∈ 0..32`. Gemma 3's Q4_K_M file
//! stores most of its layers' matrices so: their 640 columns are no multiple of a K-quant's 256.
//!
//! [`Matrix`](super::Matrix) keeps the f16 bits of `d` apart, and [`Quants`]: the nibbles, and
//! the high bits in another order, chosen so that AVX2 spreads them over 32 bytes with one
//! broadcast, one `and` and one compare (see [`high_bit`]). The products are
//! [`unsigned`](super::unsigned)'s. Candle has no SIMD kernel for Q5_0, which is why it used to be
//! re-quantised to Q8_0 when loaded: 34 bytes per block where these read 22.

use super::unsigned::{self, Scale, Values};
use super::{BLOCK, Format, Kernel, Q8Vector};
use candle_core::quantized::GgmlDType;

/// The Q5_0 format.
pub(crate) struct Q5_0;

/// `w_j = d · (q_j + OFFSET)`.
const OFFSET: f32 = -16.0;

/// A block's 5-bit values (Q5_0's and Q5_1's).
#[derive(Clone, Copy)]
pub(crate) struct Quants {
    /// As in the GGUF: byte `i` holds the low four bits of weights `i` and `i + 16`.
    nibbles: [u8; 16],
    /// The high bit of weight `j` at bit [`high_bit`]`(j)`.
    high: u32,
}

/// Where [`Quants::high`] keeps weight `j`'s high bit: bit `j / 4` of byte `j % 4`. Broadcast to
/// all eight 32-bit lanes of a vector, byte `j` of it is a copy of byte `j % 4`, so one mask with
/// bit `j / 4` set in byte `j` picks every weight's bit at once.
const fn high_bit(j: usize) -> usize {
    8 * (j % 4) + j / 4
}

impl Quants {
    /// The GGUF's four bytes of high bits (bit `j`: weight `j`'s) and 16 bytes of nibbles.
    pub(super) fn new(high_bits: [u8; 4], nibbles: [u8; 16]) -> Self {
        let bits = u32::from_le_bytes(high_bits);
        let high = (0..BLOCK).filter(|j| bits >> j & 1 == 1).fold(0, |high, j| high | 1 << high_bit(j));
        Quants { nibbles, high }
    }
}

impl Values for Quants {
    fn values(&self) -> [u8; 32] {
        let low = self.nibbles.values();
        std::array::from_fn(|j| low[j] | ((self.high >> high_bit(j)) as u8 & 1) << 4)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn values_avx2(&self, simd: pulp::x86::V3) -> core::arch::x86_64::__m256i {
        x86::values(simd, self)
    }
}

impl Format for Q5_0 {
    const DTYPE: GgmlDType = GgmlDType::Q5_0;
    const BLOCK_LEN: usize = BLOCK;
    const BLOCK_BYTES: usize = 22;
    /// The f16 bits of `d`.
    type Scale = u16;
    type Quants = Quants;

    fn split(block: &[u8]) -> Option<(u16, Quants)> {
        let (scale, rest) = block.split_first_chunk::<2>()?;
        let (high_bits, nibbles) = rest.split_first_chunk::<4>()?;
        Some((u16::from_le_bytes(*scale), Quants::new(*high_bits, nibbles.try_into().ok()?)))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[u16]; R],
        quants: [&[Quants]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        let [sums] = unsigned::rows_dot(kernel, OFFSET, scales, quants, [x]);
        sums
    }

    #[inline(always)]
    fn rows_dot_inputs<const R: usize, const T: usize>(
        kernel: Kernel,
        scales: [&[u16]; R],
        quants: [&[Quants]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        unsigned::rows_dot(kernel, OFFSET, scales, quants, xs)
    }

    #[inline(always)]
    fn dequantize(scale: u16, quants: &Quants, out: &mut [f32]) {
        scale.dequantize(OFFSET, quants.values(), out);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::nibbles;
    use super::{Quants, high_bit};
    use core::arch::x86_64::__m256i;
    use pulp::x86::V3;

    /// Byte `j`: the bit that holds weight `j`'s high bit in its byte of [`Quants::high`].
    const HIGH_MASK: [u8; 32] = {
        let mut mask = [0; 32];
        let mut j = 0;
        while j < 32 {
            mask[j] = 1 << (high_bit(j) % 8);
            j += 1;
        }
        mask
    };

    /// The block's `q_j`, one per byte.
    #[inline(always)]
    pub(super) fn values(simd: V3, q: &Quants) -> __m256i {
        let (avx, avx2) = (simd.avx, simd.avx2);
        let mask: __m256i = pulp::cast(HIGH_MASK);
        let spread = avx2._mm256_and_si256(avx._mm256_set1_epi32(q.high as i32), mask);
        let high = avx2._mm256_and_si256(avx2._mm256_cmpeq_epi8(spread, mask), avx._mm256_set1_epi8(0x10));
        avx2._mm256_or_si256(nibbles(simd, &q.nibbles), high)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q5_0>();
    }
}
