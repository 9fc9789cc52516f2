//! Generic prompt optimizers as baselines for AGP: OPRO (Yang et al. 2023) and ProTeGi (Pryzant
//! et al. 2023). Each learns AGP's profile-generation prompt `p_gen` from AGP's start, on AGP's
//! training loop (the driver's training users, batches, epochs, validation selection and
//! checkpoints), and ranks through AGP's own profile and rerank (Eqs. 2–3,
//! [`super::agp::generate_profile`] and [`super::agp::rerank_by_profile`]), so a comparison
//! with AGP isolates how a new prompt is found: AGP from per-user position feedback, OPRO from
//! the scores of earlier prompts alone, ProTeGi from hit-or-miss errors.
//!
//! Stages: scoring a prompt on a batch is `profile` and `rerank` (the current prompt and every
//! proposal alike), a proposal (OPRO's meta-prompt, ProTeGi's edit) is `edit`, ProTeGi's gradient
//! is `feedback`, and evaluation is `test`.
//!
//! A prompt's score on a batch is the mean NDCG@10 of its users. A proposal replaces a prompt
//! only by scoring strictly higher on the same users, as AGP's verify step asks of an edit.
//!
//! Failed calls under [`crate::FailurePolicy::Continue`] (fatal reasons always end the run):
//! - scoring the current prompt (or a beam prompt): that user is left out of the batch's
//!   comparison, as AGP leaves out of its accept test a user whose calls failed;
//! - scoring a proposal: the proposal is discarded, since it can no longer be compared on the
//!   same users;
//! - a proposal or gradient call: that proposal (a gradient's edits) is discarded.
//!
//! Every discarded or accepted proposal is one `prompt` event in the log and one count in the
//! epoch's `discarded_edits` / `accepted_edits`. With a training budget (`budget` or
//! `max_training_calls`), a batch that starts with the budget spent is skipped (see
//! [`crate::budget`]).

use agp_llm::FailureReason;

use crate::Stage;
use async_trait::async_trait;
use futures::FutureExt;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::config::{EditExtraction, LoopSettings, OproConfig, ProtegiConfig};
use crate::error::AgpError;
use crate::llm::Llm;
use crate::metrics::{UnparseableRule, UserResult, score_failed_call, score_ordering};
use crate::parse::{BOS, EOS};
use crate::prompts;
use crate::reranker::{
    BatchOutcome, Env, Ranking, RerankInput, Reranker, TrainStep, UserCase, join_ordered,
};

use super::agp::{extract_edit, generate_profile, rerank_by_profile};
use super::budget_spent;

/// `Err` holds the stage and reason of the call that failed.
type Tried<T> = Result<T, (Stage, FailureReason)>;

/// A failed call tolerated under the run's policy, with the stage it failed in.
fn tolerate_at<T>(llm: &Llm, r: Result<T, AgpError>) -> Result<Tried<T>, AgpError> {
    let stage = match &r {
        Err(AgpError::Llm { stage, .. }) => *stage,
        _ => Stage::Other,
    };
    Ok(llm.tolerate(r)?.map_err(|reason| (stage, reason)))
}

/// One user's Eqs. 2–3 under a prompt.
#[derive(Debug, Clone)]
pub(crate) struct Pass {
    pub(crate) history: String,
    pub(crate) profile: String,
    pub(crate) ranking: Ranking,
}

/// Eq. 2 then Eq. 3 (listwise) for one user with `prompt`: AGP's forward pass.
pub(crate) async fn forward(
    s: &LoopSettings,
    prompt: &str,
    input: &RerankInput,
    env: &Env,
    stages: (Stage, Stage),
) -> Result<Pass, AgpError> {
    let history = input.history_text(s.history_length, s.hist_mask, env.seed);
    let profile = generate_profile(&env.llm, stages.0, input.user, prompt, &history).await?;
    let (ranking, _) = rerank_by_profile(
        &env.llm,
        stages.1,
        input.user,
        &profile,
        &input.candidates,
        s.parse,
    )
    .await?;
    Ok(Pass {
        history,
        profile,
        ranking,
    })
}

/// A prompt scored on a batch: each user's pass (or the failed call) and result, batch order.
struct Scoring {
    passes: Vec<Tried<Pass>>,
    results: Vec<UserResult>,
}

impl Scoring {
    fn answered(&self) -> Vec<bool> {
        self.passes.iter().map(Result::is_ok).collect()
    }

    fn first_failure(&self) -> Option<(Stage, FailureReason)> {
        self.passes.iter().find_map(|p| p.as_ref().err().copied())
    }
}

/// Score `prompt` on every user of the batch (training stages `profile` and `rerank`).
async fn score_prompt(
    s: &LoopSettings,
    prompt: &str,
    batch: &[UserCase],
    env: &Env,
) -> Result<Scoring, AgpError> {
    let calls = batch
        .iter()
        .map(|c| {
            async move {
                let r = forward(s, prompt, &c.input, env, (Stage::Profile, Stage::Rerank)).await;
                tolerate_at(&env.llm, r)
            }
            .boxed()
        })
        .collect();
    let passes = join_ordered(calls, env.jobs).await?;
    let results = batch
        .iter()
        .zip(&passes)
        .map(|(c, p)| {
            let (user, k) = (c.input.user, c.input.candidates.len());
            match p {
                Ok(p) => score_ordering(
                    user,
                    &p.ranking.order,
                    c.gt_index,
                    k,
                    p.ranking.outcome,
                    s.unparseable,
                ),
                Err((_, reason)) => score_failed_call(user, k, *reason),
            }
        })
        .collect();
    Ok(Scoring { passes, results })
}

/// A prompt's score: the mean NDCG@10 over the users marked in `keep` (0 for none).
fn mean_ndcg(results: &[UserResult], keep: &[bool]) -> f64 {
    let (sum, n) = results
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .fold((0.0, 0usize), |(s, n), (r, _)| (s + r.ndcg, n + 1));
    sum / n.max(1) as f64
}

/// Why a proposal was not kept, or that it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Accepted,
    /// Scored no higher than the prompt(s) it had to beat.
    NotBetter,
    /// The same text as a prompt already in play this batch: not scored again.
    Repeat,
    /// A call it needed failed.
    CallFailed,
}

/// One proposal's line in the event log.
#[derive(Serialize)]
struct ProposalEvent<'a> {
    event: &'static str,
    optimizer: &'static str,
    status: &'static str,
    verdict: Verdict,
    epoch: usize,
    batch: usize,
    /// Index of the proposal within the batch.
    proposal: usize,
    /// Score (mean NDCG@10 on the batch) the proposal had to beat.
    score_before: f64,
    score_after: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureReason>,
    /// ProTeGi's gradient the proposal follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    gradient: Option<&'a str>,
    previous: &'a str,
    prompt: Option<&'a str>,
}

/// A proposal and what became of it.
struct Proposal {
    prompt: Option<String>,
    gradient: Option<String>,
    /// The prompt it had to beat.
    parent: String,
    score_before: f64,
    scored: Option<(f64, Vec<UserResult>)>,
    failed: Option<(Stage, FailureReason)>,
    verdict: Verdict,
}

impl Proposal {
    /// A proposed prompt, not scored yet.
    fn new(prompt: String, gradient: Option<String>, parent: &str, score_before: f64) -> Self {
        Self {
            prompt: Some(prompt),
            gradient,
            parent: parent.to_string(),
            score_before,
            scored: None,
            failed: None,
            verdict: Verdict::NotBetter,
        }
    }

    /// A proposal whose call failed.
    fn failed(parent: &str, score_before: f64, f: (Stage, FailureReason)) -> Self {
        Self {
            prompt: None,
            gradient: None,
            parent: parent.to_string(),
            score_before,
            scored: None,
            failed: Some(f),
            verdict: Verdict::CallFailed,
        }
    }
}

/// Log every proposal of a batch and count it as accepted or discarded.
fn report(
    optimizer: &'static str,
    step: TrainStep,
    proposals: &[Proposal],
    env: &Env,
    out: &mut BatchOutcome,
) -> Result<(), AgpError> {
    for (i, p) in proposals.iter().enumerate() {
        let accepted = p.verdict == Verdict::Accepted;
        if accepted {
            out.accepted += 1;
        } else {
            out.discarded += 1;
        }
        env.log_event(&ProposalEvent {
            event: "prompt",
            optimizer,
            status: if accepted { "accepted" } else { "discarded" },
            verdict: p.verdict,
            epoch: step.epoch,
            batch: step.batch,
            proposal: i,
            score_before: p.score_before,
            score_after: p.scored.as_ref().map(|(s, _)| *s),
            failed_stage: p.failed.map(|f| f.0),
            failure: p.failed.map(|f| f.1),
            gradient: p.gradient.as_deref(),
            previous: &p.parent,
            prompt: p.prompt.as_deref(),
        })?;
    }
    Ok(())
}

/// Score a proposal on the batch unless it repeats a prompt in `seen` (which it joins); a
/// proposal that lost a user to a failed call cannot be compared and is discarded.
async fn score_proposal(
    s: &LoopSettings,
    p: &mut Proposal,
    seen: &mut Vec<String>,
    keep: &[bool],
    batch: &[UserCase],
    env: &Env,
) -> Result<(), AgpError> {
    let Some(prompt) = p.prompt.clone() else {
        return Ok(());
    };
    if seen.contains(&prompt) {
        p.verdict = Verdict::Repeat;
        return Ok(());
    }
    seen.push(prompt.clone());
    let scoring = score_prompt(s, &prompt, batch, env).await?;
    if let Some(f) = scoring.first_failure() {
        p.failed = Some(f);
        p.verdict = Verdict::CallFailed;
        return Ok(());
    }
    p.scored = Some((mean_ndcg(&scoring.results, keep), scoring.results));
    p.verdict = Verdict::NotBetter;
    Ok(())
}

/// A prompt OPRO has scored, with its score over every batch it was scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredPrompt {
    pub prompt: String,
    /// Sum of NDCG@10 over the users it was scored on.
    pub ndcg_sum: f64,
    pub users: u64,
}

impl ScoredPrompt {
    /// Mean NDCG@10 over every user it was scored on. The current prompt is scored on each
    /// batch, so its score tends to its score on the whole training set, the score OPRO's
    /// history holds.
    pub fn score(&self) -> f64 {
        self.ndcg_sum / self.users.max(1) as f64
    }
}

/// Add a scoring of `prompt` on the users marked in `keep` to OPRO's history.
fn record(history: &mut Vec<ScoredPrompt>, prompt: &str, results: &[UserResult], keep: &[bool]) {
    let (sum, n) = results
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .fold((0.0, 0u64), |(s, n), (r, _)| (s + r.ndcg, n + 1));
    if n == 0 {
        return;
    }
    match history.iter_mut().find(|h| h.prompt == prompt) {
        Some(h) => {
            h.ndcg_sum += sum;
            h.users += n;
        }
        None => history.push(ScoredPrompt {
            prompt: prompt.to_string(),
            ndcg_sum: sum,
            users: n,
        }),
    }
}

/// The `size` best prompts of the history in ascending order of score, as OPRO's meta-prompt
/// shows them (`sorted(...)[-size:]`: among equal scores the older comes first).
pub fn top_ascending(history: &[ScoredPrompt], size: usize) -> Vec<(&str, f64)> {
    let mut shown: Vec<(&str, f64)> = history
        .iter()
        .map(|h| (h.prompt.as_str(), h.score()))
        .collect();
    shown.sort_by(|a, b| a.1.total_cmp(&b.1));
    let cut = shown.len().saturating_sub(size);
    shown.split_off(cut)
}

/// Batch indices of the example users of proposal `j` at `step`: OPRO draws its exemplars at
/// random; each proposal draws its own, seeded, so a resumed run draws the same and the
/// proposals of a batch are different requests (a recorded run would answer equal ones alike).
fn exemplars(batch_len: usize, n: usize, seed: u64, step: usize, j: usize) -> Vec<usize> {
    let key = seed ^ (((step as u64) << 24) | j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
    rand::seq::index::sample(&mut rng, batch_len, n.min(batch_len)).into_vec()
}

/// The seed sent with one sampled call: the run seed, the training step and the call's place
/// within it (proposal; or beam prompt, prompt and paraphrase), mixed so that every call of a
/// run gets its own. Kept below 2^31, which every API and llama.cpp's `u32` seed take as is.
pub fn call_seed(seed: u64, step: usize, place: &[usize]) -> u64 {
    let mut h = seed;
    for &p in std::iter::once(&step).chain(place) {
        h = (h ^ p as u64)
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    h & 0x7FFF_FFFF
}

/// OPRO's meta-prompt for proposal `j`.
fn opro_meta_prompt(
    s: &LoopSettings,
    shown: &[(&str, f64)],
    batch: &[UserCase],
    n_exemplars: usize,
    env: &Env,
    step: TrainStep,
    j: usize,
) -> String {
    let examples: Vec<String> = exemplars(batch.len(), n_exemplars, env.seed, step.step, j)
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let c = &batch[u];
            let history = c
                .input
                .history_text(s.history_length, s.hist_mask, env.seed);
            prompts::opro_example(i + 1, &history, &c.input.candidates[c.gt_index])
        })
        .collect();
    prompts::opro_meta(shown, &examples)
}

/// Learned state of OPRO, checkpointed after every batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OproState {
    prompt: String,
    history: Vec<ScoredPrompt>,
}

/// OPRO on AGP's `p_gen` (see [`OproConfig`]).
#[derive(Debug, Clone)]
pub struct Opro {
    pub cfg: OproConfig,
    /// Training users used (the config's `n_train_users` resolved against the candidate file).
    pub n_train: usize,
    prompt: String,
    history: Vec<ScoredPrompt>,
}

impl Opro {
    pub fn new(cfg: OproConfig, n_train: usize) -> Self {
        let prompt = super::starting_prompt(&cfg.initial_prompt);
        Self {
            cfg,
            n_train,
            prompt,
            history: Vec::new(),
        }
    }

    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Every prompt scored so far, in the order first scored.
    pub fn history(&self) -> &[ScoredPrompt] {
        &self.history
    }
}

#[async_trait]
impl Reranker for Opro {
    loop_reranker_settings!();

    /// One OPRO step: score the current prompt on the batch and add it to the history, ask
    /// `n_candidates` meta-prompts for a new prompt, score each on the batch (into the history
    /// too), and keep the best if it beats the current prompt on the same users.
    async fn train_batch(
        &mut self,
        step: TrainStep,
        batch: &[UserCase],
        env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        if budget_spent(self.cfg.loop_settings().training_budget(), step, env)? {
            return Ok(BatchOutcome::default());
        }
        let s = self.cfg.loop_settings();
        let current = self.prompt.clone();
        let base = score_prompt(&s, &current, batch, env).await?;
        let keep = base.answered();
        let before = mean_ndcg(&base.results, &keep);
        record(&mut self.history, &current, &base.results, &keep);

        let shown = top_ascending(&self.history, self.cfg.history_size);
        let llm = &env.llm;
        let decoding = &self.cfg.proposal_decoding;
        let calls = (0..self.cfg.n_candidates)
            .map(|j| {
                let meta = opro_meta_prompt(&s, &shown, batch, self.cfg.n_exemplars, env, step, j);
                let seed = self
                    .cfg
                    .seeded_proposals
                    .then(|| call_seed(env.seed, step.step, &[j]));
                async move {
                    let answer = llm.chat_with(Stage::Edit, None, meta, decoding, seed).await;
                    tolerate_at(llm, answer)
                }
                .boxed()
            })
            .collect();
        let answers = join_ordered(calls, env.jobs).await?;

        let mut proposals = Vec::with_capacity(answers.len());
        let mut seen = vec![current.clone()];
        for answer in answers {
            let mut p = match answer {
                Ok(a) => {
                    let prompt = extract_edit(&a, EditExtraction::BothMarkers).prompt;
                    Proposal::new(prompt, None, &current, before)
                }
                Err(f) => Proposal::failed(&current, before, f),
            };
            score_proposal(&s, &mut p, &mut seen, &keep, batch, env).await?;
            if let (Some(prompt), Some((_, results))) = (&p.prompt, &p.scored) {
                record(
                    &mut self.history,
                    prompt,
                    results,
                    &vec![true; results.len()],
                );
            }
            proposals.push(p);
        }

        // The first of the best proposals, if strictly better than the current prompt.
        let best = proposals
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.scored.as_ref().map(|(score, _)| (i, *score)))
            .fold(None, |best: Option<(usize, f64)>, (i, score)| match best {
                Some((_, b)) if b >= score => best,
                _ => Some((i, score)),
            })
            .filter(|(_, score)| *score > before);
        let mut out = BatchOutcome {
            results: base.results,
            ..BatchOutcome::default()
        };
        if let Some((i, _)) = best {
            let p = &mut proposals[i];
            p.verdict = Verdict::Accepted;
            if let (Some(prompt), Some((_, results))) = (&p.prompt, &p.scored) {
                self.prompt = prompt.clone();
                out.results = results.clone();
            }
        }
        report("opro", step, &proposals, env, &mut out)?;
        Ok(out)
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let s = self.cfg.loop_settings();
        Ok(
            forward(&s, &self.prompt, input, env, (Stage::Test, Stage::Test))
                .await?
                .ranking,
        )
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(OproState {
            prompt: self.prompt.clone(),
            history: self.history.clone(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), AgpError> {
        let s: OproState = serde_json::from_value(state)
            .map_err(|e| AgpError::Data(format!("checkpointed OPRO state: {e}")))?;
        self.prompt = s.prompt;
        self.history = s.history;
        Ok(())
    }

    fn learned_prompt(&self) -> Option<String> {
        Some(self.prompt.clone())
    }
}

/// Batch indices of the users a prompt gets wrong (ground truth below the top `hit_at`) among
/// those marked in `keep`, the worst ranked first (ties in batch order).
pub fn failing_users(results: &[UserResult], keep: &[bool], hit_at: usize) -> Vec<usize> {
    let mut failing: Vec<usize> = (0..results.len())
        .filter(|&i| keep.get(i).copied().unwrap_or(false) && results[i].rank > hit_at)
        .collect();
    failing.sort_by_key(|&i| std::cmp::Reverse(results[i].rank));
    failing
}

/// The prompts of an edit answer: the text between each pair of answer markers, the first `n`;
/// an answer without a closed pair is taken whole (trimmed), as AGP's Eq. 6 takes it.
pub fn edited_prompts(answer: &str, n: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = answer;
    while let Some(start) = rest.find(BOS) {
        let body = &rest[start + BOS.len()..];
        let Some(len) = body.find(EOS) else { break };
        found.push(body[..len].trim().to_string());
        rest = &body[len + EOS.len()..];
    }
    if found.is_empty() {
        found.push(extract_edit(answer, EditExtraction::BothMarkers).prompt);
    }
    found.truncate(n.max(1));
    found
}

/// ProTeGi's errors for one gradient: each failing user as [`prompts::protegi_error`] shows it.
fn error_texts(
    group: &[usize],
    batch: &[UserCase],
    scoring: &Scoring,
    hit_at: usize,
) -> Vec<String> {
    group
        .iter()
        .enumerate()
        .filter_map(|(i, &u)| {
            let pass = scoring.passes.get(u)?.as_ref().ok()?;
            let c = &batch[u];
            let top: Vec<&str> = pass
                .ranking
                .order
                .iter()
                .take(hit_at)
                .filter_map(|&idx| c.input.candidates.get(idx).map(String::as_str))
                .collect();
            Some(prompts::protegi_error(
                i + 1,
                &pass.history,
                &pass.profile,
                &top,
                hit_at,
                &c.input.candidates[c.gt_index],
            ))
        })
        .collect()
}

/// ProTeGi's expansion of one prompt from one group of errors: the gradient (`feedback`), then
/// the edit (`edit`) that writes `n_edits` prompts following it.
async fn gradient_and_edit(
    llm: &Llm,
    cfg: &ProtegiConfig,
    prompt: &str,
    errors: &[String],
) -> Result<Tried<(String, Vec<String>)>, AgpError> {
    let (hit_at, n_edits) = (cfg.hit_at, cfg.n_edits);
    let gradient = llm
        .chat_with(
            Stage::Feedback,
            None,
            prompts::protegi_gradient(prompt, errors, hit_at),
            &cfg.gradient_decoding,
            None,
        )
        .await;
    let gradient = match tolerate_at(llm, gradient)? {
        Ok(g) => g,
        Err(f) => return Ok(Err(f)),
    };
    let edit = llm
        .chat_with(
            Stage::Edit,
            None,
            prompts::protegi_edit(prompt, errors, hit_at, &gradient, n_edits),
            &cfg.edit_decoding,
            None,
        )
        .await;
    Ok(tolerate_at(llm, edit)?.map(|answer| (gradient, edited_prompts(&answer, n_edits))))
}

/// A prompt competing for the beam: the old beam's `m`-th, or the batch's `i`-th proposal.
#[derive(Debug, Clone, Copy)]
enum Member {
    Old(usize),
    New(usize),
}

/// Learned state of ProTeGi, checkpointed after every batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProtegiState {
    beam: Vec<String>,
}

/// ProTeGi on AGP's `p_gen` (see [`ProtegiConfig`]).
#[derive(Debug, Clone)]
pub struct Protegi {
    pub cfg: ProtegiConfig,
    /// Training users used (the config's `n_train_users` resolved against the candidate file).
    pub n_train: usize,
    /// Best first; never empty.
    beam: Vec<String>,
}

impl Protegi {
    pub fn new(cfg: ProtegiConfig, n_train: usize) -> Self {
        let prompt = super::starting_prompt(&cfg.initial_prompt);
        Self {
            cfg,
            n_train,
            beam: vec![prompt],
        }
    }

    /// The beam, best first (by the last batch's score); its first prompt is the one used.
    pub fn beam(&self) -> &[String] {
        &self.beam
    }
}

#[async_trait]
impl Reranker for Protegi {
    loop_reranker_settings!();

    /// One ProTeGi step: score every beam prompt on the batch, expand each (gradients from
    /// groups of its failing users, edits from the gradients), score the new prompts, and keep
    /// the `beam_width` best of old and new on the users every beam prompt was scored on (an
    /// old prompt keeps its place on a tie).
    async fn train_batch(
        &mut self,
        step: TrainStep,
        batch: &[UserCase],
        env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        if budget_spent(self.cfg.loop_settings().training_budget(), step, env)? {
            return Ok(BatchOutcome::default());
        }
        let s = self.cfg.loop_settings();
        let mut scorings = Vec::with_capacity(self.beam.len());
        for p in &self.beam {
            scorings.push(score_prompt(&s, p, batch, env).await?);
        }
        let keep: Vec<bool> = (0..batch.len())
            .map(|u| scorings.iter().all(|sc| sc.passes[u].is_ok()))
            .collect();
        let scores: Vec<f64> = scorings
            .iter()
            .map(|sc| mean_ndcg(&sc.results, &keep))
            .collect();

        let (hit_at, per_group) = (self.cfg.hit_at, self.cfg.errors_per_gradient.max(1));
        let mut jobs = Vec::new();
        for (m, sc) in scorings.iter().enumerate() {
            let failing = failing_users(&sc.results, &keep, hit_at);
            for group in failing.chunks(per_group).take(self.cfg.n_gradients) {
                jobs.push((m, error_texts(group, batch, sc, hit_at)));
            }
        }
        let llm = &env.llm;
        let cfg = &self.cfg;
        let beam = &self.beam;
        let calls = jobs
            .iter()
            .map(|(m, errors)| gradient_and_edit(llm, cfg, &beam[*m], errors).boxed())
            .collect();
        let expansions = join_ordered(calls, env.jobs).await?;

        let mut proposals = Vec::new();
        // Per beam prompt, its own text and then every prompt its edits wrote: what ProTeGi's
        // Monte-Carlo step paraphrases (`new_task_sections + [task_section]`).
        let mut successors: Vec<Vec<String>> = vec![Vec::new(); self.beam.len()];
        for ((m, _), expansion) in jobs.iter().zip(expansions) {
            let (parent, before) = (&self.beam[*m], scores[*m]);
            match expansion {
                Ok((gradient, prompts)) => {
                    successors[*m].extend(prompts.iter().cloned());
                    proposals.extend(
                        prompts
                            .into_iter()
                            .map(|p| Proposal::new(p, Some(gradient.clone()), parent, before)),
                    )
                }
                Err(f) => proposals.push(Proposal::failed(parent, before, f)),
            }
        }
        if self.cfg.n_paraphrases > 0 {
            let mut calls = Vec::new();
            let mut origin = Vec::new();
            for (m, news) in successors.iter().enumerate() {
                let sources = news.iter().chain(std::iter::once(&self.beam[m]));
                for (i, source) in sources.enumerate() {
                    for r in 0..self.cfg.n_paraphrases {
                        // One call per paraphrase where ProTeGi asks one call for `n`: the
                        // seed keeps the calls (and their recordings) apart.
                        let seed = call_seed(env.seed, step.step, &[m, i, r]);
                        let prompt = prompts::protegi_paraphrase(source);
                        let decoding = &self.cfg.edit_decoding;
                        calls.push(
                            async move {
                                let answer = llm
                                    .chat_with(Stage::Edit, None, prompt, decoding, Some(seed))
                                    .await;
                                tolerate_at(llm, answer)
                            }
                            .boxed(),
                        );
                        origin.push(m);
                    }
                }
            }
            let answers = join_ordered(calls, env.jobs).await?;
            for (m, answer) in origin.into_iter().zip(answers) {
                let (parent, before) = (&self.beam[m], scores[m]);
                proposals.push(match answer {
                    Ok(a) => Proposal::new(
                        extract_edit(&a, EditExtraction::BothMarkers).prompt,
                        None,
                        parent,
                        before,
                    ),
                    Err(f) => Proposal::failed(parent, before, f),
                });
            }
        }
        let mut seen = self.beam.clone();
        for p in &mut proposals {
            score_proposal(&s, p, &mut seen, &keep, batch, env).await?;
        }

        // Old prompts first, so a stable sort keeps them ahead of new ones with equal scores.
        let mut pool: Vec<(f64, Member)> = scores
            .iter()
            .enumerate()
            .map(|(m, &score)| (score, Member::Old(m)))
            .collect();
        pool.extend(
            proposals
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.scored.as_ref().map(|(score, _)| (*score, Member::New(i)))),
        );
        pool.sort_by(|a, b| b.0.total_cmp(&a.0));
        pool.truncate(self.cfg.beam_width.max(1));
        let mut out = BatchOutcome::default();
        let mut next = Vec::with_capacity(pool.len());
        for (rank, &(_, member)) in pool.iter().enumerate() {
            let (prompt, results) = match member {
                Member::New(i) => {
                    let p = &mut proposals[i];
                    p.verdict = Verdict::Accepted;
                    let results = p.scored.as_ref().map(|(_, r)| r.clone());
                    (p.prompt.clone().unwrap_or_default(), results)
                }
                Member::Old(m) => (self.beam[m].clone(), Some(scorings[m].results.clone())),
            };
            if rank == 0 {
                out.results = results.unwrap_or_default();
            }
            next.push(prompt);
        }
        self.beam = next;
        report("protegi", step, &proposals, env, &mut out)?;
        Ok(out)
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let s = self.cfg.loop_settings();
        let prompt = self.beam.first().map(String::as_str).unwrap_or_default();
        Ok(forward(&s, prompt, input, env, (Stage::Test, Stage::Test))
            .await?
            .ranking)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(ProtegiState {
            beam: self.beam.clone(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), AgpError> {
        let s: ProtegiState = serde_json::from_value(state)
            .map_err(|e| AgpError::Data(format!("checkpointed ProTeGi state: {e}")))?;
        if s.beam.is_empty() {
            return Err(AgpError::Data(
                "checkpointed ProTeGi state: the beam is empty".into(),
            ));
        }
        self.beam = s.beam;
        Ok(())
    }

    fn learned_prompt(&self) -> Option<String> {
        self.beam.first().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::ParseOutcome;

    fn result(rank: usize) -> UserResult {
        let order: Vec<usize> = (0..10).collect();
        score_ordering(
            0,
            &order,
            rank - 1,
            10,
            ParseOutcome::Exact,
            UnparseableRule::Zero,
        )
    }

    #[test]
    fn failing_users_are_the_misses_worst_first() {
        let results: Vec<UserResult> = [2, 7, 4, 10, 7, 1].map(result).to_vec();
        let keep = [true, true, true, true, true, true];
        assert_eq!(failing_users(&results, &keep, 3), [3, 1, 4, 2]);
        assert_eq!(
            failing_users(&results, &[true, false, true, true, true, true], 4),
            [3, 4]
        );
        assert!(failing_users(&results, &keep, 10).is_empty());
    }

    #[test]
    fn edit_answers_give_their_marked_prompts() {
        let a = "1. |beginoftext| p1 |endoftext| 2. |beginoftext|p2|endoftext| |beginoftext|p3";
        assert_eq!(edited_prompts(a, 5), ["p1", "p2"]);
        assert_eq!(edited_prompts(a, 1), ["p1"]);
        assert_eq!(edited_prompts(" just this ", 2), ["just this"]);
        assert_eq!(
            edited_prompts("|beginoftext| cut off", 1),
            ["|beginoftext| cut off"]
        );
    }

    #[test]
    fn history_is_shown_best_last_and_cut_to_the_best() {
        let h = |p: &str, sum: f64, users: u64| ScoredPrompt {
            prompt: p.into(),
            ndcg_sum: sum,
            users,
        };
        let history = [
            h("a", 0.5, 1),
            h("b", 0.2, 2),
            h("c", 0.9, 1),
            h("d", 0.5, 1),
        ];
        assert_eq!(
            top_ascending(&history, 10),
            [("b", 0.1), ("a", 0.5), ("d", 0.5), ("c", 0.9)]
        );
        assert_eq!(top_ascending(&history, 2), [("d", 0.5), ("c", 0.9)]);
    }

    #[test]
    fn recording_a_prompt_again_pools_its_users() {
        let mut history = Vec::new();
        let r = [result(1), result(3)];
        record(&mut history, "p", &r, &[true, true]);
        record(&mut history, "p", &r, &[true, false]);
        record(&mut history, "q", &r, &[false, false]);
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].users, 3);
        assert!((history[0].score() - (2.0 + r[1].ndcg) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn exemplars_are_seeded_per_step_and_proposal() {
        let a = exemplars(10, 3, 7, 4, 0);
        assert_eq!(a.len(), 3);
        assert_eq!(a, exemplars(10, 3, 7, 4, 0));
        assert!((0..8).any(|j| exemplars(10, 3, 7, 4, j) != a));
        assert_eq!(exemplars(2, 3, 7, 4, 0).len(), 2);
    }
}
