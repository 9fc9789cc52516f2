//! The built-in methods.

pub mod agp;
pub mod baselines;
pub mod optimizers;
pub mod rankers;

pub use agp::{PromptOptimizer, Route};
pub use baselines::{Base, ListwiseBaseline, PointwiseBaseline};
pub use optimizers::{Opro, Protegi};
pub use rankers::{First, PrpAllpair, PrpSort, RankGpt, Setwise};

use serde::Serialize;

use crate::error::AgpError;
use crate::llm::training_calls;
use crate::reranker::{Env, TrainStep};

#[derive(Serialize)]
struct BudgetEvent {
    event: &'static str,
    status: &'static str,
    epoch: usize,
    batch: usize,
    training_calls: u64,
    max_training_calls: u64,
}

/// Whether a prompt optimizer's training-call budget is spent before `step`, measured on the
/// run's ledger (so a resumed run counts the calls of its checkpoint); a skipped step is logged.
pub(crate) fn budget_spent(
    budget: Option<u64>,
    step: TrainStep,
    env: &Env,
) -> Result<bool, AgpError> {
    let Some(max) = budget else { return Ok(false) };
    let spent = training_calls(&env.llm.calls.snapshot());
    if spent < max {
        return Ok(false);
    }
    env.log_event(&BudgetEvent {
        event: "train_step",
        status: "skipped: max_training_calls reached",
        epoch: step.epoch,
        batch: step.batch,
        training_calls: spent,
        max_training_calls: max,
    })?;
    Ok(true)
}

/// Candidate indices sorted by descending score; ties (and NaN, treated as lowest) keep backbone
/// order, so the result never depends on anything but the scores.
pub fn order_by_scores(scores: &[f32]) -> Vec<usize> {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
    order
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_by_scores_is_stable_and_nan_last() {
        assert_eq!(
            super::order_by_scores(&[0.5, f32::NAN, 2.0, 0.5]),
            vec![2, 0, 3, 1]
        );
    }
}
