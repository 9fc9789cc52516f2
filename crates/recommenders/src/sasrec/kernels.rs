//! Row-packed dense kernels: GEMM, LayerNorm, reductions.
//!
//! Determinism rule: every parallel loop either writes disjoint outputs, or reduces over a
//! fixed partition of rows (`REDUCE_ROWS`) whose partial sums are added in partition order,
//! so 1 and N rayon threads give bit-identical results.

use rayon::prelude::*;

/// Rows per parallel work item for row-wise kernels.
pub const PAR_ROWS: usize = 256;
/// Rows per partial sum in reductions over rows; fixed so results do not depend on threads.
pub const REDUCE_ROWS: usize = 512;

/// `c = a·b + beta·c` for row-major `a` (`m×k`, or `k×m` if `ta`), `b` (`k×n`, or `n×k` if
/// `tb`) and `c` (`m×n`).
// BLAS-style kernel: shapes and buffers are the interface, as in the BLAS it mirrors.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    beta: f32,
    c: &mut [f32],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the assert above bounds every index the strides can reach.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `y = x·w + b` over all rows, rows split across threads. `w` is `din × dout`.
pub fn linear_fwd(x: &[f32], din: usize, w: &[f32], b: &[f32], dout: usize, y: &mut [f32]) {
    y.par_chunks_mut(PAR_ROWS * dout)
        .zip(x.par_chunks(PAR_ROWS * din))
        .for_each(|(yc, xc)| {
            let rows = xc.len() / din;
            for r in 0..rows {
                yc[r * dout..(r + 1) * dout].copy_from_slice(b);
            }
            gemm(rows, din, dout, xc, false, w, false, 1.0, yc);
        });
}

/// Backward of [`linear_fwd`]: `dx (+)= dy·wᵀ`, `dw += xᵀ·dy`, `db += Σ_rows dy`.
// BLAS-style kernel: shapes and buffers are the interface, as in the BLAS it mirrors.
#[allow(clippy::too_many_arguments)]
pub fn linear_bwd(
    x: &[f32],
    din: usize,
    w: &[f32],
    dy: &[f32],
    dout: usize,
    dx: Option<(&mut [f32], bool)>,
    dw: &mut [f32],
    db: &mut [f32],
) {
    if let Some((dx, accumulate)) = dx {
        let beta = if accumulate { 1.0 } else { 0.0 };
        dx.par_chunks_mut(PAR_ROWS * din)
            .zip(dy.par_chunks(PAR_ROWS * dout))
            .for_each(|(dxc, dyc)| {
                let rows = dyc.len() / dout;
                gemm(rows, dout, din, dyc, false, w, true, beta, dxc);
            });
    }
    let n_rows = x.len() / din;
    let partials: Vec<Vec<f32>> = (0..n_rows.div_ceil(REDUCE_ROWS))
        .into_par_iter()
        .map(|c| {
            let r0 = c * REDUCE_ROWS;
            let r1 = (r0 + REDUCE_ROWS).min(n_rows);
            let rows = r1 - r0;
            let mut part = vec![0.0f32; din * dout + dout];
            let (pw, pb) = part.split_at_mut(din * dout);
            let xc = &x[r0 * din..r1 * din];
            let dyc = &dy[r0 * dout..r1 * dout];
            gemm(din, rows, dout, xc, true, dyc, false, 0.0, pw);
            for row in dyc.chunks_exact(dout) {
                add_to(pb, row);
            }
            part
        })
        .collect();
    for part in &partials {
        let (pw, pb) = part.split_at(din * dout);
        add_to(dw, pw);
        add_to(db, pb);
    }
}

#[inline]
pub fn add_to(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += *b;
    }
}

#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * *xi;
    }
}

/// Dot product with eight independent accumulators so it vectorises without fast-math.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// LayerNorm over the last axis: `y = γ·(x−μ)/√(σ²+ε) + β` with the biased variance, as TF
/// and torch. Keeps `x̂` and `1/√(σ²+ε)` for the backward.
// BLAS-style kernel: shapes and buffers are the interface, as in the BLAS it mirrors.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_fwd(
    x: &[f32],
    d: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    xhat: &mut [f32],
    rstd: &mut [f32],
    y: &mut [f32],
) {
    y.par_chunks_mut(PAR_ROWS * d)
        .zip(xhat.par_chunks_mut(PAR_ROWS * d))
        .zip(rstd.par_chunks_mut(PAR_ROWS))
        .zip(x.par_chunks(PAR_ROWS * d))
        .for_each(|(((yc, hc), rc), xc)| {
            for (r, xr) in xc.chunks_exact(d).enumerate() {
                let mean = xr.iter().sum::<f32>() / d as f32;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                let rs = 1.0 / (var + eps).sqrt();
                rc[r] = rs;
                let hr = &mut hc[r * d..(r + 1) * d];
                let yr = &mut yc[r * d..(r + 1) * d];
                for j in 0..d {
                    hr[j] = (xr[j] - mean) * rs;
                    yr[j] = gamma[j] * hr[j] + beta[j];
                }
            }
        });
}

/// Backward of [`layer_norm_fwd`]:
/// `dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂))` with `dx̂ = dy ⊙ γ`;
/// `dγ += Σ dy ⊙ x̂`, `dβ += Σ dy`. `dx` is overwritten, or added to if `accumulate`.
// BLAS-style kernel: shapes and buffers are the interface, as in the BLAS it mirrors.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    dy: &[f32],
    d: usize,
    gamma: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    dx.par_chunks_mut(PAR_ROWS * d)
        .zip(dy.par_chunks(PAR_ROWS * d))
        .zip(xhat.par_chunks(PAR_ROWS * d))
        .zip(rstd.par_chunks(PAR_ROWS))
        .for_each(|(((dxc, dyc), hc), rc)| {
            let mut g = vec![0.0f32; d];
            for (r, dyr) in dyc.chunks_exact(d).enumerate() {
                let hr = &hc[r * d..(r + 1) * d];
                let mut m1 = 0.0f32;
                let mut m2 = 0.0f32;
                for j in 0..d {
                    g[j] = dyr[j] * gamma[j];
                    m1 += g[j];
                    m2 += g[j] * hr[j];
                }
                m1 /= d as f32;
                m2 /= d as f32;
                let dxr = &mut dxc[r * d..(r + 1) * d];
                for j in 0..d {
                    let v = rc[r] * (g[j] - m1 - hr[j] * m2);
                    if accumulate {
                        dxr[j] += v;
                    } else {
                        dxr[j] = v;
                    }
                }
            }
        });
    let n_rows = dy.len() / d;
    let partials: Vec<Vec<f32>> = (0..n_rows.div_ceil(REDUCE_ROWS))
        .into_par_iter()
        .map(|c| {
            let r0 = c * REDUCE_ROWS;
            let r1 = (r0 + REDUCE_ROWS).min(n_rows);
            let mut part = vec![0.0f32; 2 * d];
            let (pg, pb) = part.split_at_mut(d);
            for r in r0..r1 {
                let dyr = &dy[r * d..(r + 1) * d];
                let hr = &xhat[r * d..(r + 1) * d];
                for j in 0..d {
                    pg[j] += dyr[j] * hr[j];
                    pb[j] += dyr[j];
                }
            }
            part
        })
        .collect();
    for part in &partials {
        add_to(dgamma, &part[..d]);
        add_to(dbeta, &part[d..]);
    }
}

/// Split `buf` into consecutive mutable pieces of the given lengths.
pub fn split_lengths<'a, T>(mut buf: &'a mut [T], lens: &[usize]) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(lens.len());
    for &l in lens {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(l);
        out.push(head);
        buf = tail;
    }
    out
}
