//! Random search: the control that says whether a prompt optimizer beats chance search at the
//! same budget. It learns AGP's `p_gen` on AGP's training loop and ranks through AGP's profile
//! and rerank (Eqs. 2–3), as OPRO and ProTeGi do ([`super::optimizers`]).
//!
//! Each batch: score the current prompt on the batch's users (stages `profile` and `rerank`),
//! draw one of [`prompts::RANDOM_EDITS`] with a generator seeded by the run's seed and the step,
//! ask the LLM once to apply it (stage `edit`), score the result on the same users (stage
//! `verify`, as AGP's verify step) and keep it only if the batch's mean ground-truth rank
//! strictly improves, AGP's accept rule. The best epoch is then chosen on validation like every
//! other learned method's.
//!
//! Why an LLM applies the edit rather than a seeded mutation of the text: AGP starts from an
//! empty `p_gen`, and a character- or word-level mutation of an empty or short prompt needs a
//! vocabulary someone chose, which would make the control only as good as that list. One call
//! that makes a drawn, generic change costs what one proposal of OPRO (`n_candidates = 1`) costs
//! and sees nothing OPRO's scores, ProTeGi's errors or AGP's feedback give those methods. The
//! randomness is the draw, not the decoding: the request carries the run's own sampling (greedy
//! for the bundled model), so a replay answers it exactly and two seeds draw different edits.
//!
//! Failed calls under [`crate::FailurePolicy::Continue`]: a user whose scoring of the current
//! prompt failed is left out of the comparison; a failed edit call, or a failed call scoring the
//! proposal, discards the proposal. Each proposal is one `prompt` event in the log and one count
//! in the epoch's `accepted_edits` / `discarded_edits`.

use agp_llm::FailureReason;
use async_trait::async_trait;
use futures::FutureExt;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::Stage;
use crate::config::{EditExtraction, LoopSettings, RandomSearchConfig};
use crate::error::AgpError;
use crate::metrics::{UnparseableRule, UserResult, score_failed_call, score_ordering};
use crate::prompts;
use crate::reranker::{
    BatchOutcome, Env, Ranking, RerankInput, Reranker, TrainStep, UserCase, join_ordered,
};

use super::agp::extract_edit;
use super::budget_spent;

/// The edit random search applies at `step` of a run with `seed`: an index into
/// [`prompts::RANDOM_EDITS`], drawn from a generator of its own per step so that a resumed run
/// draws what the uninterrupted one did.
pub fn drawn_edit(seed: u64, step: usize) -> usize {
    let key = seed ^ (step as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
    rng.random_range(0..prompts::RANDOM_EDITS.len())
}

/// Eq. 2 then Eq. 3 (listwise) for one user: the optimizers' forward pass, its ranking only.
async fn forward(
    s: &LoopSettings,
    prompt: &str,
    input: &RerankInput,
    env: &Env,
    stages: (Stage, Stage),
) -> Result<Ranking, AgpError> {
    Ok(super::optimizers::forward(s, prompt, input, env, stages)
        .await?
        .ranking)
}

/// `prompt` on every user of the batch: each user's result, and whether its calls answered.
async fn score(
    s: &LoopSettings,
    prompt: &str,
    batch: &[UserCase],
    env: &Env,
    stages: (Stage, Stage),
) -> Result<(Vec<UserResult>, Vec<Option<FailureReason>>), AgpError> {
    let calls = batch
        .iter()
        .map(|c| {
            async move {
                env.llm
                    .tolerate(forward(s, prompt, &c.input, env, stages).await)
            }
            .boxed()
        })
        .collect();
    let rankings = join_ordered(calls, env.jobs).await?;
    let mut results = Vec::with_capacity(batch.len());
    let mut failed = Vec::with_capacity(batch.len());
    for (c, r) in batch.iter().zip(rankings) {
        let (user, k) = (c.input.user, c.input.candidates.len());
        match r {
            Ok(r) => {
                results.push(score_ordering(
                    user,
                    &r.order,
                    c.gt_index,
                    k,
                    r.outcome,
                    s.unparseable,
                ));
                failed.push(None);
            }
            Err(reason) => {
                results.push(score_failed_call(user, k, reason));
                failed.push(Some(reason));
            }
        }
    }
    Ok((results, failed))
}

/// Mean rank over the users whose calls answered in the first pass.
fn mean_rank(results: &[UserResult], answered: &[bool]) -> f64 {
    let (sum, n) = results
        .iter()
        .zip(answered)
        .filter(|(_, a)| **a)
        .fold((0.0, 0usize), |(s, n), (r, _)| (s + r.rank as f64, n + 1));
    sum / n.max(1) as f64
}

#[derive(Serialize)]
struct ProposalEvent<'a> {
    event: &'static str,
    optimizer: &'static str,
    status: &'static str,
    epoch: usize,
    batch: usize,
    /// The edit drawn for this step.
    edit: &'static str,
    mean_rank_before: f64,
    mean_rank_after: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureReason>,
    previous: &'a str,
    prompt: Option<&'a str>,
}

/// Random search on AGP's `p_gen` (see [`RandomSearchConfig`]).
#[derive(Debug, Clone)]
pub struct RandomSearch {
    pub cfg: RandomSearchConfig,
    /// Training users used (the config's `n_train_users` resolved against the candidate file).
    pub n_train: usize,
    prompt: String,
}

impl RandomSearch {
    pub fn new(cfg: RandomSearchConfig, n_train: usize) -> Self {
        let prompt = super::starting_prompt(&cfg.initial_prompt);
        Self {
            cfg,
            n_train,
            prompt,
        }
    }

    pub fn prompt(&self) -> &str {
        &self.prompt
    }
}

#[async_trait]
impl Reranker for RandomSearch {
    loop_reranker_settings!();

    async fn train_batch(
        &mut self,
        step: TrainStep,
        batch: &[UserCase],
        env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        let s = self.cfg.loop_settings();
        if budget_spent(s.training_budget(), step, env)? {
            return Ok(BatchOutcome::default());
        }
        let current = self.prompt.clone();
        let (results, failed) =
            score(&s, &current, batch, env, (Stage::Profile, Stage::Rerank)).await?;
        let answered: Vec<bool> = failed.iter().map(Option::is_none).collect();
        let before = mean_rank(&results, &answered);
        let edit = prompts::RANDOM_EDITS[drawn_edit(env.seed, step.step)];

        let answer = env
            .llm
            .chat(Stage::Edit, None, prompts::random_edit(&current, edit))
            .await;
        let (proposal, verdict) = match env.llm.tolerate(answer)? {
            Err(reason) => (None, Err((Stage::Edit, reason))),
            Ok(a) => {
                let p = extract_edit(&a, EditExtraction::BothMarkers).prompt;
                let (verified, vfailed) =
                    score(&s, &p, batch, env, (Stage::Verify, Stage::Verify)).await?;
                let verdict = match vfailed.iter().flatten().next() {
                    Some(&reason) => Err((Stage::Verify, reason)),
                    None => Ok(verified),
                };
                (Some(p), verdict)
            }
        };
        let after = verdict.as_ref().ok().map(|v| mean_rank(v, &answered));
        let accepted = after.is_some_and(|a| a < before);
        let (failed_stage, failure) = match &verdict {
            Err((st, r)) => (Some(*st), Some(*r)),
            Ok(_) => (None, None),
        };
        env.log_event(&ProposalEvent {
            event: "prompt",
            optimizer: "random-search",
            status: if accepted { "accepted" } else { "discarded" },
            epoch: step.epoch,
            batch: step.batch,
            edit,
            mean_rank_before: before,
            mean_rank_after: after,
            failed_stage,
            failure,
            previous: &current,
            prompt: proposal.as_deref(),
        })?;
        let mut out = BatchOutcome {
            results,
            ..BatchOutcome::default()
        };
        match (accepted, proposal, verdict) {
            (true, Some(p), Ok(verified)) => {
                self.prompt = p;
                out.results = verified;
                out.accepted = 1;
            }
            _ => out.discarded = 1,
        }
        Ok(out)
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let s = self.cfg.loop_settings();
        forward(&s, &self.prompt, input, env, (Stage::Test, Stage::Test)).await
    }

    fn state(&self) -> serde_json::Value {
        super::prompt_state(&self.prompt)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), AgpError> {
        self.prompt = super::restored_prompt(state, "random-search")?;
        Ok(())
    }

    fn learned_prompt(&self) -> Option<String> {
        Some(self.prompt.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drawn_edit_depends_on_seed_and_step_only() {
        let draws = |seed| (0..20).map(|s| drawn_edit(seed, s)).collect::<Vec<_>>();
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        // Every edit is drawn at some step: the draw covers the list.
        let all: std::collections::BTreeSet<usize> = (0..200).map(|s| drawn_edit(1, s)).collect();
        assert_eq!(all.len(), prompts::RANDOM_EDITS.len());
    }
}
