//! SASRec (Kang & McAuley, ICDM'18) in plain Rust with a hand-written backward pass.
//!
//! Follows kang205/SASRec and pmixer/SASRec.pytorch (before 2025): right-aligned sequences of
//! `maxlen` with left padding, learned positional embedding, item embedding × √d, dropout,
//! causal + padding masks, `num_blocks` blocks of (LayerNorm → single-head attention with the
//! residual on the normalised query → LayerNorm → point-wise FFN with residual), final
//! LayerNorm, `logit = H·E_item`, one sampled negative per position, BCE, Adam (β₂ 0.98,
//! ε 1e-8), LayerNorm ε 1e-8. The block equations are in [`model`].
//!
//! ```no_run
//! # fn demo(ds: &agp_datasets::Dataset) -> Result<(), agp_recommenders::sasrec::SasRecError> {
//! use agp_recommenders::sasrec::{SasRec, SasRecConfig};
//! let cfg = SasRecConfig::for_dataset(ds);
//! let (model, report) = SasRec::train(ds, &cfg, |e| eprintln!("epoch {} loss {}", e.epoch, e.loss))?;
//! println!("best epoch {:?}, {:.3} s/epoch", report.best_epoch, report.seconds_per_epoch());
//! // `model` implements `Scorer`: evaluate and export with the shared code.
//! # Ok(()) }
//! ```

pub mod kernels;
pub mod model;
pub mod params;
pub mod sampled_eval;
mod sampler;
mod store;

pub use crate::backbone::{EpochLog, TrainReport};
pub use sampled_eval::{SampledMetrics, sampled_eval};

use crate::adam::{Adam, AdamOptions, BiasCorrection, FirstMoment};
use crate::backbone::{self, Fit, FitError, Schedule};
use crate::eval::{self, EvalError, Ranks, Split};
use crate::{DotScorer, Scorer};
use agp_datasets::Dataset;
use model::{Batch, PassConfig, Tape};
use params::Layout;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Order of operations inside a self-attention block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockLayout {
    /// kang205/SASRec (TF) and pmixer/SASRec.pytorch before 2025: `q̂ = LN(x)`,
    /// `y = q̂ + Attn(q̂, x, x)`, `z = LN(y)`, `x' = z + FFN(z)`.
    Original,
}

/// Every hyper-parameter, with the reference defaults. Field names match the reference CLI.
/// Rates are `f64` so configs and candidate files record them as written (`0.2`, not
/// `0.20000000298023224`); the model computes in `f32`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SasRecConfig {
    /// Embedding and hidden size `d`.
    pub hidden_units: usize,
    /// Window length; longer histories keep their last `maxlen` items.
    pub maxlen: usize,
    pub num_blocks: usize,
    /// Dropout on embeddings, attention weights and both FFN layers.
    pub dropout_rate: f64,
    pub lr: f64,
    pub batch_size: usize,
    /// Maximum epochs (an epoch visits every user with ≥ 2 training items once).
    pub num_epochs: usize,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub layer_norm_eps: f64,
    pub layout: BlockLayout,
    /// Evaluate on the validation items every this many epochs (the TF code uses 20).
    pub eval_every: usize,
    /// Stop after this many evaluations without a better validation NDCG@10; 0 = never.
    pub patience: usize,
    pub seed: u64,
}

impl Default for SasRecConfig {
    fn default() -> Self {
        Self {
            hidden_units: 50,
            maxlen: 50,
            num_blocks: 2,
            dropout_rate: 0.5,
            lr: 1e-3,
            batch_size: 128,
            num_epochs: 200,
            adam_beta1: 0.9,
            adam_beta2: 0.98,
            adam_eps: 1e-8,
            layer_norm_eps: 1e-8,
            layout: BlockLayout::Original,
            eval_every: 20,
            patience: 3,
            seed: 2020,
        }
    }
}

/// Mean training length from which a dataset counts as dense like MovieLens-1M (≈163), where
/// the reference uses `maxlen 200, dropout 0.2` instead of `50, 0.5`.
pub const DENSE_MEAN_LEN: f64 = 100.0;

impl SasRecConfig {
    /// The reference settings for this kind of data: `maxlen 200, dropout 0.2` when users have
    /// long histories (mean training length ≥ [`DENSE_MEAN_LEN`], as ML-1M), else `50, 0.5`.
    pub fn for_dataset(ds: &Dataset) -> Self {
        let n = ds.n_users().max(1) as f64;
        let mean = ds.train.iter().map(Vec::len).sum::<usize>() as f64 / n;
        if mean >= DENSE_MEAN_LEN {
            Self {
                maxlen: 200,
                dropout_rate: 0.2,
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }

    /// Rejects values outside their allowed range, naming the field.
    pub fn validate(&self) -> Result<(), SasRecError> {
        let bad = |field: &'static str, value: String, allowed: &'static str| {
            Err(SasRecError::Config {
                field,
                value,
                allowed,
            })
        };
        if self.hidden_units == 0 {
            return bad("hidden_units", self.hidden_units.to_string(), ">= 1");
        }
        if self.maxlen == 0 {
            return bad("maxlen", self.maxlen.to_string(), ">= 1");
        }
        if self.num_blocks == 0 {
            return bad("num_blocks", self.num_blocks.to_string(), ">= 1");
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return bad("dropout_rate", self.dropout_rate.to_string(), "[0, 1)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr.to_string(), "> 0");
        }
        if self.batch_size == 0 {
            return bad("batch_size", self.batch_size.to_string(), ">= 1");
        }
        if !(0.0..1.0).contains(&self.adam_beta1) {
            return bad("adam_beta1", self.adam_beta1.to_string(), "[0, 1)");
        }
        if !(0.0..1.0).contains(&self.adam_beta2) {
            return bad("adam_beta2", self.adam_beta2.to_string(), "[0, 1)");
        }
        if !(self.adam_eps > 0.0 && self.adam_eps.is_finite()) {
            return bad("adam_eps", self.adam_eps.to_string(), "> 0");
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return bad("layer_norm_eps", self.layer_norm_eps.to_string(), "> 0");
        }
        if self.eval_every == 0 {
            return bad("eval_every", self.eval_every.to_string(), ">= 1");
        }
        Ok(())
    }

    /// Adam with this config's rates and the roundings SASRec has always trained with here (the
    /// textbook first moment, bias corrections in f32): its committed numbers depend on them.
    fn adam(&self) -> AdamOptions {
        AdamOptions {
            lr: self.lr as f32,
            beta1: self.adam_beta1 as f32,
            beta2: self.adam_beta2 as f32,
            eps: self.adam_eps as f32,
            first_moment: FirstMoment::Blend,
            bias_correction: BiasCorrection::F32,
        }
    }

    fn pass(&self) -> PassConfig {
        PassConfig {
            dropout: self.dropout_rate as f32,
            ln_eps: self.layer_norm_eps as f32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SasRecError {
    #[error("SASRec config: {field} = {value} is outside the allowed range {allowed}")]
    Config {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("dataset {dataset}: no user has 2 or more training items, nothing to train on")]
    NoTrainingUsers { dataset: String },
    #[error(
        "dataset {dataset}: user {user} has interacted with every item; no negative can be sampled"
    )]
    NoNegatives { dataset: String, user: usize },
    #[error("training diverged: loss is {loss} at epoch {epoch}")]
    Diverged { epoch: usize, loss: f64 },
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// A trained SASRec: parameters, their layout and the config that produced them.
#[derive(Debug, Clone)]
pub struct SasRec {
    pub config: SasRecConfig,
    layout: Layout,
    params: Vec<f32>,
}

impl SasRec {
    /// A freshly initialised model (pmixer's Xavier-normal init) for `n_items` items.
    pub fn new(n_items: usize, config: &SasRecConfig) -> Result<Self, SasRecError> {
        config.validate()?;
        let layout = Layout::new(
            n_items,
            config.maxlen,
            config.hidden_units,
            config.num_blocks,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let params = layout.init(&mut rng);
        Ok(Self {
            config: config.clone(),
            layout,
            params,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn params(&self) -> &[f32] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Trains on `dataset.train` with early stopping on full-ranking validation NDCG@10,
    /// keeping the best evaluated parameters. `on_epoch` sees every epoch as it finishes.
    pub fn train(
        dataset: &Dataset,
        config: &SasRecConfig,
        mut on_epoch: impl FnMut(&EpochLog),
    ) -> Result<(Self, TrainReport), SasRecError> {
        let model = Self::new(dataset.n_items(), config)?;
        let trainer = Trainer::new(&model, dataset)?;
        let mut fit = SasRecFit {
            model,
            trainer,
            dataset,
            best: None,
        };
        let schedule = Schedule {
            max_epochs: config.num_epochs,
            eval_every: config.eval_every,
            patience: config.patience,
            select_metric: SELECT_METRIC,
        };
        let report = backbone::fit(&mut fit, &schedule, &mut on_epoch).map_err(|e| match e {
            FitError::Diverged { epoch, loss } => SasRecError::Diverged { epoch, loss },
            FitError::Eval(e) => SasRecError::Eval(e),
        })?;
        let mut model = fit.model;
        // Without a counted validation the last parameters stand.
        if let Some(p) = fit.best {
            model.params = p;
        }
        Ok((model, report))
    }

    /// Final hidden state of the last position for each history (each non-empty).
    pub fn user_vectors(&self, histories: &[&[u32]]) -> Vec<Vec<f32>> {
        let mut batch = Batch::default();
        for h in histories {
            batch.push_inference(h, self.config.maxlen);
        }
        let mut tape = Tape::default();
        model::forward(
            &self.params,
            &self.layout,
            self.config.pass(),
            &batch,
            &mut tape,
            None,
        );
        tape.last_rows(&batch.lens)
            .into_iter()
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// The item embedding table, `n_items × d`.
    pub fn item_embeddings(&self) -> &[f32] {
        &self.params[self.layout.item_emb.range()]
    }
}

impl Scorer for SasRec {
    fn n_items(&self) -> usize {
        self.layout.n_items
    }

    /// `r_i = H_last · E_i`. An empty history gives every item score 0 (SASRec has nothing to
    /// condition on).
    fn score_user(&self, _user: u32, history: &[u32], out: &mut [f32]) {
        if history.is_empty() {
            out.fill(0.0);
            return;
        }
        let h = self
            .user_vectors(&[history])
            .pop()
            .expect("one history in, one vector out");
        let d = self.layout.d;
        for (o, e) in out.iter_mut().zip(self.item_embeddings().chunks_exact(d)) {
            *o = kernels::dot(&h, e);
        }
    }

    fn as_dot(&self) -> Option<&dyn DotScorer> {
        Some(self)
    }
}

/// `score_user` is `kernels::dot(H_last, E_i)`. Batching histories into one forward pass gives
/// every sequence the same `H_last` bits as a forward pass of its own: attention runs per
/// sequence, LayerNorm and the embedding per row, and each GEMM output element is one
/// k-ordered sum over its own row and column whatever the other rows (matrixmultiply picks its
/// kernel by CPU features, never by matrix size). `tests/eval_identity.rs` checks it.
impl DotScorer for SasRec {
    fn dim(&self) -> usize {
        self.layout.d
    }

    fn item_vectors(&self) -> &[f32] {
        self.item_embeddings()
    }

    /// An empty history has no hidden state; `score_user` gives every item 0 for it.
    fn has_user_vector(&self, history: &[u32]) -> bool {
        !history.is_empty()
    }

    fn user_vectors(&self, _users: &[u32], histories: &[&[u32]], out: &mut [f32]) {
        let d = self.layout.d;
        for (h, row) in SasRec::user_vectors(self, histories)
            .iter()
            .zip(out.chunks_exact_mut(d))
        {
            row.copy_from_slice(h);
        }
    }

    fn score(&self, user_vector: &[f32], item_vector: &[f32]) -> f32 {
        kernels::dot(user_vector, item_vector)
    }
}

/// The validation metric early stopping and model selection use.
pub const SELECT_METRIC: &str = "ndcg@10";

/// A model and its [`Trainer`] as the shared training loop drives them.
struct SasRecFit<'a> {
    model: SasRec,
    trainer: Trainer,
    dataset: &'a Dataset,
    best: Option<Vec<f32>>,
}

impl Fit for SasRecFit<'_> {
    fn epoch(&mut self) -> f64 {
        self.trainer.epoch(&mut self.model)
    }

    fn validate(&mut self) -> Result<Ranks, EvalError> {
        eval::rank_targets(&self.model, self.dataset, Split::Valid)
    }

    fn keep_best(&mut self) {
        self.best = Some(self.model.params.clone());
    }
}

/// Training state that lives across epochs: sampler, optimiser, buffers.
pub struct Trainer {
    sampler: sampler::Sampler,
    adam: Adam,
    tape: Tape,
    grads: Vec<f32>,
    batch: Batch,
    rng: ChaCha8Rng,
}

impl Trainer {
    pub fn new(model: &SasRec, dataset: &Dataset) -> Result<Self, SasRecError> {
        let sampler = sampler::Sampler::new(dataset, model.config.maxlen)?;
        let mut rng = ChaCha8Rng::seed_from_u64(model.config.seed);
        rng.set_stream(1);
        Ok(Self {
            sampler,
            adam: Adam::new(model.params.len(), model.config.adam()),
            tape: Tape::default(),
            grads: vec![0.0; model.params.len()],
            batch: Batch::default(),
            rng,
        })
    }

    /// Batches per epoch: `ceil(trainable users / batch_size)`, as pmixer.
    pub fn steps_per_epoch(&self, model: &SasRec) -> usize {
        self.sampler.n_users().div_ceil(model.config.batch_size)
    }

    /// One pass over a fresh permutation of the trainable users; returns the mean step loss.
    pub fn epoch(&mut self, model: &mut SasRec) -> f64 {
        let order = self.sampler.permutation(&mut self.rng);
        let mut total = 0.0;
        let mut steps = 0;
        for users in order.chunks(model.config.batch_size) {
            self.sampler.fill(users, &mut self.rng, &mut self.batch);
            total += self.step_on_batch(model);
            steps += 1;
        }
        total / steps.max(1) as f64
    }

    /// One optimiser step on the first `batch_size` users of a fresh permutation (benchmarks).
    pub fn step(&mut self, model: &mut SasRec) -> f64 {
        let order = self.sampler.permutation(&mut self.rng);
        let n = model.config.batch_size.min(order.len());
        self.sampler
            .fill(&order[..n], &mut self.rng, &mut self.batch);
        self.step_on_batch(model)
    }

    fn step_on_batch(&mut self, model: &mut SasRec) -> f64 {
        use rand::RngCore;
        let dropout_seed = self.rng.next_u64();
        self.grads.fill(0.0);
        let loss = model::forward(
            &model.params,
            &model.layout,
            model.config.pass(),
            &self.batch,
            &mut self.tape,
            Some(dropout_seed),
        )
        .expect("training batches carry targets");
        model::backward(
            &model.params,
            &model.layout,
            &self.batch,
            &mut self.tape,
            &mut self.grads,
        );
        self.adam.step(&mut model.params, &self.grads);
        loss
    }
}
