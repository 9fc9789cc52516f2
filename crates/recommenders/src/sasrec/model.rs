//! SASRec forward pass and its hand-written backward, on row-packed batches.
//!
//! Sequences are right-aligned in a window of `maxlen` slots with left padding, as in the
//! reference code. Padding rows never influence a real row there (keys are padding-masked,
//! padding rows are zeroed after every block and carry no loss), so only the `n ≤ maxlen` real
//! rows of each sequence are stored and computed: row `j` of a sequence of length `n` sits in
//! slot `maxlen − n + j`, which selects its positional embedding. All rows of a batch are
//! packed into one `R × d` matrix so the linear layers are single large GEMMs; attention runs
//! per sequence.
//!
//! Block layout (kang205/SASRec, pmixer/SASRec.pytorch before 2025), for input `x`:
//! ```text
//! q̂ = LN₁(x)
//! y = q̂ + Dropout(softmax(causal(q̂Wq+bq)(xWk+bk)ᵀ/√d)) (xWv+bv)
//! z = LN₂(y)
//! x' = z + Dropout(Dropout(ReLU(zW₁+b₁))W₂+b₂)
//! ```
//! then `H = LN_f(x)` after the last block, and `logit(i) = H·E_i`.

use super::kernels::{
    add_to, axpy, dot, gemm, layer_norm_bwd, layer_norm_fwd, linear_bwd, linear_fwd, split_lengths,
};
use super::params::{BlockSpans, Layout, Span};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A row-packed batch of right-aligned sequences.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Real (non-padding) length of each sequence, `1..=maxlen`.
    pub lens: Vec<usize>,
    /// Input item of every row, sequence after sequence.
    pub items: Vec<u32>,
    /// Next item (positive target) of every row; empty at inference.
    pub pos: Vec<u32>,
    /// Sampled negative of every row; empty at inference.
    pub neg: Vec<u32>,
}

impl Batch {
    pub fn n_rows(&self) -> usize {
        self.items.len()
    }

    /// Append the last `maxlen` items of `seq` as one inference sequence.
    pub fn push_inference(&mut self, seq: &[u32], maxlen: usize) {
        let s = &seq[seq.len().saturating_sub(maxlen)..];
        assert!(!s.is_empty(), "SASRec needs a non-empty history");
        self.lens.push(s.len());
        self.items.extend_from_slice(s);
    }
}

/// Hyper-parameters the passes need.
#[derive(Debug, Clone, Copy)]
pub struct PassConfig {
    pub dropout: f32,
    pub ln_eps: f32,
}

#[derive(Debug, Default)]
struct BlockTape {
    x_in: Vec<f32>,
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    q: Vec<f32>,
    qp: Vec<f32>,
    kp: Vec<f32>,
    vp: Vec<f32>,
    att: Vec<f32>,
    att_mask: Vec<f32>,
    o: Vec<f32>,
    y: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    z: Vec<f32>,
    h1: Vec<f32>,
    m1: Vec<f32>,
    h1d: Vec<f32>,
    f: Vec<f32>,
    m2: Vec<f32>,
}

/// Activations kept from the forward pass for the backward; reused across steps.
#[derive(Debug, Default)]
pub struct Tape {
    rows: usize,
    d: usize,
    dropout_on: bool,
    emb_mask: Vec<f32>,
    blocks: Vec<BlockTape>,
    x_last: Vec<f32>,
    xhatf: Vec<f32>,
    rstdf: Vec<f32>,
    /// Final hidden states `H`, `R × d`.
    pub hidden: Vec<f32>,
    pos_logit: Vec<f32>,
    neg_logit: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

impl Tape {
    /// The final hidden state of the last row of every sequence: the user representation.
    pub fn last_rows(&self, lens: &[usize]) -> Vec<&[f32]> {
        let d = self.d;
        let mut end = 0;
        lens.iter()
            .map(|&n| {
                end += n;
                &self.hidden[(end - 1) * d..end * d]
            })
            .collect()
    }
}

/// Dropout masks are drawn per sequence from their own ChaCha stream, so they do not depend on
/// how rayon splits the work.
fn fill_dropout(mask: &mut [f32], per_seq: &[usize], p: f32, seed: u64, tag: u64) {
    let keep = 1.0 / (1.0 - p);
    let threshold = (p as f64 * 4294967296.0) as u64;
    split_lengths(mask, per_seq)
        .into_par_iter()
        .enumerate()
        .for_each(|(s, m)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream((s as u64) << 8 | tag);
            for x in m.iter_mut() {
                *x = if (rng.next_u32() as u64) < threshold {
                    0.0
                } else {
                    keep
                };
            }
        });
}

fn mul_assign(x: &mut [f32], m: &[f32]) {
    x.par_chunks_mut(4096)
        .zip(m.par_chunks(4096))
        .for_each(|(a, b)| {
            for (u, v) in a.iter_mut().zip(b) {
                *u *= *v;
            }
        });
}

/// Forward pass. With `train_seed = Some(seed)` and `dropout > 0`, dropout is active with masks
/// derived from `seed`; with targets in the batch, returns the mean BCE loss.
pub fn forward(
    params: &[f32],
    layout: &Layout,
    cfg: PassConfig,
    batch: &Batch,
    tape: &mut Tape,
    train_seed: Option<u64>,
) -> Option<f64> {
    let d = layout.d;
    let r = batch.n_rows();
    let maxlen = layout.maxlen;
    tape.rows = r;
    tape.d = d;
    tape.dropout_on = train_seed.is_some() && cfg.dropout > 0.0;
    let seed = train_seed.unwrap_or(0);
    let row_lens: Vec<usize> = batch.lens.iter().map(|&n| n * d).collect();
    let att_lens: Vec<usize> = batch.lens.iter().map(|&n| n * n).collect();
    let att_total: usize = att_lens.iter().sum();
    let scale = (d as f32).sqrt();

    // Embedding: E[i]·√d + P[slot].
    let item_emb = &params[layout.item_emb.range()];
    let pos_emb = &params[layout.pos_emb.range()];
    let mut x = std::mem::take(&mut tape.x_last);
    fit(&mut x, r * d);
    {
        let mut row = 0;
        for &n in &batch.lens {
            assert!(
                (1..=maxlen).contains(&n),
                "sequence length {n} outside 1..={maxlen}"
            );
            for j in 0..n {
                let slot = maxlen - n + j;
                let it = batch.items[row] as usize;
                let xr = &mut x[row * d..(row + 1) * d];
                let er = &item_emb[it * d..(it + 1) * d];
                let pr = &pos_emb[slot * d..(slot + 1) * d];
                for k in 0..d {
                    xr[k] = er[k] * scale + pr[k];
                }
                row += 1;
            }
        }
    }
    if tape.dropout_on {
        fit(&mut tape.emb_mask, r * d);
        fill_dropout(&mut tape.emb_mask, &row_lens, cfg.dropout, seed, 0);
        mul_assign(&mut x, &tape.emb_mask);
    }

    tape.blocks
        .resize_with(layout.blocks.len(), BlockTape::default);
    for (b, spans) in layout.blocks.iter().enumerate() {
        let bt = &mut tape.blocks[b];
        bt.x_in = x;
        block_forward(
            params,
            spans,
            d,
            cfg,
            &batch.lens,
            &row_lens,
            &att_lens,
            att_total,
            bt,
            tape.dropout_on.then_some(seed),
            b as u64,
        );
        // x' = z + f (f already dropped out)
        let mut out = std::mem::take(&mut bt.y);
        out.par_chunks_mut(4096)
            .zip(bt.z.par_chunks(4096))
            .zip(bt.f.par_chunks(4096))
            .for_each(|((o, z), f)| {
                for k in 0..o.len() {
                    o[k] = z[k] + f[k];
                }
            });
        x = out;
    }

    fit(&mut tape.xhatf, r * d);
    fit(&mut tape.rstdf, r);
    fit(&mut tape.hidden, r * d);
    layer_norm_fwd(
        &x,
        d,
        &params[layout.lnf_g.range()],
        &params[layout.lnf_b.range()],
        cfg.ln_eps,
        &mut tape.xhatf,
        &mut tape.rstdf,
        &mut tape.hidden,
    );
    tape.x_last = x;

    if batch.pos.is_empty() {
        return None;
    }
    assert_eq!(batch.pos.len(), r);
    assert_eq!(batch.neg.len(), r);
    fit(&mut tape.pos_logit, r);
    fit(&mut tape.neg_logit, r);
    let hidden = &tape.hidden;
    tape.pos_logit
        .par_iter_mut()
        .zip(tape.neg_logit.par_iter_mut())
        .enumerate()
        .for_each(|(i, (pl, nl))| {
            let h = &hidden[i * d..(i + 1) * d];
            let p = batch.pos[i] as usize;
            let n = batch.neg[i] as usize;
            *pl = dot(h, &item_emb[p * d..(p + 1) * d]);
            *nl = dot(h, &item_emb[n * d..(n + 1) * d]);
        });
    Some(bce_loss(&tape.pos_logit, &tape.neg_logit))
}

/// Eq. (the SASRec paper's training objective): mean over real positions of
/// `−log σ(r_pos) − log(1 − σ(r_neg))`, written with a stable softplus.
pub fn bce_loss(pos_logit: &[f32], neg_logit: &[f32]) -> f64 {
    let n = pos_logit.len() as f64;
    let s: f64 = pos_logit
        .iter()
        .zip(neg_logit)
        .map(|(&p, &q)| softplus(-p as f64) + softplus(q as f64))
        .sum();
    s / n
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[allow(clippy::too_many_arguments)]
fn block_forward(
    params: &[f32],
    s: &BlockSpans,
    d: usize,
    cfg: PassConfig,
    lens: &[usize],
    row_lens: &[usize],
    att_lens: &[usize],
    att_total: usize,
    bt: &mut BlockTape,
    seed: Option<u64>,
    block: u64,
) {
    let r = bt.x_in.len() / d;
    let p = |sp: Span| &params[sp.range()];
    for v in [
        &mut bt.xhat1,
        &mut bt.q,
        &mut bt.qp,
        &mut bt.kp,
        &mut bt.vp,
        &mut bt.o,
        &mut bt.y,
        &mut bt.xhat2,
        &mut bt.z,
        &mut bt.h1,
        &mut bt.h1d,
        &mut bt.f,
    ] {
        fit(v, r * d);
    }
    fit(&mut bt.rstd1, r);
    fit(&mut bt.rstd2, r);
    fit(&mut bt.att, att_total);

    layer_norm_fwd(
        &bt.x_in,
        d,
        p(s.ln1_g),
        p(s.ln1_b),
        cfg.ln_eps,
        &mut bt.xhat1,
        &mut bt.rstd1,
        &mut bt.q,
    );
    linear_fwd(&bt.q, d, p(s.wq), p(s.bq), d, &mut bt.qp);
    linear_fwd(&bt.x_in, d, p(s.wk), p(s.bk), d, &mut bt.kp);
    linear_fwd(&bt.x_in, d, p(s.wv), p(s.bv), d, &mut bt.vp);

    let tag = 1 + block * 3;
    if let Some(seed) = seed {
        fit(&mut bt.att_mask, att_total);
        fill_dropout(&mut bt.att_mask, att_lens, cfg.dropout, seed, tag);
    } else {
        bt.att_mask.clear();
    }
    let inv = 1.0 / (d as f32).sqrt();
    {
        let qs = split_by(&bt.qp, row_lens);
        let ks = split_by(&bt.kp, row_lens);
        let vs = split_by(&bt.vp, row_lens);
        let masks: Vec<Option<&[f32]>> = if bt.att_mask.is_empty() {
            vec![None; lens.len()]
        } else {
            split_by(&bt.att_mask, att_lens)
                .into_iter()
                .map(Some)
                .collect()
        };
        let atts = split_lengths(&mut bt.att, att_lens);
        let os = split_lengths(&mut bt.o, row_lens);
        atts.into_par_iter()
            .zip(os)
            .enumerate()
            .for_each(|(si, (att, o))| {
                attention_fwd(lens[si], d, inv, qs[si], ks[si], vs[si], masks[si], att, o);
            });
    }
    // y = q̂ + O: the residual is the normalised query, as in the reference code.
    bt.y.copy_from_slice(&bt.q);
    add_to(&mut bt.y, &bt.o);
    layer_norm_fwd(
        &bt.y,
        d,
        p(s.ln2_g),
        p(s.ln2_b),
        cfg.ln_eps,
        &mut bt.xhat2,
        &mut bt.rstd2,
        &mut bt.z,
    );
    linear_fwd(&bt.z, d, p(s.w1), p(s.b1), d, &mut bt.h1);
    for v in bt.h1.iter_mut() {
        *v = v.max(0.0);
    }
    bt.h1d.copy_from_slice(&bt.h1);
    if let Some(seed) = seed {
        fit(&mut bt.m1, r * d);
        fill_dropout(&mut bt.m1, row_lens, cfg.dropout, seed, tag + 1);
        mul_assign(&mut bt.h1d, &bt.m1);
    }
    linear_fwd(&bt.h1d, d, p(s.w2), p(s.b2), d, &mut bt.f);
    if let Some(seed) = seed {
        fit(&mut bt.m2, r * d);
        fill_dropout(&mut bt.m2, row_lens, cfg.dropout, seed, tag + 2);
        mul_assign(&mut bt.f, &bt.m2);
    }
}

fn split_by<'a>(buf: &'a [f32], lens: &[usize]) -> Vec<&'a [f32]> {
    let mut out = Vec::with_capacity(lens.len());
    let mut rest = buf;
    for &l in lens {
        let (h, t) = rest.split_at(l);
        out.push(h);
        rest = t;
    }
    out
}

/// Causal single-head attention of one sequence: `A = softmax_{j≤i}(q_i·k_j/√d)`,
/// `O = (A ⊙ mask) V`. `att` keeps the pre-dropout weights `A` (`n × n`, upper part zero).
/// The products run as full `n × n` GEMMs: twice the FLOPs of the causal half, but far faster
/// than dot-product loops at these sizes.
#[allow(clippy::too_many_arguments)]
fn attention_fwd(
    n: usize,
    d: usize,
    inv_sqrt_d: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    att: &mut [f32],
    o: &mut [f32],
) {
    gemm(n, d, n, q, false, k, true, 0.0, att);
    for i in 0..n {
        let row = &mut att[i * n..(i + 1) * n];
        let mut mx = f32::NEG_INFINITY;
        for x in row[..=i].iter_mut() {
            *x *= inv_sqrt_d;
            mx = mx.max(*x);
        }
        let mut sum = 0.0f32;
        for x in row[..=i].iter_mut() {
            *x = (*x - mx).exp();
            sum += *x;
        }
        let is = 1.0 / sum;
        for x in row[..=i].iter_mut() {
            *x *= is;
        }
        row[i + 1..].fill(0.0);
    }
    match mask {
        Some(m) => {
            let dropped: Vec<f32> = att.iter().zip(m).map(|(a, m)| a * m).collect();
            gemm(n, n, d, &dropped, false, v, false, 0.0, o);
        }
        None => gemm(n, n, d, att, false, v, false, 0.0, o),
    }
}

/// Backward of [`attention_fwd`]; writes (overwrites) `dq`, `dk`, `dv` for the sequence:
/// `dV = (A⊙M)ᵀdO`, `dA = (dO Vᵀ)⊙M`, `dS = A⊙(dA − rowsum(A⊙dA))/√d`, `dQ = dS K`,
/// `dK = dSᵀQ`.
#[allow(clippy::too_many_arguments)]
fn attention_bwd(
    n: usize,
    d: usize,
    inv_sqrt_d: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    att: &[f32],
    d_o: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let mut ds = vec![0.0f32; n * n];
    match mask {
        Some(m) => {
            let dropped: Vec<f32> = att.iter().zip(m).map(|(a, m)| a * m).collect();
            gemm(n, n, d, &dropped, true, d_o, false, 0.0, dv);
        }
        None => gemm(n, n, d, att, true, d_o, false, 0.0, dv),
    }
    gemm(n, d, n, d_o, false, v, true, 0.0, &mut ds);
    for i in 0..n {
        let row = &att[i * n..(i + 1) * n];
        let dsr = &mut ds[i * n..(i + 1) * n];
        if let Some(m) = mask {
            for (x, mm) in dsr[..=i].iter_mut().zip(&m[i * n..=i * n + i]) {
                *x *= mm;
            }
        }
        let s = dot(&row[..=i], &dsr[..=i]);
        for j in 0..=i {
            dsr[j] = row[j] * (dsr[j] - s) * inv_sqrt_d;
        }
        dsr[i + 1..].fill(0.0);
    }
    gemm(n, n, d, &ds, false, k, false, 0.0, dq);
    gemm(n, n, d, &ds, true, q, false, 0.0, dk);
}

/// Backward pass after a training [`forward`]: accumulates `∂loss/∂params` into `grads`
/// (same layout as `params`; not zeroed here).
pub fn backward(
    params: &[f32],
    layout: &Layout,
    batch: &Batch,
    tape: &mut Tape,
    grads: &mut [f32],
) {
    let d = layout.d;
    let r = tape.rows;
    let maxlen = layout.maxlen;
    let item_emb = &params[layout.item_emb.range()];
    let row_lens: Vec<usize> = batch.lens.iter().map(|&n| n * d).collect();
    let att_lens: Vec<usize> = batch.lens.iter().map(|&n| n * n).collect();

    // Loss → logits → H and the output item embeddings.
    let inv_n = 1.0 / r as f32;
    let mut dh = vec![0.0f32; r * d];
    {
        let hidden = &tape.hidden;
        let (pl, nl) = (&tape.pos_logit, &tape.neg_logit);
        dh.par_chunks_mut(d).enumerate().for_each(|(i, dhr)| {
            let gp = (sigmoid(pl[i]) - 1.0) * inv_n;
            let gn = sigmoid(nl[i]) * inv_n;
            let p = batch.pos[i] as usize;
            let q = batch.neg[i] as usize;
            for k in 0..d {
                dhr[k] = gp * item_emb[p * d + k] + gn * item_emb[q * d + k];
            }
        });
        // Scatter into the embedding table in row order: deterministic.
        let ge = &mut grads[layout.item_emb.range()];
        for i in 0..r {
            let h = &hidden[i * d..(i + 1) * d];
            let gp = (sigmoid(pl[i]) - 1.0) * inv_n;
            let gn = sigmoid(nl[i]) * inv_n;
            let p = batch.pos[i] as usize;
            let q = batch.neg[i] as usize;
            axpy(gp, h, &mut ge[p * d..(p + 1) * d]);
            axpy(gn, h, &mut ge[q * d..(q + 1) * d]);
        }
    }

    let mut dx = vec![0.0f32; r * d];
    {
        let (gg, gb) = grads_pair(grads, layout.lnf_g, layout.lnf_b);
        layer_norm_bwd(
            &dh,
            d,
            &params[layout.lnf_g.range()],
            &tape.xhatf,
            &tape.rstdf,
            &mut dx,
            false,
            gg,
            gb,
        );
    }

    let inv = 1.0 / (d as f32).sqrt();
    for (b, s) in layout.blocks.iter().enumerate().rev() {
        let bt = &tape.blocks[b];
        let p = |sp: Span| &params[sp.range()];
        // x' = z + f·m2  ⇒  dz = dx', df = dx'·m2
        let mut df = dx.clone();
        if tape.dropout_on {
            mul_assign(&mut df, &bt.m2);
        }
        let mut dz = dx; // accumulates the FFN path below
        let mut dh1 = vec![0.0f32; r * d];
        {
            let (gw, gb) = grads_pair(grads, s.w2, s.b2);
            linear_bwd(&bt.h1d, d, p(s.w2), &df, d, Some((&mut dh1, false)), gw, gb);
        }
        if tape.dropout_on {
            mul_assign(&mut dh1, &bt.m1);
        }
        for (g, h) in dh1.iter_mut().zip(&bt.h1) {
            if *h <= 0.0 {
                *g = 0.0;
            }
        }
        {
            let (gw, gb) = grads_pair(grads, s.w1, s.b1);
            linear_bwd(&bt.z, d, p(s.w1), &dh1, d, Some((&mut dz, true)), gw, gb);
        }
        // z = LN₂(y)
        let mut dy = dh1; // reuse buffer
        {
            let (gg, gb) = grads_pair(grads, s.ln2_g, s.ln2_b);
            layer_norm_bwd(
                &dz,
                d,
                p(s.ln2_g),
                &bt.xhat2,
                &bt.rstd2,
                &mut dy,
                false,
                gg,
                gb,
            );
        }
        // y = q̂ + O
        let mut dq_hat = dy.clone();
        let mut dqp = vec![0.0f32; r * d];
        let mut dkp = vec![0.0f32; r * d];
        let mut dvp = dz; // reuse buffer
        {
            let qs = split_by(&bt.qp, &row_lens);
            let ks = split_by(&bt.kp, &row_lens);
            let vs = split_by(&bt.vp, &row_lens);
            let atts = split_by(&bt.att, &att_lens);
            let dos = split_by(&dy, &row_lens);
            let masks: Vec<Option<&[f32]>> = if tape.dropout_on {
                split_by(&bt.att_mask, &att_lens)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None; batch.lens.len()]
            };
            let dqs = split_lengths(&mut dqp, &row_lens);
            let dks = split_lengths(&mut dkp, &row_lens);
            let dvs = split_lengths(&mut dvp, &row_lens);
            dqs.into_par_iter()
                .zip(dks)
                .zip(dvs)
                .enumerate()
                .for_each(|(si, ((dq, dk), dv))| {
                    attention_bwd(
                        batch.lens[si],
                        d,
                        inv,
                        qs[si],
                        ks[si],
                        vs[si],
                        masks[si],
                        atts[si],
                        dos[si],
                        dq,
                        dk,
                        dv,
                    );
                });
        }
        let mut dxin = vec![0.0f32; r * d];
        {
            let (gw, gb) = grads_pair(grads, s.wq, s.bq);
            linear_bwd(
                &bt.q,
                d,
                p(s.wq),
                &dqp,
                d,
                Some((&mut dq_hat, true)),
                gw,
                gb,
            );
        }
        {
            let (gw, gb) = grads_pair(grads, s.wk, s.bk);
            linear_bwd(
                &bt.x_in,
                d,
                p(s.wk),
                &dkp,
                d,
                Some((&mut dxin, false)),
                gw,
                gb,
            );
        }
        {
            let (gw, gb) = grads_pair(grads, s.wv, s.bv);
            linear_bwd(
                &bt.x_in,
                d,
                p(s.wv),
                &dvp,
                d,
                Some((&mut dxin, true)),
                gw,
                gb,
            );
        }
        {
            let (gg, gb) = grads_pair(grads, s.ln1_g, s.ln1_b);
            layer_norm_bwd(
                &dq_hat,
                d,
                p(s.ln1_g),
                &bt.xhat1,
                &bt.rstd1,
                &mut dxin,
                true,
                gg,
                gb,
            );
        }
        dx = dxin;
    }

    // Embedding dropout and the input embeddings: x0 = E[i]·√d + P[slot].
    if tape.dropout_on {
        mul_assign(&mut dx, &tape.emb_mask);
    }
    let scale = (d as f32).sqrt();
    let (ge, gp) = split_two(grads, layout.item_emb.off, layout.pos_emb.off);
    let mut row = 0;
    for &n in &batch.lens {
        for j in 0..n {
            let slot = maxlen - n + j;
            let it = batch.items[row] as usize;
            let g = &dx[row * d..(row + 1) * d];
            axpy(scale, g, &mut ge[it * d..(it + 1) * d]);
            add_to(&mut gp[slot * d..(slot + 1) * d], g);
            row += 1;
        }
    }
}

/// Two disjoint mutable views: `[a_off..b_off)` and `[b_off..)`.
fn split_two(grads: &mut [f32], a_off: usize, b_off: usize) -> (&mut [f32], &mut [f32]) {
    let (lo, hi) = grads.split_at_mut(b_off);
    (&mut lo[a_off..], hi)
}

/// Disjoint mutable views of two tensors, `a` stored before `b`.
fn grads_pair(grads: &mut [f32], a: Span, b: Span) -> (&mut [f32], &mut [f32]) {
    let (lo, hi) = split_two(grads, a.off, b.off);
    (&mut lo[..a.len()], &mut hi[..b.len()])
}
