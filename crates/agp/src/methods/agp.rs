//! AGP (Eqs. 2–6 and the reference code's training loop, §3.4) and direct rerank-prompt
//! optimization, which runs the same loop on the rerank instruction instead of `p_gen`.
//!
//! Failed calls under [`crate::FailurePolicy::Continue`] (fatal reasons always end the run):
//! - profile or rerank (Eqs. 2–3): the user scores as an unusable answer for that step and
//!   gives no feedback; the accept test and the update strength use the mean rank of the users
//!   answered in the first pass, as the reference code drops a user whose calls raised from the
//!   batch average;
//! - feedback (Eq. 4): that user's critique is left out of the batch;
//! - summarize (Eq. 5), edit (Eq. 6) or any call of the verify pass: the batch's edit is
//!   discarded (counted in `discarded`, logged with the failed stage) and the prompt stays.
//!
//! With a training budget ([`AgpConfig::budget`] or its alias
//! [`AgpConfig::max_training_calls`]), a batch that starts with the budget spent is skipped (as
//! every learned method's, [`crate::budget`]).

use agp_llm::FailureReason;

use crate::Stage;
use async_trait::async_trait;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::config::{AgpConfig, EditExtraction, FeedbackListOrder, FeedbackPromptSource};
use crate::error::AgpError;
use crate::llm::Llm;
use crate::metrics::{UnparseableRule, UserResult, score_failed_call, score_ordering};
use crate::parse::{ParseOptions, ParseOutcome, after_bos, between_markers, parse_rerank};
use crate::prompts::{self, Position};
use crate::reranker::{
    BatchOutcome, Env, Ranking, RerankInput, Reranker, TrainStep, UserCase, join_ordered,
};

use super::order_by_scores;

/// Which prompt is learned and how candidates are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// AGP: profile from `p_gen` (Eq. 2), then a listwise rerank from the profile (Eq. 3).
    ProfileListwise,
    /// AGP with Eq. 3 done by pointwise yes/no scores against the profile.
    ProfilePointwise,
    /// Direct rerank-prompt optimization: the learned text is the rerank instruction (§7.6).
    DirectRerank,
}

/// Eq. 2: p(u) = LLM(H(u), p_gen).
pub async fn generate_profile(
    llm: &Llm,
    stage: Stage,
    user: u32,
    p_gen: &str,
    history: &str,
) -> Result<String, AgpError> {
    llm.chat(stage, Some(user), prompts::profile(p_gen, history))
        .await
}

/// Eq. 3: R̂(u) = LLM(p(u), R_base(u)), listwise. Returns the ranking and the prompt sent.
/// `parse` is a [`ParseOptions`] or a [`crate::MissingPolicy`].
pub async fn rerank_by_profile(
    llm: &Llm,
    stage: Stage,
    user: u32,
    profile: &str,
    candidates: &[String],
    parse: impl Into<ParseOptions>,
) -> Result<(Ranking, String), AgpError> {
    let k = candidates.len();
    let prompt = prompts::rerank_by_profile(profile, &prompts::candidate_list(candidates), k);
    let answer = llm.chat(stage, Some(user), prompt.clone()).await?;
    Ok((parse_rerank(&answer, k, parse), prompt))
}

/// Eq. 3 by pointwise scoring: each candidate's yes/no score given the profile. Returns the
/// ranking and the prompt template (candidate left as a placeholder).
pub async fn rerank_by_profile_pointwise(
    llm: &Llm,
    stage: Stage,
    user: u32,
    profile: &str,
    candidates: &[String],
) -> Result<(Ranking, String), AgpError> {
    let prefix = prompts::pointwise_prefix_profile(profile);
    let template = format!("{prefix}{}", prompts::pointwise_suffix("<candidate>"));
    let suffixes = candidates
        .iter()
        .map(|c| prompts::pointwise_suffix(c))
        .collect();
    let scores = llm.score(stage, Some(user), prefix, suffixes).await?;
    Ok((
        Ranking {
            order: order_by_scores(&scores),
            outcome: ParseOutcome::Pointwise,
        },
        template,
    ))
}

/// What one user's forward pass produced, for feedback and logging.
#[derive(Debug, Clone)]
struct Forward {
    profile: Option<String>,
    prompt_sent: String,
    history: String,
    ranking: Ranking,
}

/// The inputs of Eq. 4 for one user.
pub struct FeedbackInput<'a> {
    pub user: u32,
    pub candidates: &'a [String],
    pub gt_index: usize,
    pub ranking: &'a Ranking,
    /// 1-based rank of the ground truth (K if it is missing from the ranking).
    pub rank: usize,
    pub history: &'a str,
    pub profile: Option<&'a str>,
    /// What the feedback prompt shows as the current prompt.
    pub prompt_shown: &'a str,
}

/// Eq. 4, position-based feedback F(u): `None` when the ground truth is already first (its
/// target position), otherwise the LLM's critique. `state_position` puts the actual and target
/// position into the prompt; `list_order` picks the candidate order shown.
pub async fn position_feedback(
    llm: &Llm,
    route: Route,
    f: &FeedbackInput<'_>,
    state_position: bool,
    list_order: FeedbackListOrder,
) -> Result<Option<String>, AgpError> {
    if f.ranking.order.first() == Some(&f.gt_index) {
        return Ok(None);
    }
    let gt_text = &f.candidates[f.gt_index];
    let prompt = match (route, f.profile) {
        (Route::DirectRerank, _) | (_, None) => prompts::rerank_feedback(
            &f.ranking.order,
            f.gt_index,
            gt_text,
            &prompts::candidate_list(f.candidates),
            f.history,
        ),
        (_, Some(profile)) => {
            let list = match list_order {
                FeedbackListOrder::Backbone => prompts::candidate_list(f.candidates),
                FeedbackListOrder::Reranked => reranked_list(f.candidates, &f.ranking.order),
            };
            let position = state_position.then_some(Position {
                actual: f.rank,
                target: 1,
            });
            prompts::profile_feedback(gt_text, &list, profile, f.prompt_shown, position)
        }
    };
    llm.chat(Stage::Feedback, Some(f.user), prompt)
        .await
        .map(Some)
}

/// `<idx: text>` lines in reranked order; ids the answer left out follow in backbone order.
fn reranked_list(candidates: &[String], order: &[usize]) -> String {
    let mut seen = vec![false; candidates.len()];
    let mut lines = Vec::with_capacity(candidates.len());
    for i in order.iter().copied().chain(0..candidates.len()) {
        if i < candidates.len() && !seen[i] {
            seen[i] = true;
            lines.push(prompts::candidate_line(i, &candidates[i]));
        }
    }
    lines.join("\n")
}

/// Eq. 5: F_sum = LLM-Summarize({F(u)}); `losses` pairs a user's index in the batch with its
/// feedback.
pub async fn summarize_feedback(llm: &Llm, losses: &[(usize, String)]) -> Result<String, AgpError> {
    llm.chat(Stage::Summarize, None, prompts::summarize(losses))
        .await
}

/// The result of Eq. 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edited {
    pub prompt: String,
    /// False when the answer lacked the markers the extraction rule looks for (both, or
    /// `|beginoftext|` under [`EditExtraction::AfterBos`]) and was used whole (as the reference
    /// code does).
    pub markers_found: bool,
}

/// The edited prompt in an Edit answer, under `rule`.
pub fn extract_edit(answer: &str, rule: EditExtraction) -> Edited {
    let marked = match rule {
        EditExtraction::BothMarkers => between_markers(answer),
        EditExtraction::AfterBos => after_bos(answer),
    };
    match (marked, rule) {
        (Some(p), _) => Edited {
            prompt: p.trim().to_string(),
            markers_found: true,
        },
        (None, EditExtraction::BothMarkers) => Edited {
            prompt: answer.trim().to_string(),
            markers_found: false,
        },
        // The reference's `except` branch keeps the answer as it came.
        (None, EditExtraction::AfterBos) => Edited {
            prompt: answer.to_string(),
            markers_found: false,
        },
    }
}

/// Eq. 6: p_gen ← Edit(p_gen, F_sum). `update_strength` is the batch's mean ground-truth rank
/// under position-based feedback; `extraction` says how the new prompt is read from the answer.
pub async fn edit_prompt(
    llm: &Llm,
    prompt: &str,
    n_failed: usize,
    batch_len: usize,
    update_strength: Option<f64>,
    instructions: &str,
    extraction: EditExtraction,
) -> Result<Edited, AgpError> {
    let answer = llm
        .chat(
            Stage::Edit,
            None,
            prompts::edit(prompt, n_failed, batch_len, update_strength, instructions),
        )
        .await?;
    Ok(extract_edit(&answer, extraction))
}

/// AGP, pointwise AGP and direct rerank-prompt optimization.
#[derive(Debug, Clone)]
pub struct PromptOptimizer {
    pub route: Route,
    pub cfg: AgpConfig,
    /// Training users used (the config's `n_train_users` resolved against the candidate file).
    pub n_train: usize,
    prompt: String,
}

#[derive(Serialize)]
struct ProfileEvent<'a> {
    event: &'static str,
    phase: &'static str,
    epoch: usize,
    batch: usize,
    user: u32,
    profile: &'a str,
}

#[derive(Serialize)]
struct PromptEvent<'a> {
    event: &'static str,
    status: &'static str,
    epoch: usize,
    batch: usize,
    attempt: usize,
    mean_rank_before: f64,
    mean_rank_after: f64,
    n_failed: usize,
    batch_len: usize,
    instructions: &'a str,
    markers_found: bool,
    previous: &'a str,
    prompt: &'a str,
}

/// An edit discarded because one of its calls failed.
#[derive(Serialize)]
struct FailedEditEvent<'a> {
    event: &'static str,
    status: &'static str,
    epoch: usize,
    batch: usize,
    attempt: usize,
    mean_rank_before: f64,
    n_failed: usize,
    batch_len: usize,
    failed_stage: Stage,
    failure: FailureReason,
    previous: &'a str,
}

/// A candidate edit and its verify pass.
struct Proposal {
    instructions: String,
    edited: Edited,
    verified: Vec<UserResult>,
}

/// `Err` holds the stage and reason of the call that failed.
type Tried<T> = Result<T, (Stage, FailureReason)>;

impl PromptOptimizer {
    pub fn new(route: Route, cfg: AgpConfig, n_train: usize) -> Self {
        let prompt = cfg.initial_prompt.clone().unwrap_or_else(|| match route {
            Route::DirectRerank => prompts::INITIAL_RERANK_PROMPT.to_string(),
            Route::ProfileListwise | Route::ProfilePointwise => {
                prompts::INITIAL_PROFILE_PROMPT.to_string()
            }
        });
        Self {
            route,
            cfg,
            n_train,
            prompt,
        }
    }

    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Profile (if any) and rerank for one user with `prompt`.
    async fn forward(
        &self,
        prompt: &str,
        input: &RerankInput,
        env: &Env,
        stages: (Stage, Stage),
    ) -> Result<Forward, AgpError> {
        let history = input.history_text(self.cfg.history_length, self.cfg.hist_mask, env.seed);
        let (profile_stage, rank_stage) = stages;
        match self.route {
            Route::DirectRerank => {
                let k = input.candidates.len();
                let sent = prompts::rerank_learned(
                    prompt,
                    &history,
                    &prompts::candidate_list(&input.candidates),
                    k,
                );
                let answer = env
                    .llm
                    .chat(rank_stage, Some(input.user), sent.clone())
                    .await?;
                let ranking = parse_rerank(&answer, k, self.cfg.parse_options());
                Ok(Forward {
                    profile: None,
                    prompt_sent: sent,
                    history,
                    ranking,
                })
            }
            Route::ProfileListwise | Route::ProfilePointwise => {
                let profile =
                    generate_profile(&env.llm, profile_stage, input.user, prompt, &history).await?;
                let (ranking, sent) = if self.route == Route::ProfileListwise {
                    rerank_by_profile(
                        &env.llm,
                        rank_stage,
                        input.user,
                        &profile,
                        &input.candidates,
                        self.cfg.parse_options(),
                    )
                    .await?
                } else {
                    rerank_by_profile_pointwise(
                        &env.llm,
                        rank_stage,
                        input.user,
                        &profile,
                        &input.candidates,
                    )
                    .await?
                };
                Ok(Forward {
                    profile: Some(profile),
                    prompt_sent: sent,
                    history,
                    ranking,
                })
            }
        }
    }

    /// Every user's forward pass; a user whose call failed (and was tolerated) is `Err` with
    /// the reason and scores as an unusable answer.
    async fn forward_batch(
        &self,
        prompt: &str,
        batch: &[UserCase],
        env: &Env,
        stages: (Stage, Stage),
    ) -> Result<(Vec<Result<Forward, FailureReason>>, Vec<UserResult>), AgpError> {
        let calls = batch
            .iter()
            .map(|c| {
                async move {
                    env.llm
                        .tolerate(self.forward(prompt, &c.input, env, stages).await)
                }
                .boxed()
            })
            .collect();
        let fwd = join_ordered(calls, env.jobs).await?;
        let results = batch
            .iter()
            .zip(&fwd)
            .map(|(c, f)| {
                let (user, k) = (c.input.user, c.input.candidates.len());
                match f {
                    Ok(f) => score_ordering(
                        user,
                        &f.ranking.order,
                        c.gt_index,
                        k,
                        f.ranking.outcome,
                        self.cfg.unparseable,
                    ),
                    Err(reason) => score_failed_call(user, k, *reason),
                }
            })
            .collect();
        Ok((fwd, results))
    }

    /// Summarize (Eq. 5), edit (Eq. 6) and the verify pass of one batch.
    async fn propose(
        &self,
        current: &str,
        batch: &[UserCase],
        losses: &[(usize, String)],
        strength: Option<f64>,
        env: &Env,
    ) -> Result<Tried<Proposal>, AgpError> {
        let llm = &env.llm;
        let instructions = if self.cfg.summarize {
            match llm.tolerate(summarize_feedback(llm, losses).await)? {
                Ok(s) => s,
                Err(reason) => return Ok(Err((Stage::Summarize, reason))),
            }
        } else {
            prompts::failed_cases(losses)
        };
        let edited = edit_prompt(
            llm,
            current,
            losses.len(),
            batch.len(),
            strength,
            &instructions,
            self.cfg.edit_extraction,
        )
        .await;
        let edited = match llm.tolerate(edited)? {
            Ok(e) => e,
            Err(reason) => return Ok(Err((Stage::Edit, reason))),
        };
        let (fwd, verified) = self
            .forward_batch(&edited.prompt, batch, env, (Stage::Verify, Stage::Verify))
            .await?;
        // A user the edit could not be tried on would make the comparison meaningless.
        if let Some(&reason) = fwd.iter().find_map(|f| f.as_ref().err()) {
            return Ok(Err((Stage::Verify, reason)));
        }
        Ok(Ok(Proposal {
            instructions,
            edited,
            verified,
        }))
    }
}

/// Mean rank over the users marked in `keep`.
fn mean_rank(results: &[UserResult], keep: &[bool]) -> f64 {
    let ranks: Vec<f64> = results
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(r, _)| r.rank as f64)
        .collect();
    ranks.iter().sum::<f64>() / ranks.len().max(1) as f64
}

#[async_trait]
impl Reranker for PromptOptimizer {
    loop_reranker_settings!();

    /// The §3.4 loop for one batch: `verify_steps` times, forward → feedback → (summarize) →
    /// edit → re-run the same batch with the edit, keeping it only if the mean rank strictly
    /// improves.
    async fn train_batch(
        &mut self,
        step: TrainStep,
        batch: &[UserCase],
        env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        let mut out = BatchOutcome::default();
        if super::budget_spent(self.cfg.loop_settings().training_budget(), step, env)? {
            return Ok(out);
        }
        for attempt in 0..self.cfg.verify_steps {
            let current = self.prompt.clone();
            let (fwd, results) = self
                .forward_batch(&current, batch, env, (Stage::Profile, Stage::Rerank))
                .await?;
            if step.is_begin() || step.is_end() {
                let phase = if step.is_begin() { "begin" } else { "end" };
                for (c, f) in batch.iter().zip(&fwd) {
                    if let Ok(Forward {
                        profile: Some(profile),
                        ..
                    }) = f
                    {
                        env.log_event(&ProfileEvent {
                            event: "profile",
                            phase,
                            epoch: step.epoch,
                            batch: step.batch,
                            user: c.input.user,
                            profile,
                        })?;
                    }
                }
            }
            let state_position = self.cfg.pbf && !self.cfg.reference_feedback_text;
            let llm = &env.llm;
            let mut calls = Vec::with_capacity(batch.len());
            for (i, ((c, f), r)) in batch.iter().zip(&fwd).zip(&results).enumerate() {
                // No ranking to critique.
                let Ok(f) = f else { continue };
                let shown = match self.cfg.feedback_prompt_source {
                    FeedbackPromptSource::PGen => current.as_str(),
                    FeedbackPromptSource::RerankPrompt => f.prompt_sent.as_str(),
                };
                let input = FeedbackInput {
                    user: c.input.user,
                    candidates: &c.input.candidates,
                    gt_index: c.gt_index,
                    ranking: &f.ranking,
                    rank: r.rank,
                    history: &f.history,
                    profile: f.profile.as_deref(),
                    prompt_shown: shown,
                };
                let (route, order) = (self.route, self.cfg.feedback_list_order);
                calls.push(
                    async move {
                        let loss = llm.tolerate(
                            position_feedback(llm, route, &input, state_position, order).await,
                        )?;
                        Ok(loss.ok().flatten().map(|l| (i, l)))
                    }
                    .boxed(),
                );
            }
            let losses = join_ordered(calls, env.jobs).await?;
            let losses: Vec<(usize, String)> = losses.into_iter().flatten().collect();
            out.results = results;
            if losses.is_empty() {
                continue;
            }
            let answered: Vec<bool> = fwd.iter().map(Result::is_ok).collect();
            let before = mean_rank(&out.results, &answered);
            let strength = (self.cfg.pbf && self.cfg.update_strength).then_some(before);
            let proposal = self
                .propose(&current, batch, &losses, strength, env)
                .await?;
            let Proposal {
                instructions,
                edited,
                verified,
            } = match proposal {
                Ok(p) => p,
                Err((failed_stage, failure)) => {
                    env.log_event(&FailedEditEvent {
                        event: "prompt",
                        status: "discarded",
                        epoch: step.epoch,
                        batch: step.batch,
                        attempt,
                        mean_rank_before: before,
                        n_failed: losses.len(),
                        batch_len: batch.len(),
                        failed_stage,
                        failure,
                        previous: &current,
                    })?;
                    out.discarded += 1;
                    continue;
                }
            };
            let after = mean_rank(&verified, &answered);
            let accepted = after < before;
            env.log_event(&PromptEvent {
                event: "prompt",
                status: if accepted { "accepted" } else { "discarded" },
                epoch: step.epoch,
                batch: step.batch,
                attempt,
                mean_rank_before: before,
                mean_rank_after: after,
                n_failed: losses.len(),
                batch_len: batch.len(),
                instructions: &instructions,
                markers_found: edited.markers_found,
                previous: &current,
                prompt: &edited.prompt,
            })?;
            if accepted {
                self.prompt = edited.prompt;
                out.results = verified;
                out.accepted += 1;
            } else {
                out.discarded += 1;
            }
        }
        Ok(out)
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        Ok(self
            .forward(&self.prompt, input, env, (Stage::Test, Stage::Test))
            .await?
            .ranking)
    }

    fn state(&self) -> serde_json::Value {
        super::prompt_state(&self.prompt)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), AgpError> {
        self.prompt = super::restored_prompt(state, "prompt-optimizer")?;
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
    fn reranked_list_completes_partial_orders_in_backbone_order() {
        let c: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(reranked_list(&c, &[2, 0]), "<2: c>\n<0: a>\n<1: b>\n<3: d>");
        assert_eq!(reranked_list(&c, &[]), "<0: a>\n<1: b>\n<2: c>\n<3: d>");
    }

    #[test]
    fn initial_prompts_by_route() {
        let cfg = AgpConfig::default();
        assert_eq!(
            PromptOptimizer::new(Route::ProfileListwise, cfg.clone(), 1).prompt(),
            ""
        );
        assert_eq!(
            PromptOptimizer::new(Route::DirectRerank, cfg.clone(), 1).prompt(),
            prompts::INITIAL_RERANK_PROMPT
        );
        let given = AgpConfig {
            initial_prompt: Some("p".into()),
            ..cfg
        };
        assert_eq!(
            PromptOptimizer::new(Route::ProfilePointwise, given, 1).prompt(),
            "p"
        );
    }
}
