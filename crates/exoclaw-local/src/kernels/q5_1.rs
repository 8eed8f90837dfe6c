//! Products over Q5_1 weights, read as the GGUF stores them.
//!
//! # The Q5_1 block (ggml's `block_q5_1`, candle's `BlockQ5_1`)
//!
//! 32 consecutive weights of a row in 24 bytes: `d` and `m` (f16), then Q5_0's four bytes of
//! high bits and 16 bytes of nibbles ([`q5_0::Quants`]); weight `j = d · q_j + m` with
//! `q_j ∈ 0..32`. [`Matrix`](super::Matrix) keeps `d` and `m` as one `u32`, as Q4_1's, and the
//! products are [`unsigned`](super::unsigned)'s.

use super::q5_0::Quants;
use super::unsigned::{self, Scale, Values};
use super::{BLOCK, Format, Kernel, Q8Vector};
use candle_core::quantized::GgmlDType;

/// The Q5_1 format.
pub(crate) struct Q5_1;

impl Format for Q5_1 {
    const DTYPE: GgmlDType = GgmlDType::Q5_1;
    const BLOCK_LEN: usize = BLOCK;
    const BLOCK_BYTES: usize = 24;
    /// The f16 bits of `d` (low half) and `m` (high half), as in the GGUF block.
    type Scale = u32;
    type Quants = Quants;

    fn split(block: &[u8]) -> Option<(u32, Quants)> {
        let (scale, rest) = block.split_first_chunk::<4>()?;
        let (high_bits, nibbles) = rest.split_first_chunk::<4>()?;
        Some((u32::from_le_bytes(*scale), Quants::new(*high_bits, nibbles.try_into().ok()?)))
    }

    #[inline(always)]
    fn rows_dot<const R: usize>(
        kernel: Kernel,
        scales: [&[u32]; R],
        quants: [&[Quants]; R],
        x: &Q8Vector,
    ) -> [f32; R] {
        let [sums] = unsigned::rows_dot(kernel, 0.0, scales, quants, [x]);
        sums
    }

    #[inline(always)]
    fn rows_dot_inputs<const R: usize, const T: usize>(
        kernel: Kernel,
        scales: [&[u32]; R],
        quants: [&[Quants]; R],
        xs: [&Q8Vector; T],
    ) -> [[f32; R]; T] {
        unsigned::rows_dot(kernel, 0.0, scales, quants, xs)
    }

    #[inline(always)]
    fn dequantize(scale: u32, quants: &Quants, out: &mut [f32]) {
        scale.dequantize(0.0, quants.values(), out);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_candle() {
        super::super::tests::check_format::<super::Q5_1>();
    }
}
