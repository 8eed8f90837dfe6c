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
//! The products are [`unsigned`](super::unsigned)'s. Q4_1 is 20 bytes per 32 weights where the
//! Q8_0 it used to be re-quantised to (for candle's fast kernel) is 34: decoding reads 40 % fewer
//! bytes.

use super::unsigned::{self, Scale, Values};
use super::{BLOCK, Format, Kernel, Q8Vector};
use candle_core::quantized::GgmlDType;

/// The Q4_1 format.
pub(crate) struct Q4_1;

impl Format for Q4_1 {
    const DTYPE: GgmlDType = GgmlDType::Q4_1;
    const BLOCK_LEN: usize = BLOCK;
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
        let [sums] = unsigned::rows_dot(kernel, 0.0, scales, quants, [x]);
        sums
    }

    #[inline(always)]
    fn rows_dot_inputs<const R: usize, const T: usize>(
        kernel: Kernel,
        scales: [&[u32]; R],
        quants: [&[[u8; 16]]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        unsigned::rows_dot(kernel, 0.0, scales, quants, xs)
    }

    #[inline(always)]
    fn dequantize(scale: u32, nibbles: &[u8; 16], out: &mut [f32]) {
        scale.dequantize(0.0, nibbles.values(), out);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q4_1>();
    }
}
