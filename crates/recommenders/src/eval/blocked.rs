//! Blocked full-ranking evaluation for [`DotScorer`]s, returning exactly what the per-user path
//! ([`mod@super::reference`]) returns.
//!
//! Users are taken in blocks; a block's user vectors are multiplied with tiles of item vectors
//! by one `sgemm` per tile, and each row of the tile is scanned while it is still in cache:
//! history items are masked, the target's rank is counted and a top-K candidate set is kept,
//! without ever sorting or storing a whole row.
//!
//! The GEMM sums each score in another order than [`DotScorer::score`], so its scores may
//! differ in the last bits. They are only used to decide what is certainly above or below; the
//! decisions that could go either way are redone with `score`, the arithmetic the per-user
//! path uses. For a dot product of length `d` evaluated in `f32`, in any summation order, with
//! or without FMA, the error against the exact real value is at most
//! `γ_d·Σ|u_k·e_k| + d·MIN_POSITIVE ≤ γ_d·‖u‖·‖e‖ + d·MIN_POSITIVE` (`γ_d = d·2⁻²⁴/(1 − d·2⁻²⁴)`,
//! the second term covering underflow). So a GEMM score and the per-user score of the same item
//! differ by at most twice that; `Bound` doubles it once more to absorb the rounding of the
//! comparisons themselves. Hence:
//!
//! * rank: an item whose GEMM score is more than the bound above the target's (exact) score is
//!   certainly above it, more than the bound below certainly below; the few in between are
//!   rescored exactly and compared with [`super::rank_of`]'s tie rule;
//! * top-K: with `lo`/`hi` = GEMM score ∓ bound, the K-th largest `lo` over unmasked items is a
//!   lower bound of the true K-th best score, so every item of the true top-K has `hi` at least
//!   that; those candidates are rescored exactly and selected with [`super::top_k`]'s rule
//!   (score, then lower id).
//!
//! The bound assumes finite arithmetic: a user whose vector is non-finite or so large that a
//! partial sum could overflow, or whose history has an out-of-range item, goes through the
//! per-user path, which also reproduces its errors. Results never depend on the GEMM's
//! rounding, hence not on the block size, the kernel matrixmultiply picks or the thread count.

use super::{EvalError, Split, reference};
use crate::sasrec::kernels::gemm;
use crate::{DotScorer, Scorer};
use agp_datasets::Dataset;
use rayon::prelude::*;

/// Users per block: one GEMM's rows. Large enough that packing the item tile is amortised.
const BLOCK_USERS: usize = 256;
/// Items per tile: a `BLOCK_USERS × TILE_ITEMS` score tile is 1 MiB, so the scan after the
/// GEMM reads it from cache.
const TILE_ITEMS: usize = 1024;
/// Users per [`DotScorer::user_vectors`] call: bounds the memory of SASRec's batched forward.
const VECTOR_BATCH: usize = 32;
/// Above this `‖v_u‖·max‖e_i‖` some summation order could overflow `f32`; such users take the
/// per-user path, where the old non-finite check applies unchanged.
const MAX_NORM_PRODUCT: f64 = 1e30;

/// What to compute for every user.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Task {
    /// The target's rank on this split (history and target from the split).
    Rank(Split),
    /// The top-K over items outside train + valid (the export's lists).
    TopK(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Rank(Option<u32>),
    TopK(Vec<(u32, f32)>),
}

/// Whether the blocked path can run at all for this scorer (vector shapes agree).
pub(crate) fn applicable(dot: &dyn DotScorer, n_items: usize) -> bool {
    let d = dot.dim();
    d >= 1 && (d as f64) * EPS < 0.25 && dot.item_vectors().len() == n_items * d
}

/// Unit roundoff of `f32`.
const EPS: f64 = 1.0 / 16_777_216.0;

/// Per-user outcomes for every user of `dataset`, in user order. The first error in user
/// order is returned (the per-user path returns an arbitrary one of several).
pub(crate) fn run<S: Scorer + ?Sized>(
    scorer: &S,
    dot: &dyn DotScorer,
    dataset: &Dataset,
    task: Task,
) -> Result<Vec<Outcome>, EvalError> {
    let n_items = dataset.n_items();
    let items = Items::new(dot, n_items);
    let n_users = dataset.n_users();
    let blocks: Vec<Vec<Result<Outcome, EvalError>>> = (0..n_users.div_ceil(BLOCK_USERS))
        .into_par_iter()
        .map_init(Scratch::default, |scratch, b| {
            let u0 = b * BLOCK_USERS;
            let u1 = (u0 + BLOCK_USERS).min(n_users);
            let ctx = Ctx {
                scorer,
                dot,
                dataset,
                items: &items,
                task,
            };
            ctx.block(u0 as u32..u1 as u32, scratch)
        })
        .collect();
    blocks.into_iter().flatten().collect()
}

struct Items<'a> {
    d: usize,
    n_items: usize,
    vectors: &'a [f32],
    /// `‖e_i‖`, for the per-item bound.
    norms: Vec<f32>,
    max_norm: f64,
    /// A non-finite item vector makes every bound meaningless: all users go per-user.
    finite: bool,
}

impl<'a> Items<'a> {
    fn new(dot: &'a dyn DotScorer, n_items: usize) -> Self {
        let d = dot.dim();
        let vectors = dot.item_vectors();
        let norms64: Vec<f64> = vectors.par_chunks_exact(d).map(norm).collect();
        Self {
            d,
            n_items,
            vectors,
            max_norm: norms64.iter().copied().fold(0.0, f64::max),
            finite: vectors.iter().all(|x| x.is_finite()),
            norms: norms64.iter().map(|&n| n as f32).collect(),
        }
    }

    fn vector(&self, item: u32) -> &[f32] {
        let i = item as usize;
        &self.vectors[i * self.d..(i + 1) * self.d]
    }
}

/// Euclidean norm in `f64`, so that its own rounding is negligible next to the bound's slack.
fn norm(x: &[f32]) -> f64 {
    x.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// `|GEMM score − exact score| ≤ scale·‖e_i‖ + floor` (see the module docs), with a factor 2
/// of slack for the rounding of the bound and of the comparisons that use it.
#[derive(Debug, Clone, Copy)]
struct Bound {
    scale: f32,
    floor: f32,
}

impl Bound {
    fn new(d: usize, user_norm: f64) -> Self {
        const SLACK: f64 = 2.0;
        let n = d as f64;
        let gamma = n * EPS / (1.0 - n * EPS);
        // Two evaluations (GEMM and per-user), each within γ_d‖u‖‖e‖ + d·MIN_POSITIVE.
        let scale = SLACK * 2.0 * gamma * user_norm;
        let floor = SLACK * 2.0 * n * f64::from(f32::MIN_POSITIVE);
        Self {
            scale: scale as f32,
            floor: floor as f32,
        }
    }

    #[inline]
    fn at(self, item_norm: f32) -> f32 {
        self.scale * item_norm + self.floor
    }
}

#[derive(Default)]
struct Scratch {
    tile: Vec<f32>,
    row: Vec<f32>,
}

struct Ctx<'a, S: ?Sized> {
    scorer: &'a S,
    dot: &'a dyn DotScorer,
    dataset: &'a Dataset,
    items: &'a Items<'a>,
    task: Task,
}

impl<S: Scorer + ?Sized> Ctx<'_, S> {
    fn history_split(&self) -> Split {
        match self.task {
            Task::Rank(split) => split,
            Task::TopK(_) => Split::Test,
        }
    }

    /// The per-user path for one user: the reference, unchanged.
    fn per_user(&self, user: u32, scratch: &mut Scratch) -> Result<Outcome, EvalError> {
        scratch.row.resize(self.items.n_items, 0.0);
        let buf = &mut scratch.row;
        match self.task {
            Task::Rank(split) => {
                reference::rank_user(self.scorer, self.dataset, split, user, buf).map(Outcome::Rank)
            }
            Task::TopK(k) => {
                reference::top_k_user(self.scorer, self.dataset, user, k, buf).map(Outcome::TopK)
            }
        }
    }

    fn block(
        &self,
        users: std::ops::Range<u32>,
        scratch: &mut Scratch,
    ) -> Vec<Result<Outcome, EvalError>> {
        let (d, n_items) = (self.items.d, self.items.n_items);
        let u0 = users.start;
        let mut out: Vec<Option<Result<Outcome, EvalError>>> =
            users.clone().map(|_| None).collect();
        let mut per_user = Vec::new();
        let mut cand_users = Vec::new();
        let mut cand_histories = Vec::new();
        for u in users {
            if let Task::Rank(split) = self.task {
                let target = split.target(self.dataset, u);
                if target as usize >= n_items {
                    // The per-user path fails the same way before scoring.
                    per_user.push(u);
                    continue;
                }
            }
            let history = self.history_split().history(self.dataset, u);
            // Out-of-range history items: the per-user path decides what happens (an error,
            // or whatever the model does with them) exactly as before.
            if !self.items.finite
                || history.iter().any(|&h| h as usize >= n_items)
                || !self.dot.has_user_vector(&history)
            {
                per_user.push(u);
                continue;
            }
            cand_users.push(u);
            cand_histories.push(history);
        }

        let mut vectors = vec![0f32; cand_users.len() * d];
        for (c, chunk) in vectors.chunks_mut(VECTOR_BATCH * d).enumerate() {
            let r = c * VECTOR_BATCH..c * VECTOR_BATCH + chunk.len() / d;
            let histories: Vec<&[u32]> = cand_histories[r.clone()]
                .iter()
                .map(Vec::as_slice)
                .collect();
            self.dot.user_vectors(&cand_users[r], &histories, chunk);
        }

        let mut a = Vec::with_capacity(vectors.len());
        let mut rows = Vec::new();
        for ((&u, history), v) in cand_users
            .iter()
            .zip(cand_histories)
            .zip(vectors.chunks_exact(d))
        {
            let vn = norm(v);
            let safe = v.iter().all(|x| x.is_finite())
                && vn.is_finite()
                && vn * self.items.max_norm <= MAX_NORM_PRODUCT;
            if !safe {
                per_user.push(u);
                continue;
            }
            rows.push(Row::new(self, u, history, Bound::new(d, vn), v));
            a.extend_from_slice(v);
        }

        for u in per_user {
            out[(u - u0) as usize] = Some(self.per_user(u, scratch));
        }

        let m = rows.len();
        if m > 0 {
            scratch.tile.resize(m * TILE_ITEMS.min(n_items), 0.0);
            for j0 in (0..n_items).step_by(TILE_ITEMS) {
                let tn = TILE_ITEMS.min(n_items - j0);
                let tile = &mut scratch.tile[..m * tn];
                let b = &self.items.vectors[j0 * d..(j0 + tn) * d];
                gemm(m, d, tn, &a, false, b, true, 0.0, tile);
                let norms = &self.items.norms[j0..j0 + tn];
                for (row, scores) in rows.iter_mut().zip(tile.chunks_exact_mut(tn)) {
                    row.scan(scores, j0, norms);
                }
            }
        }
        for (row, v) in rows.into_iter().zip(a.chunks_exact(d)) {
            let slot = (row.user - u0) as usize;
            out[slot] = Some(Ok(row.finish(self.dot, self.items, v)));
        }
        out.into_iter()
            .map(|o| o.expect("every user of the block is routed to one path"))
            .collect()
    }
}

/// One user's streaming state over the item tiles.
struct Row {
    user: u32,
    /// History items, sorted and deduplicated, masked as their tiles come by.
    masked: Vec<u32>,
    next_mask: usize,
    bound: Bound,
    work: Work,
}

enum Work {
    /// The target is in the history: rank `None`, nothing to count.
    MaskedTarget,
    Rank(RankState),
    TopK(TopState),
}

struct RankState {
    target: u32,
    /// The target's score as the per-user path computes it.
    score: f32,
    /// Items certainly above the target.
    above: u32,
    /// Items too close to call from the GEMM score, in item order.
    close: Vec<u32>,
}

struct TopState {
    k: usize,
    /// The largest `lo` values seen, descending, at most `k`.
    lows: Vec<f32>,
    /// `lows[k−1]` once `k` are known, else −∞: no item with `hi` below it can make the top-K.
    bar: f32,
    /// `(item, hi)` of possible top-K items, in item order.
    candidates: Vec<(u32, f32)>,
    /// Prune `candidates` against `bar` when it reaches this length.
    prune_at: usize,
}

impl Row {
    fn new<S: Scorer + ?Sized>(
        ctx: &Ctx<'_, S>,
        user: u32,
        mut history: Vec<u32>,
        bound: Bound,
        vector: &[f32],
    ) -> Self {
        history.sort_unstable();
        history.dedup();
        let work = match ctx.task {
            Task::Rank(split) => {
                let target = split.target(ctx.dataset, user);
                if history.binary_search(&target).is_ok() {
                    Work::MaskedTarget
                } else {
                    Work::Rank(RankState {
                        target,
                        score: ctx.dot.score(vector, ctx.items.vector(target)),
                        above: 0,
                        close: Vec::new(),
                    })
                }
            }
            Task::TopK(k) => Work::TopK(TopState {
                k,
                lows: Vec::with_capacity(k + 1),
                bar: f32::NEG_INFINITY,
                candidates: Vec::new(),
                prune_at: (4 * k).max(256),
            }),
        };
        Self {
            user,
            masked: history,
            next_mask: 0,
            bound,
            work,
        }
    }

    /// Consumes the GEMM scores of items `j0..j0 + scores.len()`.
    fn scan(&mut self, scores: &mut [f32], j0: usize, norms: &[f32]) {
        let j1 = j0 + scores.len();
        while let Some(&h) = self.masked.get(self.next_mask) {
            if h as usize >= j1 {
                break;
            }
            scores[h as usize - j0] = f32::NEG_INFINITY;
            self.next_mask += 1;
        }
        let bound = self.bound;
        match &mut self.work {
            Work::MaskedTarget => {}
            Work::Rank(r) => {
                // The target is compared with itself by nobody: mask it in its tile.
                if (j0..j1).contains(&(r.target as usize)) {
                    scores[r.target as usize - j0] = f32::NEG_INFINITY;
                }
                // Branch-free counting (the target sits mid-distribution, so "above" is a coin
                // flip a branch would mispredict); the close items, rare, get a second pass.
                // `|diff| ≤ b` is "neither certainly above nor below": diff is never NaN.
                let (mut above, mut close) = (0u32, 0u32);
                for (&s, &n) in scores.iter().zip(norms) {
                    let b = bound.at(n);
                    let diff = s - r.score;
                    above += u32::from(diff > b);
                    close += u32::from(diff.abs() <= b);
                }
                r.above += above;
                if close > 0 {
                    for (jj, (&s, &n)) in scores.iter().zip(norms).enumerate() {
                        if (s - r.score).abs() <= bound.at(n) {
                            r.close.push((j0 + jj) as u32);
                        }
                    }
                }
            }
            Work::TopK(t) => t.scan(scores, j0, norms, bound),
        }
    }

    fn finish(self, dot: &dyn DotScorer, items: &Items<'_>, vector: &[f32]) -> Outcome {
        match self.work {
            Work::MaskedTarget => Outcome::Rank(None),
            Work::Rank(r) => {
                let mut above = r.above;
                for j in r.close {
                    let s = dot.score(vector, items.vector(j));
                    // The tie rule of `rank_of`: lower ids win ties.
                    if (j < r.target && s >= r.score) || (j > r.target && s > r.score) {
                        above += 1;
                    }
                }
                Outcome::Rank(Some(above))
            }
            Work::TopK(t) => Outcome::TopK(t.finish(dot, items, vector)),
        }
    }
}

impl TopState {
    fn scan(&mut self, scores: &[f32], j0: usize, norms: &[f32], bound: Bound) {
        if self.k == 0 {
            return;
        }
        // Once the bar is up almost nothing passes it: test a chunk branch-free first.
        const CHUNK: usize = 64;
        for (c, (sc, nc)) in scores.chunks(CHUNK).zip(norms.chunks(CHUNK)).enumerate() {
            let bar = self.bar;
            let passing: u32 = sc
                .iter()
                .zip(nc)
                .map(|(&s, &n)| u32::from(s + bound.at(n) >= bar))
                .sum();
            if passing > 0 {
                self.scan_chunk(sc, j0 + c * CHUNK, nc, bound);
            }
        }
    }

    fn scan_chunk(&mut self, scores: &[f32], j0: usize, norms: &[f32], bound: Bound) {
        for (jj, (&s, &n)) in scores.iter().zip(norms).enumerate() {
            if s == f32::NEG_INFINITY {
                continue;
            }
            let b = bound.at(n);
            let hi = s + b;
            if hi < self.bar {
                continue;
            }
            self.candidates.push(((j0 + jj) as u32, hi));
            let lo = s - b;
            if self.lows.len() < self.k || lo > self.lows[self.k - 1] {
                let pos = self.lows.partition_point(|&x| x >= lo);
                self.lows.insert(pos, lo);
                self.lows.truncate(self.k);
                if self.lows.len() == self.k {
                    self.bar = self.lows[self.k - 1];
                }
            }
            if self.candidates.len() >= self.prune_at {
                let bar = self.bar;
                self.candidates.retain(|&(_, hi)| hi >= bar);
                self.prune_at = self.prune_at.max(2 * self.candidates.len());
            }
        }
    }

    /// Rescores the candidates exactly and keeps the best `k`, ties to the lower id: the same
    /// order as [`super::top_k`], written separately so the tests compare two implementations.
    fn finish(self, dot: &dyn DotScorer, items: &Items<'_>, vector: &[f32]) -> Vec<(u32, f32)> {
        let mut scored: Vec<(u32, f32)> = self
            .candidates
            .into_iter()
            .filter(|&(_, hi)| hi >= self.bar)
            .map(|(j, _)| (j, dot.score(vector, items.vector(j))))
            .collect();
        // Numeric order, not `total_cmp`: −0 and +0 tie as in `top_k`. Scores are finite here
        // (checked vectors), so the comparison always exists.
        scored.sort_by(|x, y| {
            y.1.partial_cmp(&x.1)
                .expect("finite scores")
                .then(x.0.cmp(&y.0))
        });
        scored.truncate(self.k);
        scored
    }
}
