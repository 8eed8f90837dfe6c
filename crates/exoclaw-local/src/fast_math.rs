//! Element-wise functions written so that a loop of them vectorises: [`exp`] by a polynomial,
//! and on it GeGLU, Gemma's gated activation ([`geglu`]).
//!
//! Why: candle computes GELU with libm's `tanhf` (through `expm1f`), a call per value, on one
//! thread. In a prompt's prefill that is every value of every feed-forward layer's gate (Gemma 3
//! 270M: 2,048 per token and layer). Here GELU, its product with the up projection and the loop
//! are one pass, compiled for the widest instructions the CPU has and split over the threads:
//! Gemma 3's prompt speed went from 0.85× llama.cpp's to 1.13× (see docs/local-model.md).
//!
//! SiLU (the llama family's gate) stays candle's: the same pass for it made no difference that
//! SmolLM2's prefill could measure.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

/// `e^x` (Cephes' `expf`: the power of two from the exponent bits, a degree-5 polynomial on the
/// rest; within 2.5e-7 relative), branch-free so that a loop of it vectorises. `x` is clamped to
/// `[-87, 88]`: below, e^x is under f32's smallest normal; above, it would not fit in an f32.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    // Round to nearest by adding and taking away 1.5 × 2²³.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `√(2/π)`, the scale inside GELU's tanh approximation.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// Values from which [`geglu`] splits its pass over rayon's threads.
const PARALLEL_FROM: usize = 1 << 16;

/// `GELU(gate) · up`, element by element, for f32 tensors of one shape: GELU's tanh
/// approximation, `½·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))`, computed as the equal
/// `g·σ(2·√(2/π)·(g + 0.044715·g³))`, which needs one [`exp`].
pub(crate) fn geglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        candle_core::bail!("gate {:?} and up {:?} differ in shape", gate.dims(), up.dims());
    }
    let shape = gate.shape().clone();
    let gate = gate.flatten_all()?.to_vec1::<f32>()?;
    let up = up.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; gate.len()];
    let arch = pulp::Arch::new();
    let run = |gate: &[f32], up: &[f32], out: &mut [f32]| arch.dispatch(GeGlu { gate, up, out });
    if out.len() < PARALLEL_FROM {
        run(&gate, &up, &mut out);
    } else {
        let part = out.len().div_ceil(rayon::current_num_threads().max(1));
        out.par_chunks_mut(part)
            .zip(gate.par_chunks(part).zip(up.par_chunks(part)))
            .for_each(|(out, (gate, up))| run(gate, up, out));
    }
    Tensor::from_vec(out, shape, &Device::Cpu)
}

/// One pass of [`geglu`]: a value rather than a closure, so that [`pulp::Arch::dispatch`]
/// compiles it inlined for the CPU's widest instructions.
struct GeGlu<'a> {
    gate: &'a [f32],
    up: &'a [f32],
    out: &'a mut [f32],
}

impl pulp::WithSimd for GeGlu<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let GeGlu { gate, up, out } = self;
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let inner = SQRT_2_OVER_PI * (g + 0.044_715 * g * g * g);
            *o = g / (1.0 + exp(-2.0 * inner)) * u;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn exp_is_within_2_5e_7_relative_over_its_range_and_clamps_outside() {
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let (got, want) = (f64::from(exp(x)), f64::from(x).exp());
            assert!((got - want).abs() <= want * 2.5e-7, "exp({x}) = {got}, not {want}");
        }
        assert!(exp(1000.0).is_finite() && exp(1000.0) == exp(88.0));
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(f32::NAN).is_nan());
    }

    /// GELU's tanh approximation as candle and llama.cpp define it, in f64, over the range gates
    /// take and far outside it.
    #[test]
    fn geglu_matches_its_definition() {
        let gates: Vec<f32> =
            (-4_000..=4_000).map(|i| i as f32 / 200.0).chain([-1e4, -100.0, 100.0, 1e4]).collect();
        let ups: Vec<f32> = (0..gates.len()).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let n = gates.len();
        let gate = Tensor::from_vec(gates.clone(), n, &Device::Cpu).unwrap();
        let up = Tensor::from_vec(ups.clone(), n, &Device::Cpu).unwrap();
        let got: Vec<f32> = geglu(&gate, &up).unwrap().to_vec1().unwrap();
        for ((&g, &u), got) in gates.iter().zip(&ups).zip(got) {
            let g64 = f64::from(g);
            let gelu = 0.5 * g64 * (1.0 + (0.797_884_560_802_865_4 * (g64 + 0.044_715 * g64.powi(3))).tanh());
            let want = gelu * f64::from(u);
            let error = (f64::from(got) - want).abs();
            assert!(error <= 1e-6 * want.abs().max(1.0), "GELU({g})·{u} = {got}, not {want}");
        }
    }

    #[test]
    fn a_pass_split_over_threads_equals_one_pass_and_shapes_must_agree() {
        let rows = 3 * PARALLEL_FROM / 5 + 1;
        let n = rows * 5;
        let values: Vec<f32> = (0..n).map(|i| ((i * 7_919) % 2_000) as f32 / 100.0 - 10.0).collect();
        let reversed: Vec<f32> = values.iter().rev().copied().collect();
        let gate = Tensor::from_vec(values.clone(), (rows, 5), &Device::Cpu).unwrap();
        let up = Tensor::from_vec(reversed.clone(), (rows, 5), &Device::Cpu).unwrap();
        let split: Vec<f32> = geglu(&gate, &up).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut one = vec![0f32; n];
        pulp::Arch::new().dispatch(GeGlu { gate: &values, up: &reversed, out: &mut one });
        assert_eq!(split, one);
        let err = geglu(&gate, &up.narrow(0, 0, 2).unwrap()).unwrap_err().to_string();
        assert!(err.contains("differ in shape"), "{err}");
    }
}
