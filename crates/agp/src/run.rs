//! The driver: builds user cases from a dataset and a candidate file, trains a [`Reranker`]
//! epoch by epoch with a checkpoint after every batch, evaluates test users (and, when there
//! are several epochs to choose from, validation users) after every epoch, and assembles a
//! [`MethodRun`].
//!
//! # Failed calls
//!
//! Under [`FailurePolicy::Continue`] (the default) a call that fails for a non-fatal reason
//! (after the HTTP client's own retries) is an outcome, not the end of the run: an evaluated
//! user scores rank K and NDCG 0 with [`ParseOutcome::CallFailed`] and the reason in
//! [`UserResult::failure`]; training skips the user's feedback, or discards the batch's edit
//! when a summarize, edit or verify call fails. [`MethodRun::failures`] and
//! [`StageTally::failed`] count them. Fatal reasons (a replay miss, an unwritable recordings
//! file, a rejected key or request) end the run under either policy.
//!
//! A checkpoint that holds a *transient* failure ([`FailureReason::is_transient`]: rate limit,
//! server error, timeout, ...) is not resumed: the run starts over from epoch 1 so that those
//! calls are asked again. With recordings (an `agp_llm::Recorder` in `auto` mode, as every paid
//! run has) each answered call replays for free and only the failed ones are paid again.
//! Permanent failures (refusal, content filter, empty answer) are answers: a checkpoint holding
//! only those resumes as usual.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agp_datasets::Dataset;
use agp_datasets::candidates::{CandidateFile, FORMAT_VERSION};
use agp_llm::{ChatModel, FailureReason, ModelInfo, Sampling, UsageLedger};

use crate::Stage;
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::config::MethodConfig;
use crate::error::AgpError;
use crate::llm::{FailurePolicy, Llm, RunCalls, StageTally, eq7_api_calls, training_calls};
use crate::log::EventLog;
use crate::methods::{
    Base, First, ListwiseBaseline, Opro, PointwiseBaseline, PromptOptimizer, Protegi, PrpAllpair,
    PrpSort, RandomSearch, RankGpt, Route, Setwise,
};
use crate::metrics::{
    AnswerScoring, MeanMetrics, UnparseableRule, UserResult, random_order_ndcg, score_ordering,
    score_under_rule,
};
use crate::order::{CandidateOrder, Ordered};
use crate::parse::ParseOutcome;
use crate::reranker::{Env, RerankInput, Reranker, TrainStep, UserCase, join_ordered};

/// Run-wide options (everything that is not the method's own config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// Sampling settings sent with every chat call (e.g. a `max_tokens` cap).
    pub sampling: Sampling,
    /// Where `checkpoint.json` and `events.jsonl` go; `None` runs without either. A directory
    /// holding a checkpoint of the same method and config resumes from it, unless the
    /// checkpoint holds a transient call failure: then the run starts over from epoch 1 (see
    /// the [module docs](crate::run)).
    pub log_dir: Option<PathBuf>,
    /// Calls in flight at once (users of a batch run concurrently).
    pub jobs: usize,
    /// Seeds the history masking.
    pub seed: u64,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// What a failed LLM call does: `continue` (default) scores it as an outcome for the user
    /// or training step it belongs to, `stop` ends the run with the error. Fatal reasons end
    /// the run either way.
    pub on_failure: FailurePolicy,
    /// The ledger the run books its calls in, through a scope of its own (what
    /// [`MethodRun::calls`] counts). Runs over one model that share a ledger total the model's
    /// use in it.
    #[serde(skip)]
    pub ledger: UsageLedger,
    /// What an unusable or partial answer scores at evaluation (test and validation users),
    /// the same for every method of an experiment; each user's result also carries the other
    /// rule's score.
    pub scoring: AnswerScoring,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            sampling: Sampling::default(),
            log_dir: None,
            jobs: agp_llm::DEFAULT_JOBS,
            seed: 0,
            progress: false,
            on_failure: FailurePolicy::default(),
            ledger: UsageLedger::default(),
            scoring: AnswerScoring::default(),
        }
    }
}

/// Metrics of one epoch. Methods without training have one epoch and no train metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    /// Training users as last ranked in the epoch (post-edit values where an edit was kept).
    pub train: Option<MeanMetrics>,
    pub test: MeanMetrics,
    pub valid: Option<MeanMetrics>,
    pub accepted_edits: usize,
    pub discarded_edits: usize,
}

/// How an epoch was chosen for reporting.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The epoch with the highest NDCG@10 on the separate validation users (what reports lead
    /// with).
    #[default]
    BestValid,
    /// The epoch with the highest test NDCG@10: the paper's apparent choice, optimistic because
    /// it is chosen on the test users themselves.
    BestTest,
    /// The final epoch.
    Last,
    /// The epoch whose validation NDCG@10 has the highest one-sided 95% lower confidence bound,
    /// mean − t(0.95, n − 1)·sd/√n over the n validation users ([`lower_confidence_bound`]): an
    /// epoch that is best on a few lucky users loses to one almost as good on all of them. Only
    /// a learned method with `select = "valid-lcb"` reports it, beside `best-valid`; it is not
    /// in [`Selection::ALL`], so reports that do not ask for it are unchanged.
    ValidLcb,
}

impl Selection {
    /// In the order reports list them.
    pub const ALL: [Selection; 3] = [Selection::BestValid, Selection::BestTest, Selection::Last];

    /// The name used on the command line and in reports (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            Selection::BestValid => "best-valid",
            Selection::BestTest => "best-test",
            Selection::Last => "last",
            Selection::ValidLcb => "valid-lcb",
        }
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Selection {
    type Err = AgpError;

    fn from_str(s: &str) -> Result<Self, AgpError> {
        Selection::ALL
            .into_iter()
            .chain([Selection::ValidLcb])
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                AgpError::config("selection", "best-valid, best-test, last or valid-lcb", s)
            })
    }
}

/// One reported epoch with its per-user test results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectedEpoch {
    pub selection: Selection,
    pub epoch: usize,
    pub test: MeanMetrics,
    pub valid: Option<MeanMetrics>,
    pub users: Vec<UserResult>,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRun {
    pub label: String,
    /// The method config as given.
    pub config: serde_json::Value,
    pub model: ModelInfo,
    /// Candidate list length K.
    pub k: usize,
    pub n_train_users: usize,
    pub n_test_users: usize,
    /// Validation users evaluated after every epoch (0 for single-epoch methods).
    pub n_valid_users: usize,
    pub epochs: Vec<EpochMetrics>,
    pub last: SelectedEpoch,
    pub best_test: SelectedEpoch,
    /// The epoch chosen on the validation users. With a single epoch it is that epoch (and
    /// validation users are not evaluated); `None` when several epochs ran but the candidate
    /// file has no validation users.
    pub best_valid: Option<SelectedEpoch>,
    /// The epoch chosen by [`Selection::ValidLcb`], for a method that asks for it (`None`
    /// otherwise, and without validation users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_lcb: Option<SelectedEpoch>,
    /// Requests, tokens and failed calls per stage. Training calls are `profile`, `rerank`,
    /// `feedback`, `summarize`, `edit` and `verify` (the re-evaluation of an edit); every
    /// evaluation call of test and validation users is `test`. A pointwise request of n
    /// candidates counts n.
    pub calls: BTreeMap<Stage, StageTally>,
    /// HTTP requests answered, over all stages.
    pub total_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Eq. 7's training calls per epoch for this batch size and training-set size, to compare
    /// with the counted `profile + rerank + feedback + summarize + edit` (+ `verify`) calls.
    pub eq7_calls_per_epoch: Option<f64>,
    /// Answered training requests per epoch in the stages Eq. 7 models (profile, rerank,
    /// feedback, summarize, edit); the verify step's are in `calls[verify]`. Eq. 7 assumes a
    /// listwise rerank; a pointwise one adds K requests per user here, as it does to the bill.
    pub counted_calls_per_epoch: Option<f64>,
    /// The test users in backbone order (the reference code's "SR" line), for paired
    /// comparisons.
    pub backbone: MeanMetrics,
    /// Expected NDCG@10 of a uniformly random order of K candidates: chance level.
    pub random_order_ndcg: f64,
    /// Outcomes of every ranking the driver scored (evaluations and training batches).
    pub parse_counts: BTreeMap<ParseOutcome, u64>,
    /// Failed calls by reason, over all stages (including those the run went on after).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<FailureReason, u64>,
    /// The learned prompt at the end, for methods that learn one.
    pub final_prompt: Option<String>,
    /// The rule test and validation users were scored under; each user's `other_rule` holds
    /// the other one.
    #[serde(default)]
    pub scoring: AnswerScoring,
}

impl MethodRun {
    /// The reported epoch chosen by `selection` (`None` for `BestValid` without validation
    /// users).
    pub fn selected(&self, selection: Selection) -> Option<&SelectedEpoch> {
        match selection {
            Selection::Last => Some(&self.last),
            Selection::BestTest => Some(&self.best_test),
            Selection::BestValid => self.best_valid.as_ref(),
            Selection::ValidLcb => self.valid_lcb.as_ref(),
        }
    }

    /// Answered training requests (every stage but `test`): the count a `max_training_calls`
    /// budget is measured in, so AGP's value is the budget that gives OPRO or ProTeGi its calls.
    pub fn training_calls(&self) -> u64 {
        training_calls(&self.calls)
    }
}

/// Build the method a config describes.
pub fn build_reranker(cfg: &MethodConfig, cands: &CandidateFile) -> Box<dyn Reranker> {
    match cfg {
        MethodConfig::Base(_) => Box::new(Base),
        MethodConfig::LlmDir(c) => Box::new(ListwiseBaseline {
            cot: false,
            cfg: c.clone(),
        }),
        MethodConfig::LlmCot(c) => Box::new(ListwiseBaseline {
            cot: true,
            cfg: c.clone(),
        }),
        MethodConfig::LlmDirPointwise(c) => Box::new(PointwiseBaseline { cfg: c.clone() }),
        MethodConfig::Agp(c) => Box::new(PromptOptimizer::new(
            Route::ProfileListwise,
            c.clone(),
            c.train_users(cands),
        )),
        MethodConfig::AgpPointwise(c) => Box::new(PromptOptimizer::new(
            Route::ProfilePointwise,
            c.clone(),
            c.train_users(cands),
        )),
        MethodConfig::RerankOpt(c) => Box::new(PromptOptimizer::new(
            Route::DirectRerank,
            c.clone(),
            c.train_users(cands),
        )),
        MethodConfig::RankGpt(c) => Box::new(RankGpt { cfg: c.clone() }),
        MethodConfig::PrpAllpair(c) => Box::new(PrpAllpair { cfg: c.clone() }),
        MethodConfig::PrpSort(c) => Box::new(PrpSort { cfg: c.clone() }),
        MethodConfig::Setwise(c) => Box::new(Setwise { cfg: c.clone() }),
        MethodConfig::First(c) => Box::new(First { cfg: c.clone() }),
        MethodConfig::Opro(c) => Box::new(Opro::new(c.clone(), c.train_users(cands))),
        MethodConfig::Protegi(c) => Box::new(Protegi::new(c.clone(), c.train_users(cands))),
        MethodConfig::RandomSearch(c) => {
            Box::new(RandomSearch::new(c.clone(), c.train_users(cands)))
        }
    }
}

/// Run one configured method end to end: validate, train (if it learns), evaluate every epoch.
pub async fn run_method(
    cfg: &MethodConfig,
    ds: &Dataset,
    cands: &CandidateFile,
    llm: Arc<dyn ChatModel>,
    opts: &RunOptions,
) -> Result<MethodRun, AgpError> {
    run_configured(cfg, None, ds, cands, llm, opts).await
}

/// [`run_method`] with the candidates shown in `order` ([`Ordered`]): the run's label is
/// [`CandidateOrder::label`] of the method's, every evaluated user's result carries its
/// [`crate::FirstShown`], and the config echo (so a checkpoint) names the order. Base, whose
/// order is the backbone's by definition, runs as it is.
pub async fn run_method_in_order(
    cfg: &MethodConfig,
    order: CandidateOrder,
    ds: &Dataset,
    cands: &CandidateFile,
    llm: Arc<dyn ChatModel>,
    opts: &RunOptions,
) -> Result<MethodRun, AgpError> {
    run_configured(cfg, Some(order), ds, cands, llm, opts).await
}

async fn run_configured(
    cfg: &MethodConfig,
    order: Option<CandidateOrder>,
    ds: &Dataset,
    cands: &CandidateFile,
    llm: Arc<dyn ChatModel>,
    opts: &RunOptions,
) -> Result<MethodRun, AgpError> {
    cfg.validate(cands)?;
    let mut echo =
        serde_json::to_value(cfg).map_err(|e| AgpError::Data(format!("config echo: {e}")))?;
    let mut reranker = build_reranker(cfg, cands);
    let mut label = cfg.label(cands);
    if let Some(order) = order.filter(|_| !matches!(cfg, MethodConfig::Base(_))) {
        reranker = Box::new(Ordered::new(reranker, order));
        label = order.label(&label);
        if let Some(map) = echo.as_object_mut() {
            map.insert("candidate_order".into(), order.to_string().into());
        }
    }
    let mut run = run_reranker(reranker.as_mut(), &label, echo, ds, cands, llm, opts).await?;
    if let MethodConfig::Agp(c) | MethodConfig::AgpPointwise(c) | MethodConfig::RerankOpt(c) = cfg {
        run.eq7_calls_per_epoch = Some(eq7_api_calls(c.batch_size, c.train_users(cands)));
        let modelled = [
            Stage::Profile,
            Stage::Rerank,
            Stage::Feedback,
            Stage::Summarize,
            Stage::Edit,
        ];
        let counted: u64 = modelled
            .iter()
            .filter_map(|s| run.calls.get(s))
            .map(|t| t.calls)
            .sum();
        run.counted_calls_per_epoch = Some(counted as f64 / run.epochs.len().max(1) as f64);
    }
    Ok(run)
}

/// Check that the candidate file belongs to the dataset and holds what the protocol needs.
pub fn check_inputs(ds: &Dataset, cands: &CandidateFile) -> Result<(), AgpError> {
    let bad = |m: String| {
        Err(AgpError::Data(format!(
            "candidate file ({} / {}): {m}",
            cands.dataset, cands.model
        )))
    };
    if cands.format_version != FORMAT_VERSION {
        return bad(format!(
            "format_version {} (this build reads {FORMAT_VERSION})",
            cands.format_version
        ));
    }
    if let Err(e) = cands.check_against(ds) {
        return bad(e.to_string());
    }
    if cands.test_users.is_empty() {
        return bad("no test_users".into());
    }
    Ok(())
}

fn user_case(ds: &Dataset, cands: &CandidateFile, u: u32) -> Result<UserCase, AgpError> {
    let text = |i: u32| ds.item_text[i as usize].clone();
    let list = &cands.lists[u as usize];
    let gt_index = cands
        .target_position(u, ds.test[u as usize])
        .ok_or_else(|| {
            AgpError::Data(format!("user {u}: test item is not in the candidate list"))
        })?;
    Ok(UserCase {
        input: RerankInput {
            user: u,
            history: ds.history_before_test(u).into_iter().map(text).collect(),
            candidates: list.items.iter().map(|&i| text(i)).collect(),
        },
        gt_index,
    })
}

#[derive(Serialize)]
struct EpochEvent<'a> {
    event: &'static str,
    #[serde(flatten)]
    metrics: &'a EpochMetrics,
    prompt: Option<&'a str>,
}

/// Per-epoch record kept in the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EpochRecord {
    metrics: EpochMetrics,
    test: Vec<UserResult>,
    valid: Vec<UserResult>,
}

const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    label: String,
    config: serde_json::Value,
    /// What else fixes the run's results: model, sampling, seed, candidate file. A checkpoint
    /// is only resumed when all of it matches.
    inputs: serde_json::Value,
    /// The epoch in progress (1-based); `n_epochs + 1` once finished.
    epoch: usize,
    /// Training batches of `epoch` already done.
    batches_done: usize,
    epoch_train: Vec<UserResult>,
    epoch_accepted: usize,
    epoch_discarded: usize,
    done: Vec<EpochRecord>,
    calls: BTreeMap<Stage, StageTally>,
    /// Decides whether the checkpoint may be resumed (no transient failures) and keeps the
    /// counts of a resumed run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    failures: BTreeMap<FailureReason, u64>,
    parse_counts: BTreeMap<ParseOutcome, u64>,
    reranker: serde_json::Value,
    log_len: u64,
}

fn load_checkpoint(path: &Path) -> Result<Option<Checkpoint>, AgpError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| AgpError::Checkpoint {
                path: path.into(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AgpError::io(path, e)),
    }
}

/// Write via a temporary file and rename, so a kill mid-write leaves the previous checkpoint.
fn save_checkpoint(path: &Path, ck: &Checkpoint) -> Result<(), AgpError> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(ck).map_err(|e| AgpError::Checkpoint {
        path: path.into(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, body).map_err(|e| AgpError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AgpError::io(path, e))
}

fn bar(show: bool, len: usize, msg: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64).with_message(msg);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:30} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb
}

async fn evaluate(
    r: &dyn Reranker,
    cases: &[UserCase],
    env: &Env,
    pb: &ProgressBar,
    scoring: AnswerScoring,
) -> Result<Vec<UserResult>, AgpError> {
    let rule = r.unparseable_rule();
    let calls = cases
        .iter()
        .map(|c| {
            async move {
                let ranking = env.llm.tolerate(r.rerank_shown(&c.input, env).await)?;
                pb.inc(1);
                let k = c.input.candidates.len();
                let (order, outcome, failure, first_shown) = match ranking {
                    Ok((ranking, first_shown)) => {
                        (ranking.order, ranking.outcome, None, first_shown)
                    }
                    Err(reason) => (Vec::new(), ParseOutcome::CallFailed, Some(reason), None),
                };
                Ok(UserResult {
                    first_shown,
                    ..score_under_rule(
                        c.input.user,
                        &order,
                        c.gt_index,
                        k,
                        outcome,
                        rule,
                        failure,
                        scoring,
                    )
                })
            }
            .boxed()
        })
        .collect();
    join_ordered(calls, env.jobs).await
}

fn count(parse: &mut BTreeMap<ParseOutcome, u64>, results: &[UserResult]) {
    for r in results {
        *parse.entry(r.parse).or_default() += 1;
    }
}

struct Cases {
    train: Vec<UserCase>,
    test: Vec<UserCase>,
    valid: Vec<UserCase>,
}

/// The protocol's users as cases: the first `n_train` training users, the test users, and the
/// validation users when there are several epochs to choose from (with one there is nothing to
/// choose, so they are not paid for).
fn protocol_cases(
    ds: &Dataset,
    cands: &CandidateFile,
    n_train: usize,
    n_epochs: usize,
) -> Result<Cases, AgpError> {
    if n_train > cands.train_users.len() {
        return Err(AgpError::config(
            "n_train_users",
            format!("0..={}", cands.train_users.len()),
            n_train,
        ));
    }
    let cases = |users: &[u32]| -> Result<Vec<UserCase>, AgpError> {
        users.iter().map(|&u| user_case(ds, cands, u)).collect()
    };
    let valid = if n_epochs > 1 {
        cases(&cands.valid_users)?
    } else {
        Vec::new()
    };
    Ok(Cases {
        train: cases(&cands.train_users[..n_train])?,
        test: cases(&cands.test_users)?,
        valid,
    })
}

/// The checkpoint at `path` if this run may resume from it: an error when it holds another
/// run (format, config, or inputs differ), `None` when there is none or when it holds failed
/// calls worth asking again. Resuming those would keep the users' failed outcomes (and an
/// epoch trained without their feedback) for good; a fresh start asks those calls again, and
/// with recordings every answered call replays for free.
fn resumable(path: &Path, fresh: &Checkpoint) -> Result<Option<Checkpoint>, AgpError> {
    let Some(old) = load_checkpoint(path)? else {
        return Ok(None);
    };
    let differs = if old.version != CHECKPOINT_VERSION {
        Some("checkpoint format version")
    } else if old.label != fresh.label || old.config != fresh.config {
        Some("method config")
    } else if old.inputs != fresh.inputs {
        Some("model, sampling, seed or candidate file")
    } else {
        None
    };
    if let Some(what) = differs {
        return Err(AgpError::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "holds a run of {} with a different {what}; use another log_dir or remove it",
                old.label
            ),
        });
    }
    let transient: Vec<String> = old
        .failures
        .iter()
        .filter(|(reason, _)| reason.is_transient())
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    if transient.is_empty() {
        return Ok(Some(old));
    }
    // Calls deferred to a batch are the expected state between `--batch` rounds, not a
    // failure: the next round replays what the batch answered.
    if old
        .failures
        .keys()
        .filter(|r| r.is_transient())
        .all(|r| *r == FailureReason::Deferred)
    {
        return Ok(None);
    }
    eprintln!(
        "{}: holds failed calls worth asking again ({}); starting over from epoch 1",
        path.display(),
        transient.join(", ")
    );
    Ok(None)
}

/// The reported epochs: the last, the best on test users, and the best on validation users
/// (the only epoch when there is one; `None` without validation users). The first epoch wins
/// ties, so a flat curve reports its earliest epoch.
struct Selected {
    last: SelectedEpoch,
    best_test: SelectedEpoch,
    best_valid: Option<SelectedEpoch>,
    valid_lcb: Option<SelectedEpoch>,
}

/// One-sided 95% Student-t quantiles t(0.95, df) for df = 1..=30; past 30 the normal 1.645.
const T95: [f64; 30] = [
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
    1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
    1.703, 1.701, 1.699, 1.697,
];

/// One-sided 95% lower confidence bound of the mean of `xs`: mean − t(0.95, n − 1)·sd/√n with
/// the sample standard deviation. A t bound rather than a bootstrap percentile: it needs no
/// resampling seed and is the same number wherever it is recomputed. One value (or none) has no
/// spread to bound, so its bound is its mean (0 for none).
pub fn lower_confidence_bound(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return mean;
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T95.get(n - 2).copied().unwrap_or(1.645);
    mean - t * var.sqrt() / (n as f64).sqrt()
}

fn select_epochs(done: &[EpochRecord], has_valid: bool, lcb: bool) -> Selected {
    let select = |selection: Selection, idx: usize| {
        let rec = &done[idx];
        SelectedEpoch {
            selection,
            epoch: rec.metrics.epoch,
            test: rec.metrics.test.clone(),
            valid: rec.metrics.valid.clone(),
            users: rec.test.clone(),
        }
    };
    let argmax = |f: &dyn Fn(&EpochRecord) -> f64| {
        (0..done.len()).fold(0, |best, i| {
            if f(&done[i]) > f(&done[best]) {
                i
            } else {
                best
            }
        })
    };
    let last = select(Selection::Last, done.len() - 1);
    let best_test = select(Selection::BestTest, argmax(&|e| e.metrics.test.ndcg10));
    let best_valid = if done.len() == 1 {
        Some(select(Selection::BestValid, 0))
    } else {
        has_valid.then(|| {
            select(
                Selection::BestValid,
                argmax(&|e| e.metrics.valid.as_ref().map_or(0.0, |v| v.ndcg10)),
            )
        })
    };
    let valid_lcb = (lcb && has_valid && done.len() > 1).then(|| {
        let ndcgs = |e: &EpochRecord| e.valid.iter().map(|u| u.ndcg).collect::<Vec<_>>();
        select(
            Selection::ValidLcb,
            argmax(&|e| lower_confidence_bound(&ndcgs(e))),
        )
    });
    Selected {
        last,
        best_test,
        best_valid,
        valid_lcb,
    }
}

/// The test users' metrics in the backbone's own order: what every method is measured against.
fn backbone_order(test_cases: &[UserCase]) -> MeanMetrics {
    let results: Vec<UserResult> = test_cases
        .iter()
        .map(|c| {
            let k = c.input.candidates.len();
            let order: Vec<usize> = (0..k).collect();
            score_ordering(
                c.input.user,
                &order,
                c.gt_index,
                k,
                ParseOutcome::Backbone,
                UnparseableRule::Zero,
            )
        })
        .collect();
    MeanMetrics::of(&results)
}

/// The training users of `epoch` in an order drawn from the run's seed and the epoch: a resumed
/// run draws the same order, so it picks up at the same batch.
fn shuffled(cases: &[UserCase], seed: u64, epoch: usize) -> Vec<UserCase> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let key = seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
    let mut out = cases.to_vec();
    out.shuffle(&mut rng);
    out
}

/// Run any [`Reranker`] under the protocol: training users in batches (the same batches every
/// epoch unless [`Reranker::shuffle_train_users`]), test users (and validation users, with
/// several epochs) evaluated after every epoch.
pub async fn run_reranker(
    r: &mut dyn Reranker,
    label: &str,
    config: serde_json::Value,
    ds: &Dataset,
    cands: &CandidateFile,
    model: Arc<dyn ChatModel>,
    opts: &RunOptions,
) -> Result<MethodRun, AgpError> {
    check_inputs(ds, cands)?;
    if opts.jobs == 0 {
        return Err(AgpError::config("jobs", "1..", 0));
    }
    let n_train = r.n_train_users();
    let n_epochs = r.epochs();
    let Cases {
        train: train_cases,
        test: test_cases,
        valid: valid_cases,
    } = protocol_cases(ds, cands, n_train, n_epochs)?;
    let eval_cases: Vec<UserCase> = test_cases.iter().chain(&valid_cases).cloned().collect();
    let batch_size = r.batch_size().max(1);
    let shuffle = r.shuffle_train_users();
    let n_batches = if n_epochs > 0 {
        train_cases.len().div_ceil(batch_size)
    } else {
        0
    };

    let llm = Llm {
        on_failure: opts.on_failure,
        calls: Arc::new(RunCalls::new(opts.ledger.scope())),
        ..Llm::new(model.clone(), opts.sampling.clone())
    };
    let ck_path = opts.log_dir.as_ref().map(|d| d.join("checkpoint.json"));
    if let Some(d) = &opts.log_dir {
        std::fs::create_dir_all(d).map_err(|e| AgpError::io(d, e))?;
    }
    let mut ck = Checkpoint {
        version: CHECKPOINT_VERSION,
        label: label.to_string(),
        config: config.clone(),
        inputs: serde_json::json!({
            "model": model.info(),
            "sampling": opts.sampling,
            "seed": opts.seed,
            "dataset_checksum": cands.dataset_checksum,
            "backbone": cands.model,
            "backbone_seed": cands.seed,
            "k": cands.k,
            "test_users": cands.test_users,
            "train_users": cands.train_users,
            "valid_users": cands.valid_users,
            "scoring": opts.scoring,
        }),
        epoch: 1,
        batches_done: 0,
        epoch_train: Vec::new(),
        epoch_accepted: 0,
        epoch_discarded: 0,
        done: Vec::new(),
        calls: BTreeMap::new(),
        failures: BTreeMap::new(),
        parse_counts: BTreeMap::new(),
        reranker: serde_json::Value::Null,
        log_len: 0,
    };
    if let Some(path) = &ck_path
        && let Some(old) = resumable(path, &ck)?
    {
        r.restore(old.reranker.clone())?;
        llm.calls.restore(old.calls.clone());
        llm.calls.restore_failures(old.failures.clone());
        ck = old;
    }
    let log = match &opts.log_dir {
        Some(d) => Some(Arc::new(EventLog::open(
            &d.join("events.jsonl"),
            ck.log_len,
        )?)),
        None => None,
    };
    let env = Env {
        llm: llm.clone(),
        jobs: opts.jobs,
        seed: opts.seed,
        log: log.clone(),
    };
    let save = |ck: &mut Checkpoint, r: &dyn Reranker| -> Result<(), AgpError> {
        let Some(path) = &ck_path else { return Ok(()) };
        ck.reranker = r.state();
        ck.calls = llm.calls.snapshot();
        ck.failures = llm.calls.failures();
        ck.log_len = match &log {
            Some(l) => l.len()?,
            None => 0,
        };
        save_checkpoint(path, ck)
    };

    let eval_epochs = n_epochs.max(1);
    let total_steps = eval_epochs * n_batches;
    while ck.epoch <= eval_epochs {
        let epoch = ck.epoch;
        let epoch_cases = if shuffle {
            shuffled(&train_cases, opts.seed, epoch)
        } else {
            train_cases.clone()
        };
        let batches: Vec<&[UserCase]> = if n_epochs > 0 {
            epoch_cases.chunks(batch_size).collect()
        } else {
            Vec::new()
        };
        if ck.batches_done < batches.len() {
            let pb = bar(
                opts.progress,
                batches.len(),
                format!("{label} train epoch {epoch}/{n_epochs}"),
            );
            pb.set_position(ck.batches_done as u64);
            for (b, batch) in batches.iter().enumerate().skip(ck.batches_done) {
                let step = TrainStep {
                    epoch,
                    batch: b,
                    step: (epoch - 1) * batches.len() + b,
                    total_steps,
                };
                let out = r.train_batch(step, batch, &env).await?;
                count(&mut ck.parse_counts, &out.results);
                ck.epoch_train.extend(out.results);
                ck.epoch_accepted += out.accepted;
                ck.epoch_discarded += out.discarded;
                ck.batches_done = b + 1;
                save(&mut ck, r)?;
                pb.inc(1);
            }
            pb.finish_and_clear();
        }
        let pb = bar(
            opts.progress,
            test_cases.len() + valid_cases.len(),
            format!("{label} evaluate epoch {epoch}/{eval_epochs}"),
        );
        // Test and validation users share one queue so the concurrency limit stays busy.
        let mut test = evaluate(r, &eval_cases, &env, &pb, opts.scoring).await?;
        let valid = test.split_off(test_cases.len());
        pb.finish_and_clear();
        count(&mut ck.parse_counts, &test);
        count(&mut ck.parse_counts, &valid);
        let metrics = EpochMetrics {
            epoch,
            train: (!ck.epoch_train.is_empty()).then(|| MeanMetrics::of(&ck.epoch_train)),
            test: MeanMetrics::of(&test),
            valid: (!valid.is_empty()).then(|| MeanMetrics::of(&valid)),
            accepted_edits: ck.epoch_accepted,
            discarded_edits: ck.epoch_discarded,
        };
        env.log_event(&EpochEvent {
            event: "epoch",
            metrics: &metrics,
            prompt: r.learned_prompt().as_deref(),
        })?;
        ck.done.push(EpochRecord {
            metrics,
            test,
            valid,
        });
        ck.epoch += 1;
        ck.batches_done = 0;
        ck.epoch_train.clear();
        ck.epoch_accepted = 0;
        ck.epoch_discarded = 0;
        save(&mut ck, r)?;
    }

    let Selected {
        last,
        best_test,
        best_valid,
        valid_lcb,
    } = select_epochs(
        &ck.done,
        !valid_cases.is_empty(),
        r.selection() == Selection::ValidLcb,
    );
    let calls = llm.calls.snapshot();
    Ok(MethodRun {
        label: label.to_string(),
        config,
        model: model.info(),
        k: cands.k,
        n_train_users: n_train,
        n_test_users: test_cases.len(),
        n_valid_users: valid_cases.len(),
        epochs: ck.done.iter().map(|e| e.metrics.clone()).collect(),
        last,
        best_test,
        best_valid,
        valid_lcb,
        total_calls: calls.values().map(|t| t.calls).sum(),
        prompt_tokens: calls.values().map(|t| t.prompt_tokens).sum(),
        completion_tokens: calls.values().map(|t| t.completion_tokens).sum(),
        calls,
        eq7_calls_per_epoch: None,
        counted_calls_per_epoch: None,
        backbone: backbone_order(&test_cases),
        random_order_ndcg: random_order_ndcg(cands.k),
        parse_counts: ck.parse_counts.clone(),
        failures: llm.calls.failures(),
        final_prompt: r.learned_prompt(),
        scoring: opts.scoring,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An epoch whose validation users have these NDCGs (ranks are not read by the selection).
    fn epoch(n: usize, valid: &[f64], test: f64) -> EpochRecord {
        let users = |xs: &[f64]| -> Vec<UserResult> {
            xs.iter()
                .enumerate()
                .map(|(i, &ndcg)| UserResult {
                    user: i as u32,
                    rank: 1,
                    ndcg,
                    parse: ParseOutcome::Exact,
                    failure: None,
                    other_rule: None,
                    first_shown: None,
                })
                .collect()
        };
        let (valid, test) = (users(valid), users(&[test]));
        EpochRecord {
            metrics: EpochMetrics {
                epoch: n,
                train: None,
                test: MeanMetrics::of(&test),
                valid: Some(MeanMetrics::of(&valid)),
                accepted_edits: 0,
                discarded_edits: 0,
            },
            test,
            valid,
        }
    }

    #[test]
    fn the_lower_bound_is_the_one_sided_t_bound() {
        // n = 4: mean − t(0.95, 3) · sd / √4.
        let xs = [0.4, 0.5, 0.6, 0.5];
        let mean = xs.iter().sum::<f64>() / 4.0;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!((lower_confidence_bound(&xs) - (mean - 2.353 * sd / 2.0)).abs() < 1e-12);
        assert_eq!(lower_confidence_bound(&[0.7]), 0.7);
        assert_eq!(lower_confidence_bound(&[]), 0.0);
        // Past 31 values the normal quantile.
        let many: Vec<f64> = (0..40).map(|i| (i % 2) as f64).collect();
        let sd = (many.iter().map(|x| (x - 0.5f64).powi(2)).sum::<f64>() / 39.0).sqrt();
        assert!((lower_confidence_bound(&many) - (0.5 - 1.645 * sd / 40f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn valid_lcb_prefers_the_epoch_good_on_every_user_to_the_lucky_one() {
        // Epoch 2 has the best validation mean from two users; epoch 3 is a little lower on
        // all eight.
        let done = [
            epoch(1, &[0.1; 8], 0.1),
            epoch(2, &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0], 0.2),
            epoch(3, &[0.45, 0.5, 0.45, 0.5, 0.45, 0.5, 0.45, 0.5], 0.3),
        ];
        let s = select_epochs(&done, true, true);
        assert_eq!(s.best_valid.as_ref().unwrap().epoch, 2);
        let lcb = s.valid_lcb.expect("asked for");
        assert_eq!((lcb.epoch, lcb.selection), (3, Selection::ValidLcb));
        assert_eq!(lcb.test.ndcg10, 0.3);
        // Not asked for, or nothing to choose from: none.
        assert!(select_epochs(&done, true, false).valid_lcb.is_none());
        assert!(select_epochs(&done[..1], true, true).valid_lcb.is_none());
        assert!(select_epochs(&done, false, true).valid_lcb.is_none());
        // Equal bounds: the first epoch wins, as for the other rules.
        let flat = [epoch(1, &[0.5; 4], 0.1), epoch(2, &[0.5; 4], 0.2)];
        assert_eq!(select_epochs(&flat, true, true).valid_lcb.unwrap().epoch, 1);
    }

    #[test]
    fn selection_names_parse_and_all_stays_the_three_reported() {
        assert_eq!(
            "valid-lcb".parse::<Selection>().unwrap(),
            Selection::ValidLcb
        );
        assert_eq!(Selection::ALL.len(), 3);
        assert_eq!(Selection::default(), Selection::BestValid);
        let json = serde_json::to_string(&Selection::ValidLcb).unwrap();
        assert_eq!(json, "\"valid-lcb\"");
        assert!(
            "lcb"
                .parse::<Selection>()
                .unwrap_err()
                .to_string()
                .contains("valid-lcb")
        );
    }

    #[test]
    fn checkpoint_without_failures_keeps_the_older_format() {
        let ck = Checkpoint {
            version: CHECKPOINT_VERSION,
            label: "L".into(),
            config: serde_json::Value::Null,
            inputs: serde_json::Value::Null,
            epoch: 1,
            batches_done: 0,
            epoch_train: vec![score_ordering(
                1,
                &[0],
                0,
                10,
                ParseOutcome::Exact,
                UnparseableRule::Zero,
            )],
            epoch_accepted: 0,
            epoch_discarded: 0,
            done: Vec::new(),
            calls: BTreeMap::from([(Stage::Test, StageTally::default())]),
            failures: BTreeMap::new(),
            parse_counts: BTreeMap::new(),
            reranker: serde_json::Value::Null,
            log_len: 0,
        };
        let text = serde_json::to_string(&ck).unwrap();
        for key in ["failures", "failed", "failure", "truncated"] {
            assert!(!text.contains(key), "{key} in {text}");
        }
        let back: Checkpoint = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ck);
    }
}
