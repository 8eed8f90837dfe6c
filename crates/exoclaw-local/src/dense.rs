//! Dense f32 matrix products of tensors on the CPU: [`matmul`], what `Tensor::matmul` computes,
//! through the same kernel (`gemm`), without asking for the thread count every time.
//!
//! Why: candle 0.11.1's `Tensor::matmul` works out how many threads to split a product over on
//! every call (`candle_core::utils::get_num_threads`), and unless `RAYON_NUM_THREADS` is set
//! that means reading and parsing `/proc/cpuinfo` (through `num_cpus::get_physical`): about
//! 130 µs on the 2-core AMD EPYC this was measured on, more than many of the products take.
//! The local embedder makes 36 products per message, so it added milliseconds to indexing a
//! message. Here the
//! count is worked out once, by candle's own rule, and every product after that calls `gemm`
//! with it, exactly as candle does: the same kernel, the same arguments, the same results to
//! the bit (the tests compare them).
//!
//! This is the crate's only `unsafe` code, and it is one call: `gemm::gemm` takes raw pointers
//! and strides. [`Operand`] checks, before it, that every element the product reads or writes lies
//! inside the borrowed slices.

#![allow(unsafe_code)]

use candle_core::{CpuStorage, Device, Layout, Result, Storage, Tensor};
use std::sync::OnceLock;

/// `lhs · rhs` for f32 tensors on the CPU of shapes `(m, k)·(k, n)` or, batched,
/// `(b, m, k)·(b, k, n)`, with any strides (transposed or narrowed views need no copy); the
/// result is contiguous. Anything else is an error naming the shapes.
pub(crate) fn matmul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let (batch, m, k, n) = match (lhs.dims(), rhs.dims()) {
        (&[m, k], &[k2, n]) if k == k2 => (None, m, k, n),
        (&[b, m, k], &[b2, k2, n]) if b == b2 && k == k2 => (Some(b), m, k, n),
        (l, r) => candle_core::bail!("dense product: shapes {l:?} and {r:?} do not multiply"),
    };
    let batches = batch.unwrap_or(1);
    let mut out = vec![0f32; batches * m * n];
    {
        let (lhs_storage, lhs_layout) = lhs.storage_and_layout();
        let (rhs_storage, rhs_layout) = rhs.storage_and_layout();
        let (Storage::Cpu(CpuStorage::F32(lhs_values)), Storage::Cpu(CpuStorage::F32(rhs_values))) =
            (&*lhs_storage, &*rhs_storage)
        else {
            candle_core::bail!("dense product: expected f32 tensors on the CPU");
        };
        for (b, dst) in out.chunks_exact_mut((m * n).max(1)).enumerate().take(batches) {
            let lhs = Operand::of(lhs_values, lhs_layout, b, m, k);
            let rhs = Operand::of(rhs_values, rhs_layout, b, k, n);
            product_into(lhs, rhs, dst)?;
        }
    }
    match batch {
        Some(b) => Tensor::from_vec(out, (b, m, n), &Device::Cpu),
        None => Tensor::from_vec(out, (m, n), &Device::Cpu),
    }
}

/// A rank-2 or rank-3 layout's strides as (batch, row, column); a matrix's batch stride is 0.
fn strides(layout: &Layout) -> (usize, usize, usize) {
    match *layout.stride() {
        [b, r, c] => (b, r, c),
        [r, c] => (0, r, c),
        // `matmul` only lays out rank-2 and rank-3 tensors.
        _ => (0, 0, 0),
    }
}

/// A matrix inside a slice: element `(i, j)` is `values[offset + i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
struct Operand<'a> {
    values: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    /// Matrix `b` (0 for a rank-2 tensor), `rows × cols`, of a tensor's `values` laid out by
    /// `layout`.
    fn of(values: &'a [f32], layout: &Layout, b: usize, rows: usize, cols: usize) -> Self {
        let (batch_stride, row_stride, col_stride) = strides(layout);
        let offset = layout.start_offset().saturating_add(b.saturating_mul(batch_stride));
        Operand { values, offset, rows, cols, row_stride, col_stride }
    }

    /// Whether every element lies inside `values` (and the strides fit `isize`); an empty matrix
    /// always does.
    fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c))
            .and_then(|rc| rc.checked_add(self.offset));
        last.is_some_and(|last| last < self.values.len())
            && isize::try_from(self.row_stride).is_ok()
            && isize::try_from(self.col_stride).is_ok()
    }
}

/// `dst = lhs · rhs`, `dst` row-major `lhs.rows × rhs.cols`.
fn product_into(lhs: Operand<'_>, rhs: Operand<'_>, dst: &mut [f32]) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || dst.len() != m * n || !lhs.fits() || !rhs.fits() {
        candle_core::bail!(
            "dense product: operands ({m}×{k}, {}×{n}) do not fit their storage or a {}-value result",
            rhs.rows,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        dst.fill(0.0);
        return Ok(());
    }
    let parallelism = match threads() {
        1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    };
    // SAFETY: `fits` checked that for every i < m, j < k (lhs) and i < k, j < n (rhs) the element
    // at `offset + i·row_stride + j·col_stride` lies inside its slice, which stays borrowed for
    // the call, and that the strides fit `isize`; those are the only elements `gemm` reads.
    // `dst` holds exactly m × n values, row-major (column stride 1, row stride n ≤ its length),
    // each written once; it is borrowed mutably, so it overlaps neither input. `read_dst` is
    // false: `dst`'s old values are never read (alpha is then unused).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.values[lhs.offset..].as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.values[rhs.offset..].as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// The threads a product is split over: candle's own count (`RAYON_NUM_THREADS`, else the
/// physical cores), worked out once.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Values that are not round, so a reordered sum would show.
    fn tensor(shape: &[usize], seed: u32) -> Tensor {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0) - 0.5)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn same(ours: &Tensor, candles: &Tensor) {
        assert_eq!(ours.dims(), candles.dims());
        let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
        let candles: Vec<f32> = candles.flatten_all().unwrap().to_vec1().unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&ours), bits(&candles), "the same kernel must give the same bits");
    }

    #[test]
    fn a_product_is_candles_to_the_bit_for_contiguous_matrices_of_every_size() {
        for (m, k, n) in [(1, 1, 1), (1, 384, 1152), (7, 64, 5), (25, 384, 1536), (130, 576, 200)] {
            let (a, b) = (tensor(&[m, k], 1), tensor(&[k, n], 2));
            same(&matmul(&a, &b).unwrap(), &a.matmul(&b).unwrap());
        }
    }

    #[test]
    fn transposed_and_narrowed_views_are_multiplied_where_they_lie() {
        // A weight stored (out, in) and used transposed, as the embedder's layers are.
        let x = tensor(&[20, 96], 3);
        let w = tensor(&[48, 96], 4).t().unwrap();
        same(&matmul(&x, &w).unwrap(), &x.matmul(&w).unwrap());
        // Keys narrowed out of a larger cache and transposed, batched by head, as attention does.
        let q = tensor(&[3, 10, 16], 5);
        let cache = tensor(&[3, 64, 16], 6);
        let keys = cache.narrow(1, 0, 12).unwrap();
        let scores = matmul(&q, &keys.t().unwrap()).unwrap();
        same(&scores, &q.matmul(&keys.t().unwrap()).unwrap());
        let values = cache.narrow(1, 4, 12).unwrap();
        same(&matmul(&scores, &values).unwrap(), &scores.matmul(&values).unwrap());
    }

    #[test]
    fn shapes_that_do_not_multiply_are_refused_naming_them() {
        let err = matmul(&tensor(&[2, 3], 1), &tensor(&[4, 5], 2)).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
        let err = matmul(&tensor(&[2, 2, 3], 1), &tensor(&[3, 3, 5], 2)).unwrap_err().to_string();
        assert!(err.contains("do not multiply"), "{err}");
    }

    #[test]
    fn an_operand_that_would_reach_past_its_storage_is_refused_before_the_kernel() {
        let values = [0f32; 12];
        let fits = Operand { values: &values, offset: 0, rows: 3, cols: 4, row_stride: 4, col_stride: 1 };
        assert!(fits.fits());
        assert!(!Operand { offset: 1, ..fits }.fits());
        assert!(!Operand { row_stride: 5, ..fits }.fits());
        assert!(!Operand { row_stride: usize::MAX, ..fits }.fits());
        let mut dst = [0f32; 9];
        let rhs = Operand { rows: 4, cols: 3, row_stride: 3, ..fits };
        assert!(product_into(fits, rhs, &mut dst).is_ok());
        assert!(product_into(fits, Operand { offset: 1, ..rhs }, &mut dst).is_err());
        assert!(product_into(fits, rhs, &mut dst[..8]).is_err());
    }

    #[test]
    fn empty_products_give_empty_or_zero_results() {
        let zero_k = matmul(&tensor(&[3, 0], 1), &tensor(&[0, 2], 2)).unwrap();
        assert_eq!(zero_k.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0; 6]);
        assert_eq!(matmul(&tensor(&[0, 4], 1), &tensor(&[4, 2], 2)).unwrap().dims(), &[0, 2]);
    }
}
