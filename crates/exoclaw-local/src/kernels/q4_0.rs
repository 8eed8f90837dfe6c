//! Products over Q4_0 weights, read as the GGUF stores them.
//!
//! # The Q4_0 block (ggml's `block_q4_0`, candle's `BlockQ4_0`)
//!
//! 32 consecutive weights of a row in 18 bytes: `d` (f16), then 16 bytes of nibbles. Byte `i`
//! holds weight `i` in its low nibble and weight `i + 16` in its high nibble, and weight
//! `j = d · (q_j − 8)` with `q_j ∈ 0..16`. [`Matrix`](super::Matrix) keeps the f16 bits of `d`
//! and the 16 bytes apart; the products are [`unsigned`](super::unsigned)'s, the offset costing
//! one multiply-add per eight blocks.

use super::unsigned::{self, Scale, Values};
use super::{BLOCK, Format, Kernel, Q8Vector};
use candle_core::quantized::GgmlDType;

/// The Q4_0 format.
pub(crate) struct Q4_0;

/// `w_j = d · (q_j + OFFSET)`.
const OFFSET: f32 = -8.0;

impl Format for Q4_0 {
    const DTYPE: GgmlDType = GgmlDType::Q4_0;
    const BLOCK_LEN: usize = BLOCK;
    const BLOCK_BYTES: usize = 18;
    /// The f16 bits of `d`.
    type Scale = u16;
    /// The 16 bytes of nibbles.
    type Quants = [u8; 16];

    fn split(block: &[u8]) -> Option<(u16, [u8; 16])> {
        let (scale, nibbles) = block.split_first_chunk::<2>()?;
        Some((u16::from_le_bytes(*scale), nibbles.try_into().ok()?))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[u16]; R],
        quants: [&[[u8; 16]]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        let [sums] = unsigned::rows_dot(kernel, OFFSET, scales, quants, [x]);
        sums
    }

    #[inline(always)]
    fn rows_dot_inputs<const R: usize, const T: usize>(
        kernel: Kernel,
        scales: [&[u16]; R],
        quants: [&[[u8; 16]]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        unsigned::rows_dot(kernel, OFFSET, scales, quants, xs)
    }

    #[inline(always)]
    fn dequantize(scale: u16, nibbles: &[u8; 16], out: &mut [f32]) {
        scale.dequantize(OFFSET, nibbles.values(), out);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q4_0>();
    }
}
