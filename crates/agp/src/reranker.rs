//! The one trait a reranking method implements, and what it is given.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::AgpError;
use crate::llm::Llm;
use crate::log::EventLog;
use crate::metrics::{UnparseableRule, UserResult};
use crate::order::FirstShown;
use crate::parse::ParsedRanking;
use crate::run::Selection;

/// What a method sees for one user at rerank time. It never holds the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankInput {
    pub user: u32,
    /// Item texts of the user's whole history before the test item (train + valid), oldest
    /// first; methods cut it themselves (see [`shown_history`]).
    pub history: Vec<String>,
    /// Candidate item texts in backbone order; an ordering refers to these by index.
    pub candidates: Vec<String>,
}

impl RerankInput {
    /// The history block a prompt shows: the last `len` item texts, a `mask` fraction of them
    /// masked (seeded per user), one per line.
    pub fn history_text(&self, len: usize, mask: f64, seed: u64) -> String {
        crate::prompts::history_lines(&shown_history(&self.history, len, mask, seed, self.user))
    }
}

/// A training user: the input plus the index of the ground truth in `input.candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCase {
    pub input: RerankInput,
    pub gt_index: usize,
}

/// A method's answer: candidate indices, best first. It may be shorter than K (e.g. under the
/// `reference` missing-id policy); the ground truth missing from it scores rank K.
pub type Ranking = ParsedRanking;

/// Run-wide things a method may use: the model, how many calls to run at once, the seed, the
/// JSONL event log.
#[derive(Clone)]
pub struct Env {
    pub llm: Llm,
    pub jobs: usize,
    pub seed: u64,
    pub log: Option<Arc<EventLog>>,
}

impl Env {
    /// Write one JSONL event if the run has a log.
    pub fn log_event(&self, event: &impl Serialize) -> Result<(), AgpError> {
        match &self.log {
            Some(l) => l.write(event),
            None => Ok(()),
        }
    }
}

/// Position of a training step, for logging and the begin/end profile snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainStep {
    /// 1-based epoch.
    pub epoch: usize,
    /// 0-based batch within the epoch.
    pub batch: usize,
    /// 0-based step over the whole run (epoch · batches + batch).
    pub step: usize,
    pub total_steps: usize,
}

impl TrainStep {
    /// Within the first 10% of training steps (the reference code saves "begin" profiles here).
    pub fn is_begin(&self) -> bool {
        self.step < self.total_steps.div_ceil(10)
    }

    /// Within the last 10% of training steps ("end" profiles).
    pub fn is_end(&self) -> bool {
        self.step + self.total_steps.div_ceil(10) >= self.total_steps
    }
}

/// What training on one batch produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// The batch's users as finally ranked in this step (after an accepted edit, the verify
    /// pass), in batch order.
    pub results: Vec<UserResult>,
    pub accepted: usize,
    pub discarded: usize,
}

/// A reranking method. Implement [`Reranker::rerank`]; a method that learns overrides
/// [`Reranker::epochs`], [`Reranker::train_batch`] and, to survive a restart, the state pair.
///
/// The driver ([`crate::run_reranker`]) evaluates the test users after every epoch (once if
/// `epochs() == 0`) and the validation users too when there are several epochs to choose
/// from; it computes the metrics, checkpoints and logs. A `rerank` error whose LLM failure
/// [`crate::Llm::tolerate`] accepts (under [`crate::FailurePolicy::Continue`]) scores that user
/// as a failed call; `train_batch` decides for itself (through the same helper) what a failed
/// call means for a training step.
#[async_trait]
pub trait Reranker: Send + Sync {
    /// Epochs of training; 0 means no training.
    fn epochs(&self) -> usize {
        0
    }

    /// Training users per batch.
    fn batch_size(&self) -> usize {
        1
    }

    /// Training users used, taken in order from the candidate file's `train_users`.
    fn n_train_users(&self) -> usize {
        0
    }

    /// How an unparseable answer scores.
    fn unparseable_rule(&self) -> UnparseableRule {
        UnparseableRule::Zero
    }

    /// Draw the training users' order anew each epoch from the run's seed (see
    /// [`crate::AgpConfig::shuffle_train_users`]); off, every epoch has the same batches.
    fn shuffle_train_users(&self) -> bool {
        false
    }

    /// The validation rule reported besides `best-valid`: [`Selection::ValidLcb`] adds the
    /// epoch with the best lower confidence bound to the run; anything else adds nothing.
    fn selection(&self) -> Selection {
        Selection::BestValid
    }

    /// One training step on a batch (the same batches every epoch unless the method shuffles
    /// them).
    async fn train_batch(
        &mut self,
        _step: TrainStep,
        _batch: &[UserCase],
        _env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        Ok(BatchOutcome::default())
    }

    /// Order one user's candidates.
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError>;

    /// [`Reranker::rerank`], with how often its answers put the item shown first on top where
    /// the method shows the candidates itself ([`crate::order::Ordered`]); the driver scores
    /// test and validation users through this.
    async fn rerank_shown(
        &self,
        input: &RerankInput,
        env: &Env,
    ) -> Result<(Ranking, Option<FirstShown>), AgpError> {
        Ok((self.rerank(input, env).await?, None))
    }

    /// Learned state to checkpoint (`null` for stateless methods).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restore what [`Reranker::state`] returned.
    fn restore(&mut self, _state: serde_json::Value) -> Result<(), AgpError> {
        Ok(())
    }

    /// The learned prompt, for methods that learn one.
    fn learned_prompt(&self) -> Option<String> {
        None
    }
}

/// The history a method shows: the last `len` texts, with a seeded `mask` fraction of them
/// replaced by `[MASK]` (the reference code's `hist_seq_mask`). The mask depends only on
/// `(seed, user)`, so it is the same in every epoch and independent of call order.
pub fn shown_history(
    history: &[String],
    len: usize,
    mask: f64,
    seed: u64,
    user: u32,
) -> Vec<String> {
    let start = history.len().saturating_sub(len);
    let mut shown = history[start..].to_vec();
    let n_mask = ((shown.len() as f64) * mask).round() as usize;
    if n_mask > 0 {
        let mut rng =
            rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (u64::from(user) << 32 | 0x9E37));
        for i in rand::seq::index::sample(&mut rng, shown.len(), n_mask.min(shown.len())) {
            shown[i] = "[MASK]".to_string();
        }
    }
    shown
}

/// Run `futures` with at most `jobs` in flight; results keep the input order whatever
/// order the calls complete in. Boxed futures keep the `Send` bound of `async_trait` methods
/// provable for borrowed inputs.
pub async fn join_ordered<R>(
    futures: Vec<BoxFuture<'_, Result<R, AgpError>>>,
    jobs: usize,
) -> Result<Vec<R>, AgpError> {
    futures::stream::iter(futures)
        .buffered(jobs.max(1))
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item {i}")).collect()
    }

    #[test]
    fn shown_history_takes_the_last_items() {
        assert_eq!(
            shown_history(&hist(7), 3, 0.0, 0, 1),
            ["item 4", "item 5", "item 6"]
        );
        assert_eq!(shown_history(&hist(2), 5, 0.0, 0, 1), ["item 0", "item 1"]);
        assert!(shown_history(&[], 5, 0.5, 0, 1).is_empty());
    }

    #[test]
    fn mask_is_seeded_per_user() {
        let a = shown_history(&hist(10), 10, 0.3, 9, 4);
        assert_eq!(a.iter().filter(|s| *s == "[MASK]").count(), 3);
        assert_eq!(a, shown_history(&hist(10), 10, 0.3, 9, 4));
        let others: Vec<_> = (0..20)
            .map(|u| shown_history(&hist(10), 10, 0.3, 9, u))
            .collect();
        assert!(
            others.iter().any(|o| *o != a),
            "different users get different masks"
        );
    }

    #[test]
    fn begin_and_end_steps() {
        let at = |step, total_steps| TrainStep {
            epoch: 1,
            batch: 0,
            step,
            total_steps,
        };
        assert!(at(0, 100).is_begin() && at(9, 100).is_begin() && !at(10, 100).is_begin());
        assert!(at(90, 100).is_end() && !at(89, 100).is_end());
        assert!(at(0, 3).is_begin() && at(2, 3).is_end() && !at(1, 3).is_end());
    }
}
