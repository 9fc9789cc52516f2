//! The LightGCN propagation matrix Â = D^{-1/2} A D^{-1/2} over users and items, and the
//! row-parallel sparse × dense product.
//!
//! Node ids: users `0..n_users`, then items `n_users..n_users + n_items`. A = [[0, R], [Rᵀ, 0]]
//! with R the binary user–item training matrix, no self-loops (as in the official code).

use agp_datasets::Dataset;
use rayon::prelude::*;

/// Symmetric normalised adjacency in CSR form. Â is symmetric, so the same matrix serves the
/// forward pass and the backward pass (Âᵀ = Â).
#[derive(Debug, Clone, PartialEq)]
pub struct NormAdj {
    pub n_users: usize,
    pub n_items: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
    /// Sorted distinct training items per user (the BPR sampler's positives).
    positives: Vec<Vec<u32>>,
}

impl NormAdj {
    /// Builds Â from the training sequences; repeated (user, item) pairs count once, so the
    /// graph is the binary interaction matrix whatever the data's repeat policy.
    pub fn from_dataset(dataset: &Dataset) -> Self {
        let positives: Vec<Vec<u32>> = dataset
            .train
            .iter()
            .map(|seq| {
                let mut s = seq.clone();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        Self::from_positives(positives, dataset.n_items())
    }

    pub fn from_positives(positives: Vec<Vec<u32>>, n_items: usize) -> Self {
        let n_users = positives.len();
        let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); n_items];
        for (u, items) in positives.iter().enumerate() {
            for &i in items {
                item_users[i as usize].push(u as u32);
            }
        }
        // 1/√deg, 0 for isolated nodes (the official code's `d_inv[isinf] = 0`).
        let inv_sqrt = |d: usize| if d == 0 { 0.0 } else { 1.0 / (d as f64).sqrt() };
        let nnz = 2 * positives.iter().map(Vec::len).sum::<usize>();
        let mut indptr = Vec::with_capacity(n_users + n_items + 1);
        let mut indices = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        indptr.push(0);
        for items in &positives {
            let du = inv_sqrt(items.len());
            for &i in items {
                indices.push(n_users as u32 + i);
                values.push((du * inv_sqrt(item_users[i as usize].len())) as f32);
            }
            indptr.push(indices.len());
        }
        for users in &item_users {
            let di = inv_sqrt(users.len());
            for &u in users {
                indices.push(u);
                values.push((di * inv_sqrt(positives[u as usize].len())) as f32);
            }
            indptr.push(indices.len());
        }
        Self {
            n_users,
            n_items,
            indptr,
            indices,
            values,
            positives,
        }
    }

    pub fn n_nodes(&self) -> usize {
        self.n_users + self.n_items
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Number of (user, item) training pairs: the official sampler's draws per epoch.
    pub fn n_train_pairs(&self) -> usize {
        self.nnz() / 2
    }

    pub fn positives(&self, user: u32) -> &[u32] {
        &self.positives[user as usize]
    }

    /// `out = Â · x` for `x`, `out` of shape `n_nodes × d` (row-major). Rows are computed in
    /// parallel, each summed sequentially in CSR order, so the result is bit-identical for any
    /// thread count.
    pub fn spmm(&self, x: &[f32], d: usize, out: &mut [f32]) {
        self.spmm_near(x, d, out, None);
    }

    /// `out = Â · x + add` (the Horner step of the backward pass), same determinism as [`Self::spmm`].
    pub fn spmm_add(&self, x: &[f32], add: &[f32], d: usize, out: &mut [f32]) {
        self.spmm_add_near(x, add, d, out, None, None);
    }

    /// The nodes adjacent to node `r`, in the order its row of Â sums them.
    pub fn neighbours(&self, r: usize) -> &[u32] {
        &self.indices[self.indptr[r]..self.indptr[r + 1]]
    }

    /// Marks `rows` and every row adjacent to one of them in `near` (cleared first).
    pub fn mark_neighbourhood(&self, rows: &[u32], near: &mut [bool]) {
        near.fill(false);
        for &r in rows {
            let r = r as usize;
            near[r] = true;
            for &c in self.neighbours(r) {
                near[c as usize] = true;
            }
        }
    }

    /// [`Self::spmm`] on the rows `near` marks (every row with `None`); the other rows of `out`
    /// are left as they were. Each computed row gets the same bits as from `spmm`.
    pub fn spmm_near(&self, x: &[f32], d: usize, out: &mut [f32], near: Option<&[bool]>) {
        debug_assert_eq!(x.len(), self.n_nodes() * d);
        debug_assert_eq!(out.len(), self.n_nodes() * d);
        out.par_chunks_mut(d)
            .with_min_len(64)
            .enumerate()
            .for_each(|(r, row)| {
                if near.is_none_or(|n| n[r]) {
                    self.row_product(r, x, d, row);
                }
            });
    }

    /// [`Self::spmm_add`] for an `x` that is +0.0 outside the rows `live` marks (`None`: any
    /// row may be non-zero), computed on the rows `rows` marks (`None`: every row). The caller
    /// promises that a row `rows` leaves out has no neighbour in `live`: its product is the +0.0
    /// the full kernel would sum to, so only the addition is done there.
    ///
    /// Terms from rows outside `live` are skipped, not gathered. That keeps every bit: each
    /// such term is a positive weight times +0.0, i.e. +0.0, and adding +0.0 leaves an
    /// accumulator unchanged unless it is −0.0, which one that starts at +0.0 never becomes
    /// (a rounded sum is −0.0 only when both addends are). So the result is `spmm_add`'s, at
    /// the cost of the terms that can be non-zero.
    pub fn spmm_add_near(
        &self,
        x: &[f32],
        add: &[f32],
        d: usize,
        out: &mut [f32],
        rows: Option<&[bool]>,
        live: Option<&[bool]>,
    ) {
        debug_assert_eq!(x.len(), self.n_nodes() * d);
        debug_assert_eq!(out.len(), self.n_nodes() * d);
        out.par_chunks_mut(d)
            .with_min_len(64)
            .enumerate()
            .for_each(|(r, row)| {
                let add = &add[r * d..(r + 1) * d];
                if rows.is_none_or(|n| n[r]) {
                    match live {
                        None => self.row_product_of(r, x, d, row, AllRows),
                        Some(live) => self.row_product_of(r, x, d, row, live),
                    }
                    for (o, a) in row.iter_mut().zip(add) {
                        *o += a;
                    }
                } else {
                    for (o, a) in row.iter_mut().zip(add) {
                        *o = 0.0 + a;
                    }
                }
            });
    }

    /// Row `r` of Â · x, for only the rows a minibatch needs.
    pub fn row_product(&self, r: usize, x: &[f32], d: usize, row: &mut [f32]) {
        self.row_product_of(r, x, d, row, AllRows);
    }

    /// Row `r` of Â · x for an `x` that is +0.0 outside the rows `live` marks, adding only the
    /// terms from those rows, in CSR order (the same bits as adding them all; see
    /// [`Self::spmm_add_near`]).
    fn row_product_of(&self, r: usize, x: &[f32], d: usize, row: &mut [f32], live: impl Live) {
        let (lo, hi) = (self.indptr[r], self.indptr[r + 1]);
        let (cols, vals) = (&self.indices[lo..hi], &self.values[lo..hi]);
        // The rows this row will gather next, including the next rows' first ones: what the
        // fixed-width kernels prefetch while they add up the current row.
        let ahead = &self.indices[lo..(hi + PREFETCH_AHEAD).min(self.indices.len())];
        // A fixed width keeps the accumulator in registers and lets the compiler vectorise.
        match d {
            64 => row_fixed_dispatch::<64, _>(cols, vals, ahead, x, row, live),
            32 => row_fixed_dispatch::<32, _>(cols, vals, ahead, x, row, live),
            16 => row_fixed_dispatch::<16, _>(cols, vals, ahead, x, row, live),
            _ => row_any(cols, vals, x, d, row, live),
        }
    }
}

/// Which rows of the gathered table may be non-zero. A type rather than an `Option`, so the
/// kernels are compiled once per kind and the full product has no per-term test.
trait Live: Copy + Send + Sync {
    fn may_be_nonzero(self, c: u32) -> bool;
}

/// Every row may be non-zero: the plain product.
#[derive(Clone, Copy)]
struct AllRows;

impl Live for AllRows {
    #[inline(always)]
    fn may_be_nonzero(self, _: u32) -> bool {
        true
    }
}

/// Only the rows the mask marks may be non-zero.
impl Live for &[bool] {
    #[inline(always)]
    fn may_be_nonzero(self, c: u32) -> bool {
        self[c as usize]
    }
}

/// Any width, without the register accumulator.
fn row_any(cols: &[u32], vals: &[f32], x: &[f32], d: usize, row: &mut [f32], live: impl Live) {
    row.fill(0.0);
    for (&c, &v) in cols.iter().zip(vals) {
        if !live.may_be_nonzero(c) {
            continue;
        }
        let src = &x[c as usize * d..(c as usize + 1) * d];
        for (o, s) in row.iter_mut().zip(src) {
            *o += v * s;
        }
    }
}

/// How many non-zeros ahead the kernels prefetch the gathered row. A row of the embedding table
/// is d floats at a random place in a table larger than L2, so an SpMM waits on memory for
/// every non-zero unless the load was started a few non-zeros earlier.
const PREFETCH_AHEAD: usize = 6;

/// Uses 256-bit AVX registers when the CPU has them (the default x86-64 target only assumes
/// SSE2). Deliberately not FMA: separate multiply and add round exactly as the SSE2 path does, so
/// results are the same bits on every x86-64 machine.
#[inline(always)]
fn row_fixed_dispatch<const D: usize, L: Live>(
    cols: &[u32],
    vals: &[f32],
    ahead: &[u32],
    x: &[f32],
    row: &mut [f32],
    live: L,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX (checked on the line above).
        return unsafe { row_fixed_avx::<D, L>(cols, vals, ahead, x, row, live) };
    }
    row_fixed::<D, L>(cols, vals, ahead, x, row, live)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn row_fixed_avx<const D: usize, L: Live>(
    cols: &[u32],
    vals: &[f32],
    ahead: &[u32],
    x: &[f32],
    row: &mut [f32],
    live: L,
) {
    row_fixed::<D, L>(cols, vals, ahead, x, row, live)
}

/// Starts loading row `c` of `x` into the cache. A hint only: it changes no value.
#[inline(always)]
fn prefetch_row<const D: usize>(x: &[f32], c: u32) {
    #[cfg(target_arch = "x86_64")]
    if let Some(src) = x.get(c as usize * D..(c as usize + 1) * D) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in src.chunks(16) {
            // SAFETY: a prefetch reads nothing the program sees and cannot fault; the address
            // is inside `x` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
}

/// Adds up the terms whose row `live` may hold non-zeros (and prefetches only those).
#[inline(always)]
fn row_fixed<const D: usize, L: Live>(
    cols: &[u32],
    vals: &[f32],
    ahead: &[u32],
    x: &[f32],
    row: &mut [f32],
    live: L,
) {
    let mut acc = [0f32; D];
    for (i, (&c, &v)) in cols.iter().zip(vals).enumerate() {
        if let Some(&next) = ahead.get(i + PREFETCH_AHEAD)
            && live.may_be_nonzero(next)
        {
            prefetch_row::<D>(x, next);
        }
        if !live.may_be_nonzero(c) {
            continue;
        }
        let src: &[f32; D] = x[c as usize * D..(c as usize + 1) * D]
            .try_into()
            .expect("row width");
        for j in 0..D {
            acc[j] += v * src[j];
        }
    }
    row.copy_from_slice(&acc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    fn dense(adj: &NormAdj) -> Vec<Vec<f64>> {
        let n = adj.n_nodes();
        let mut m = vec![vec![0.0; n]; n];
        for r in 0..n {
            for k in adj.indptr[r]..adj.indptr[r + 1] {
                m[r][adj.indices[k] as usize] = adj.values[k] as f64;
            }
        }
        m
    }

    #[test]
    fn normalised_symmetric_without_self_loops() {
        let ds = synthetic::tiny();
        let adj = NormAdj::from_dataset(&ds);
        let m = dense(&adj);
        let n = adj.n_nodes();
        for r in 0..n {
            assert_eq!(m[r][r], 0.0);
            for c in 0..n {
                assert!((m[r][c] - m[c][r]).abs() < 1e-7);
            }
        }
        // User 0 trains on items 0, 1, 2; item 0 is trained on by users 0, 2, 4.
        let expected = 1.0 / (3f64.sqrt() * 3f64.sqrt());
        assert!((m[0][adj.n_users] - expected).abs() < 1e-7);
        assert_eq!(
            adj.n_train_pairs(),
            ds.train.iter().map(Vec::len).sum::<usize>()
        );
    }

    #[test]
    fn isolated_items_get_zero_rows() {
        let adj = NormAdj::from_positives(vec![vec![0, 1], vec![1]], 3);
        let m = dense(&adj);
        assert!(m[2 + 2].iter().all(|&v| v == 0.0));
        assert!((m[1][2 + 1] - 1.0 / 2f64.sqrt()).abs() < 1e-7);
    }

    #[test]
    fn vector_and_scalar_kernels_agree_bit_for_bit() {
        let ds = synthetic::clustered(30, 40, 3, 5, 2);
        let adj = NormAdj::from_dataset(&ds);
        let d = 64;
        let x: Vec<f32> = (0..adj.n_nodes() * d)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 7.0)
            .collect();
        for r in 0..adj.n_nodes() {
            let (lo, hi) = (adj.indptr[r], adj.indptr[r + 1]);
            let (cols, vals) = (&adj.indices[lo..hi], &adj.values[lo..hi]);
            let mut a = vec![0.0; d];
            let mut b = vec![0.0; d];
            // Without prefetching (no rows ahead) and with it: the hint must change no bit.
            row_fixed::<64, _>(cols, vals, &[], &x, &mut a, AllRows);
            row_fixed_dispatch::<64, _>(cols, vals, &adj.indices[lo..], &x, &mut b, AllRows);
            assert_eq!(a, b, "row {r}");
        }
    }

    #[test]
    fn spmm_matches_dense_product_for_every_width() {
        let ds = synthetic::clustered(30, 40, 3, 5, 9);
        let adj = NormAdj::from_dataset(&ds);
        let m = dense(&adj);
        let n = adj.n_nodes();
        for d in [3, 16, 64] {
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let mut out = vec![0.0; n * d];
            adj.spmm(&x, d, &mut out);
            for r in 0..n {
                for j in 0..d {
                    let e: f64 = (0..n).map(|c| m[r][c] * x[c * d + j] as f64).sum();
                    assert!(
                        (out[r * d + j] as f64 - e).abs() < 1e-5,
                        "d {d} r {r} j {j}"
                    );
                }
            }
            let mut out2 = vec![0.0; n * d];
            adj.spmm_add(&x, &x, d, &mut out2);
            for k in 0..n * d {
                assert_eq!(out2[k], out[k] + x[k]);
            }
        }
    }
}
