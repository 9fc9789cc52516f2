//! Hyper-parameters (the official code's defaults) and the errors of training.

use super::*;

/// Hyper-parameters. Defaults are the official code's (`parse.py`) except the epoch budget,
/// which early stopping cuts short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightGcnConfig {
    /// Embedding size d (`--recdim`).
    pub dim: usize,
    /// Propagation layers K (`--layer`).
    pub layers: usize,
    /// Adam learning rate (`--lr`).
    pub lr: f64,
    /// Weight of the L2 term on layer-0 embeddings (`--decay`).
    pub decay: f64,
    /// BPR minibatch (`--bpr_batch`).
    pub batch_size: usize,
    /// Standard deviation of the normal initialisation.
    pub init_std: f64,
    /// Maximum training epochs.
    pub epochs: usize,
    /// Evaluate on the validation items every this many epochs (and after the last one).
    pub eval_every: usize,
    /// Stop after this many evaluations without a better validation NDCG@20 (0: never stop).
    pub patience: usize,
    /// Seed of the initialisation and the sampler.
    pub seed: u64,
}

impl Default for LightGcnConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            layers: 3,
            lr: 1e-3,
            decay: 1e-4,
            batch_size: 2048,
            init_std: 0.1,
            epochs: 1000,
            eval_every: 10,
            patience: 10,
            seed: 2020,
        }
    }
}

/// The validation metric early stopping and model selection use.
pub const SELECT_METRIC: &str = "ndcg@20";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("lightgcn config: {field} = {value}, allowed {allowed}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

impl LightGcnConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, value: String, allowed| {
            Err(ConfigError {
                field,
                value,
                allowed,
            })
        };
        if !(1..=4096).contains(&self.dim) {
            return err("dim", self.dim.to_string(), "1..=4096");
        }
        if self.layers > 16 {
            return err("layers", self.layers.to_string(), "0..=16");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return err("lr", self.lr.to_string(), "a finite number > 0");
        }
        if !(self.decay.is_finite() && self.decay >= 0.0) {
            return err("decay", self.decay.to_string(), "a finite number >= 0");
        }
        if self.batch_size == 0 {
            return err("batch_size", "0".into(), ">= 1");
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return err("init_std", self.init_std.to_string(), "a finite number > 0");
        }
        if self.eval_every == 0 {
            return err("eval_every", "0".into(), ">= 1");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LightGcnError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("dataset {0} has no training interactions to learn from")]
    NoTrainingData(String),
    #[error("training diverged at epoch {epoch}: loss {loss}")]
    Diverged { epoch: usize, loss: f64 },
}
