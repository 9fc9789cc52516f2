//! Minibatch BPR steps with the hand-written gradient, driven by the shared training loop
//! ([`crate::backbone`]).

use super::*;
use crate::huge_pages;

/// softplus(x) = ln(1 + eˣ), computed without overflow.
#[inline]
pub(super) fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

#[inline]
pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Reusable buffers for minibatch steps: the forward layers, the gradient and the Horner
/// accumulators of the backward pass.
pub struct Trainer<'a> {
    adj: &'a NormAdj,
    config: LightGcnConfig,
    /// Layer-0 embeddings (the parameters).
    pub ego: Vec<f32>,
    adam: Adam,
    /// E¹..E^{K−1}: every layer but the last is needed in full.
    layers: Vec<Vec<f32>>,
    /// Final embeddings of the batch rows only, indexed through `slot`.
    pub(super) batch_final: Vec<f32>,
    slot: Vec<u32>,
    /// Marks the batch rows: where G can be non-zero.
    in_batch: Vec<bool>,
    pub(super) batch_rows: Vec<u32>,
    g: Vec<f32>,
    h: Vec<f32>,
    h_next: Vec<f32>,
    /// ∂L/∂E⁰ after [`Self::loss_and_grad`].
    pub grad: Vec<f32>,
    /// The batch rows and their neighbours: where this step reads the last full layer, and
    /// where Â G is non-zero.
    near: Vec<bool>,
    /// Compute every row of every propagation, as the official code does (the same bits as
    /// the restricted default, slower; for tests and benches).
    pub full_propagation: bool,
}

pub(super) const NO_SLOT: u32 = u32::MAX;

impl<'a> Trainer<'a> {
    pub fn new(adj: &'a NormAdj, config: LightGcnConfig, ego: Vec<f32>) -> Self {
        let n = adj.n_nodes() * config.dim;
        assert_eq!(ego.len(), n, "embedding table size");
        Self {
            adj,
            adam: Adam::new(n, AdamOptions::torch(config.lr as f32)),
            layers: (1..config.layers).map(|_| huge_pages::zeroed(n)).collect(),
            batch_final: Vec::new(),
            slot: vec![NO_SLOT; adj.n_nodes()],
            in_batch: vec![false; adj.n_nodes()],
            batch_rows: Vec::new(),
            g: huge_pages::zeroed(n),
            h: huge_pages::zeroed(n),
            h_next: huge_pages::zeroed(n),
            grad: huge_pages::zeroed(n),
            near: vec![false; adj.n_nodes()],
            full_propagation: false,
            config,
            // The tables the SpMMs gather from live in huge pages.
            ego: huge_pages::copy_of(&ego),
        }
    }

    /// Loss of the official `bpr_loss` on `batch` (B = batch length):
    /// L = (1/B) Σ softplus(ŷ_un − ŷ_up) + decay · ½(‖e⁰_u‖² + ‖e⁰_p‖² + ‖e⁰_n‖²)/B,
    /// and its gradient w.r.t. E⁰ into [`Self::grad`]:
    /// ∂L/∂E⁰ = (1/(K+1)) Σ_{k=0..K} Â^k G + (decay/B) e⁰_r per occurrence of row r,
    /// with G = ∂L/∂E (non-zero on batch rows only) and Âᵀ = Â.
    pub fn loss_and_grad(&mut self, batch: &[Triple]) -> f64 {
        let d = self.config.dim;
        let k_layers = self.config.layers;
        let nu = self.adj.n_users as u32;
        let b = batch.len() as f32;

        // Rows the loss touches, in first-appearance order (a fixed order: no thread dependence).
        // The previous batch's rows are reset first, so G is zero outside this batch.
        for &r in &self.batch_rows {
            self.slot[r as usize] = NO_SLOT;
            self.in_batch[r as usize] = false;
            self.g[r as usize * d..(r as usize + 1) * d].fill(0.0);
        }
        self.batch_rows.clear();
        for &(u, p, n) in batch {
            for r in [u, nu + p, nu + n] {
                if self.slot[r as usize] == NO_SLOT {
                    self.slot[r as usize] = self.batch_rows.len() as u32;
                    self.in_batch[r as usize] = true;
                    self.batch_rows.push(r);
                }
            }
        }

        // Forward: layers 1..K−2 in full; layer K−1 only where this step reads it (the batch
        // rows and their neighbours, for layer K on the batch rows); then layer K and the layer
        // mean on batch rows only. Rows skipped keep stale values that nothing reads.
        self.adj
            .mark_neighbourhood(&self.batch_rows, &mut self.near);
        let near = (!self.full_propagation).then_some(&self.near[..]);
        for k in 0..k_layers.saturating_sub(1) {
            let (done, rest) = self.layers.split_at_mut(k);
            let src = if k == 0 { &self.ego } else { &done[k - 1] };
            let rows = if k + 2 == k_layers { near } else { None };
            self.adj.spmm_near(src, d, &mut rest[0], rows);
        }
        self.batch_final.resize(self.batch_rows.len() * d, 0.0);
        let scale = 1.0 / (k_layers as f32 + 1.0);
        let (adj, ego, layers) = (self.adj, &self.ego, &self.layers);
        let last: &[f32] = layers.last().map_or(ego, Vec::as_slice);
        self.batch_final
            .par_chunks_mut(d)
            .zip(&self.batch_rows)
            .for_each(|(f, &r)| {
                let r = r as usize;
                if k_layers > 0 {
                    adj.row_product(r, last, d, f);
                } else {
                    f.fill(0.0);
                }
                // (E⁰ + E¹ + … + E^K)/(K+1), summed in layer order as in `propagate`, so the
                // training forward and the scoring embeddings agree bit for bit.
                for j in 0..d {
                    let mut sum = ego[r * d + j];
                    for l in layers {
                        sum += l[r * d + j];
                    }
                    if k_layers > 0 {
                        sum += f[j];
                    }
                    f[j] = sum * scale;
                }
            });

        // Loss and G = ∂L/∂E on batch rows, pre-scaled by 1/(K+1) for the backward sum.
        let mut bpr = 0f64;
        let mut reg = 0f64;
        let rows = |slot: u32| slot as usize * d..(slot as usize + 1) * d;
        for &(u, p, n) in batch {
            let (ru, rp, rn) = (u, nu + p, nu + n);
            let fu = &self.batch_final[rows(self.slot[ru as usize])];
            let fp = &self.batch_final[rows(self.slot[rp as usize])];
            let fn_ = &self.batch_final[rows(self.slot[rn as usize])];
            let x = dot(fu, fn_) - dot(fu, fp);
            bpr += softplus(x) as f64;
            let c = sigmoid(x) / b * scale;
            for j in 0..d {
                let (eu, ep, en) = (fu[j], fp[j], fn_[j]);
                self.g[ru as usize * d + j] += c * (en - ep);
                self.g[rp as usize * d + j] -= c * eu;
                self.g[rn as usize * d + j] += c * eu;
            }
            for r in [ru, rp, rn] {
                let e = &self.ego[r as usize * d..(r as usize + 1) * d];
                reg += e.iter().map(|x| (x * x) as f64).sum::<f64>();
            }
        }
        let loss = bpr / b as f64 + self.config.decay * 0.5 * reg / b as f64;

        // Backward by Horner: H ← G; K times H ← Â H + G, so H = Σ_{k=0..K} Â^k G.
        if k_layers == 0 {
            self.grad.copy_from_slice(&self.g);
        } else {
            // G lives on the batch rows, so the first Â G is non-zero only near them and
            // gathers only from them; the next product gathers only from that neighbourhood.
            // Skipping the +0.0 terms keeps every bit (see `spmm_add_near`).
            let in_batch = (!self.full_propagation).then_some(&self.in_batch[..]);
            self.adj
                .spmm_add_near(&self.g, &self.g, d, &mut self.h, near, in_batch);
            for k in 1..k_layers {
                let live = if k == 1 { near } else { None };
                self.adj
                    .spmm_add_near(&self.h, &self.g, d, &mut self.h_next, None, live);
                std::mem::swap(&mut self.h, &mut self.h_next);
            }
            std::mem::swap(&mut self.grad, &mut self.h);
        }
        // L2 term: decay/B · e⁰_r for every occurrence of r in the batch.
        let c_reg = self.config.decay as f32 / b;
        for &(u, p, n) in batch {
            for r in [u, nu + p, nu + n] {
                let r = r as usize;
                for j in r * d..(r + 1) * d {
                    self.grad[j] += c_reg * self.ego[j];
                }
            }
        }
        loss
    }

    /// One minibatch: loss and gradient, then an Adam step. Returns the loss.
    pub fn step(&mut self, batch: &[Triple]) -> f64 {
        let loss = self.loss_and_grad(batch);
        self.adam.step(&mut self.ego, &self.grad);
        loss
    }

    /// One epoch: sample, then minibatches in order. Returns the mean minibatch loss (the
    /// official `aver_loss`).
    pub fn epoch(&mut self, rng: &mut ChaCha8Rng) -> f64 {
        let samples = sample_epoch(self.adj, rng);
        let mut total = 0.0;
        let mut n = 0usize;
        for batch in samples.chunks(self.config.batch_size) {
            total += self.step(batch);
            n += 1;
        }
        if n == 0 { 0.0 } else { total / n as f64 }
    }
}

/// [`Trainer`] as the shared training loop drives it: validation scores a model built from
/// the current parameters, and the kept parameters start as the initial ones (so a run whose
/// validations never count keeps its initialisation, as it always has).
struct LightGcnFit<'a> {
    trainer: Trainer<'a>,
    rng: ChaCha8Rng,
    dataset: &'a Dataset,
    best_ego: Vec<f32>,
}

impl Fit for LightGcnFit<'_> {
    fn epoch(&mut self) -> f64 {
        self.trainer.epoch(&mut self.rng)
    }

    fn validate(&mut self) -> Result<Ranks, EvalError> {
        let t = &self.trainer;
        let model = LightGcn::from_ego(t.config.clone(), t.adj, t.ego.clone());
        eval::rank_targets(&model, self.dataset, Split::Valid)
    }

    fn keep_best(&mut self) {
        self.best_ego.copy_from_slice(&self.trainer.ego);
    }
}

/// Trains on `dataset.train`, validating on `dataset.valid` every `eval_every` epochs with early
/// stopping; returns the best-validation model. `on_epoch` sees every epoch as it finishes.
pub fn train(
    dataset: &Dataset,
    config: &LightGcnConfig,
    mut on_epoch: impl FnMut(&EpochLog),
) -> Result<(LightGcn, TrainReport), LightGcnError> {
    config.validate()?;
    let adj = NormAdj::from_dataset(dataset);
    if adj.n_train_pairs() == 0 {
        return Err(LightGcnError::NoTrainingData(dataset.name.clone()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // Users then items, as the official code builds `embedding_user` before `embedding_item`.
    let ego = normal_init(&mut rng, adj.n_nodes() * config.dim, config.init_std);
    let mut fit = LightGcnFit {
        best_ego: ego.clone(),
        trainer: Trainer::new(&adj, config.clone(), ego),
        rng,
        dataset,
    };
    let schedule = Schedule {
        max_epochs: config.epochs,
        eval_every: config.eval_every,
        patience: config.patience,
        select_metric: SELECT_METRIC,
    };
    let report = backbone::fit(&mut fit, &schedule, &mut on_epoch).map_err(|e| match e {
        FitError::Diverged { epoch, loss } => LightGcnError::Diverged { epoch, loss },
        FitError::Eval(e) => LightGcnError::Eval(e),
    })?;
    let model = LightGcn::from_ego(config.clone(), &adj, fit.best_ego);
    Ok((model, report))
}

/// Test-split metrics of a model beside the popularity baseline: the numbers the CLI reports.
pub fn test_summary(
    dataset: &Dataset,
    model: &LightGcn,
) -> Result<BTreeMap<String, f64>, EvalError> {
    let mut m = eval::rank_targets(model, dataset, Split::Test)?.summary(&REPORT_KS);
    let pop = eval::rank_targets(&Popularity::fit(dataset), dataset, Split::Test)?;
    for (k, v) in pop.summary(&REPORT_KS) {
        m.insert(format!("popularity_{k}"), v);
    }
    Ok(m)
}
