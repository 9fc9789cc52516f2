//! Method configurations: one serde enum, tag `kind`, so an experiment is a TOML table such as
//!
//! ```toml
//! label = "AGP b10"
//! kind = "agp"
//! epochs = 10
//! batch_size = 10
//! pbf = false
//! ```
//!
//! Every field has the paper's value as default; the reference code's deviations are named
//! options. [`MethodConfig::validate`] names the offending field and its allowed range.

use agp_datasets::candidates::CandidateFile;
use serde::{Deserialize, Serialize};

use crate::Stage;
use crate::budget::{Budget, check_budget};
use crate::error::AgpError;
use crate::metrics::UnparseableRule;
use crate::parse::{DuplicatePolicy, MissingPolicy, ParseOptions, UnmarkedAnswers};
use crate::prompts::OutputConstraint;
use crate::run::Selection;

/// Options added after recordings and checkpoints were made stay out of a config's echo while
/// at their default, so the echo of a config that does not set them is what it always was and
/// a checkpoint written before they existed still resumes.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_true(v: &bool) -> bool {
    *v
}

/// What one stage of a method asks the provider for in place of the run's decoding. A `None`
/// field takes the run's value (greedy with seed 0 unless the experiment says otherwise: see
/// `agp_llm::Sampling::DECLARED`), so a stage at [`Decoding::PROVIDER_DEFAULT`] sends exactly
/// what every other call of the run sends. In TOML a table such as
/// `proposal_decoding = { temperature = 1.0 }`; `{}` is the run's decoding. An experiment's
/// `decoding = { temperature = 0.0, top_p = 1.0, seed = 0 }` is the run's.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Decoding {
    /// 0.0..=2.0, the range every OpenAI-compatible API accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0.0 (exclusive)..=1.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// The provider's sampling seed (OpenAI's `seed`, llama.cpp's sampler seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Decoding {
    /// Nothing of its own: the run's decoding.
    pub const PROVIDER_DEFAULT: Decoding = Decoding {
        temperature: None,
        top_p: None,
        seed: None,
    };

    /// A temperature and nothing else.
    pub const fn temperature(t: f32) -> Self {
        Self {
            temperature: Some(t),
            top_p: None,
            seed: None,
        }
    }

    pub fn is_provider_default(&self) -> bool {
        *self == Self::PROVIDER_DEFAULT
    }

    /// Check both fields; `fields` names them in the error (`"<stage>_decoding.temperature"`,
    /// `"<stage>_decoding.top_p"`), since the struct is shared by every stage.
    pub fn validate(&self, fields: (&'static str, &'static str)) -> Result<(), AgpError> {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(AgpError::config(fields.0, "0.0..=2.0", t));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(AgpError::config(fields.1, "0.0 (exclusive)..=1.0", p));
        }
        Ok(())
    }

    /// How a report names it: `temperature 1, top_p 0.9`, or `provider default`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.temperature {
            parts.push(format!("temperature {t}"));
        }
        if let Some(p) = self.top_p {
            parts.push(format!("top_p {p}"));
        }
        if let Some(s) = self.seed {
            parts.push(format!("seed {s}"));
        }
        if parts.is_empty() {
            "the run's decoding".into()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// The backbone's own order.
    Base(BaseConfig),
    /// Listwise rerank straight from the last L history item texts (§7.6 `rerank_directly_prompt`).
    LlmDir(ListwiseConfig),
    /// Listwise chain-of-thought rerank from the history (§7.6 `rerank_by_cot_prompt`).
    LlmCot(ListwiseConfig),
    /// AGP: learned profile prompt, profile → listwise rerank.
    Agp(AgpConfig),
    /// Direct rerank-prompt optimization (the reference code's `generate_user_profile=0`, `cot=0`):
    /// the same training loop, but it edits the rerank instruction and there is no profile.
    RerankOpt(AgpConfig),
    /// LLM-Dir with pointwise yes/no scoring of each candidate instead of a list.
    LlmDirPointwise(PointwiseConfig),
    /// AGP whose rerank step scores each candidate pointwise against the profile.
    AgpPointwise(AgpConfig),
    /// RankGPT (Sun et al. 2023): listwise permutations of a window that slides from the back of
    /// the list to the front.
    #[serde(rename = "rankgpt")]
    RankGpt(RankGptConfig),
    /// PRP (Qin et al. 2023), all pairs: every pair asked in both orders, ranked by wins.
    PrpAllpair(PrpConfig),
    /// PRP (Qin et al. 2023), sorting: heapsort whose comparisons are pairs asked in both orders.
    PrpSort(PrpConfig),
    /// Setwise (Zhuang et al. 2024): heapsort whose every step asks for the best of a node and
    /// its children.
    Setwise(SetwiseConfig),
    /// FIRST (Reddy et al. 2024): one listwise prompt, ranked by the first answer token's
    /// log-probability of each candidate id.
    First(FirstConfig),
    /// OPRO (Yang et al. 2023) on AGP's training loop: the LLM proposes a new `p_gen` from the
    /// best prompts so far and their scores.
    Opro(OproConfig),
    /// ProTeGi (Pryzant et al. 2023) on AGP's training loop: textual gradients from the users a
    /// prompt misses, edits that follow them, and a beam kept by score.
    Protegi(ProtegiConfig),
    /// Random search (the control of the optimizers) on AGP's training loop: a random edit of
    /// `p_gen` each batch, kept if it scores better on the batch.
    RandomSearch(RandomSearchConfig),
}

/// Base has no settings. Keys other than `label` are accepted and ignored, so settings merged
/// into every method of an experiment (e.g. `history_length`) do not break it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BaseConfig {
    pub label: Option<String>,
}

/// Settings of the listwise baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListwiseConfig {
    /// Row label in reports; default `LLM-Dir` / `LLM-CoT`.
    pub label: Option<String>,
    /// History items shown (the last L before the test item).
    pub history_length: usize,
    /// Fraction of shown history items replaced by `[MASK]` (reference `hist_seq_mask`), seeded.
    pub hist_mask: f64,
    pub missing_ids: MissingPolicy,
    /// Repeated ids: `dedup` (default) or `keep-as-reference` (see [`DuplicatePolicy`]).
    #[serde(skip_serializing_if = "is_default")]
    pub duplicate_ids: DuplicatePolicy,
    /// Answers without a marked list: `first-list` (default), `require-markers` or
    /// `skip-enumerations` (see [`UnmarkedAnswers`]).
    #[serde(skip_serializing_if = "is_default")]
    pub unmarked_answers: UnmarkedAnswers,
    pub unparseable: UnparseableRule,
    /// LLM-Dir's output-format sentence: `agp` (default) or `reference` (see
    /// [`OutputConstraint`]). LLM-CoT's prompt carries the reference's sentence whatever this
    /// says.
    #[serde(skip_serializing_if = "is_default")]
    pub output_constraint: OutputConstraint,
}

impl Default for ListwiseConfig {
    fn default() -> Self {
        Self {
            label: None,
            history_length: 5,
            hist_mask: 0.0,
            missing_ids: MissingPolicy::Reference,
            duplicate_ids: DuplicatePolicy::Dedup,
            unmarked_answers: UnmarkedAnswers::FirstList,
            unparseable: UnparseableRule::Zero,
            output_constraint: OutputConstraint::Agp,
        }
    }
}

impl ListwiseConfig {
    /// The reference code's behaviour where it is known to differ: repeated ids keep their
    /// place, and LLM-Dir's prompt uses the reference's output constraint.
    pub fn reference_code() -> Self {
        Self {
            duplicate_ids: DuplicatePolicy::KeepAsReference,
            output_constraint: OutputConstraint::Reference,
            ..Self::default()
        }
    }

    /// The parser's options.
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            missing_ids: self.missing_ids,
            duplicate_ids: self.duplicate_ids,
            unmarked_answers: self.unmarked_answers,
        }
    }
}

/// Settings of LLM-Dir pointwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PointwiseConfig {
    pub label: Option<String>,
    pub history_length: usize,
    pub hist_mask: f64,
}

impl Default for PointwiseConfig {
    fn default() -> Self {
        Self {
            label: None,
            history_length: 5,
            hist_mask: 0.0,
        }
    }
}

/// Settings of RankGPT's sliding-window rerank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankGptConfig {
    /// Row label in reports; default e.g. `RankGPT (w20/s10)`.
    pub label: Option<String>,
    pub history_length: usize,
    pub hist_mask: f64,
    /// Candidates per call, 2..=100; a window of K or more ranks the whole list in one call.
    pub window: usize,
    /// How far the window moves towards the front after each call, 1..window. The `step`
    /// best items of a window travel on with it, so the top `step` come out sorted.
    pub step: usize,
}

impl Default for RankGptConfig {
    /// RankGPT's published window 20 / step 10. A window wider than the list is clamped to it
    /// ([`crate::methods::rankers::rankgpt_windows`]), so at K = 10 this is one call over the
    /// whole list; `window = 4, step = 2` is the sliding variant this crate ran first.
    fn default() -> Self {
        Self {
            label: None,
            history_length: 5,
            hist_mask: 0.0,
            window: RANKGPT_WINDOW,
            step: RANKGPT_STEP,
        }
    }
}

/// RankGPT's published window and step (sunnweiwei/RankGPT `sliding_windows`).
pub const RANKGPT_WINDOW: usize = 20;
pub const RANKGPT_STEP: usize = 10;

/// How PRP-sort settles a comparison whose two orders disagree, or whose answers cannot be
/// read: no preference either way, so one of the two must stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrpTies {
    /// As ielab/llm-rankers' `heapify`: a child replaces the heap node (or the better sibling)
    /// only when it wins in both orders, so the node stays. Under a position-biased model the
    /// result is whatever the heap's swaps made of the list, not the backbone's order.
    #[default]
    Parent,
    /// The one of the two earlier in the backbone's list wins: consistent comparisons, and a
    /// model with no preference leaves the backbone's order (what this crate did first).
    Backbone,
}

/// Settings of PRP (both the all-pairs and the sorting variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrpConfig {
    /// Row label in reports; default `PRP-allpair` / `PRP-sort`.
    pub label: Option<String>,
    pub history_length: usize,
    pub hist_mask: f64,
    /// PRP-sort's rule for a pair with no preference: `parent` (default, llm-rankers) or
    /// `backbone`. PRP-allpair scores such a pair half a win each whatever this says.
    #[serde(skip_serializing_if = "is_default")]
    pub ties: PrpTies,
}

impl Default for PrpConfig {
    fn default() -> Self {
        Self {
            label: None,
            history_length: 5,
            hist_mask: 0.0,
            ties: PrpTies::Parent,
        }
    }
}

/// Settings of Setwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SetwiseConfig {
    /// Row label in reports; default e.g. `Setwise (c3)`.
    pub label: Option<String>,
    pub history_length: usize,
    pub hist_mask: f64,
    /// Children per heap node, 1..=K-1: each call shows a node and up to this many children.
    pub num_child: usize,
}

impl Default for SetwiseConfig {
    /// Setwise's default of 3 children (4 items per prompt).
    fn default() -> Self {
        Self {
            label: None,
            history_length: 5,
            hist_mask: 0.0,
            num_child: 3,
        }
    }
}

/// Settings of FIRST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirstConfig {
    /// Row label in reports; default `FIRST`.
    pub label: Option<String>,
    pub history_length: usize,
    pub hist_mask: f64,
    /// What the answer is made to start with, the ids read as the token after it: `[` as
    /// rank_llm sends (its prompt then asks for the ranking in square brackets), or `""`,
    /// nothing, the request this crate sent first.
    pub prefill: String,
}

/// rank_llm's FIRST prefill.
pub const FIRST_PREFILL: &str = "[";

impl Default for FirstConfig {
    fn default() -> Self {
        Self {
            label: None,
            history_length: 5,
            hist_mask: 0.0,
            prefill: FIRST_PREFILL.into(),
        }
    }
}

/// LLM requests one evaluated user costs, as the run's ledger counts them (a pointwise request
/// of K candidates counts K). `min == max` where the count does not depend on the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallsPerUser {
    pub min: u64,
    pub max: u64,
}

impl CallsPerUser {
    fn exactly(n: u64) -> Self {
        Self { min: n, max: n }
    }

    /// The count, when the answers cannot change it.
    pub fn exact(&self) -> Option<u64> {
        (self.min == self.max).then_some(self.min)
    }
}

/// What the per-user feedback prompt shows under "[Current User Generation Prompt]".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackPromptSource {
    /// The prompt being optimized (`p_gen`), as the paper intends.
    #[default]
    PGen,
    /// The rendered rerank prompt of that user, as the reference code passes.
    RerankPrompt,
}

/// Order of the candidate list shown to the per-user feedback prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackListOrder {
    /// The LLM's reranked order, as the section title "[Current Reranked Item Profile List]" says.
    #[default]
    Reranked,
    /// The backbone order, as the reference code passes.
    Backbone,
}

/// How the edited prompt is taken from the Edit answer (Eq. 6).
///
/// The default, [`EditExtraction::BothMarkers`], is what every committed run used: a prompt
/// counts as delimited only when the model closed it, so an answer cut off before
/// `|endoftext|` is used whole (trimmed), as any answer without the markers is. The reference
/// code splits on `|beginoftext|` and then on `|endoftext|` if there is one
/// ([`EditExtraction::AfterBos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditExtraction {
    /// The text between `|beginoftext|` and the next `|endoftext|`, trimmed; without both, the
    /// whole answer, trimmed.
    #[default]
    BothMarkers,
    /// As the reference code (`split(BOS, 1)[1].split(EOS, 1)[0].strip()`): the text after
    /// `|beginoftext|`, up to `|endoftext|` if there is one, trimmed; without `|beginoftext|`
    /// (the reference's `except` branch), the whole answer as it came, untrimmed.
    AfterBos,
}

/// Settings of the prompt-optimizing methods (AGP, its pointwise variant, rerank-opt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgpConfig {
    /// Row label in reports; default e.g. `AGP-T100`.
    pub label: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub history_length: usize,
    /// Training users taken, in file order, from the candidate file's `train_users`; `None`
    /// takes them all (the paper's protocol files hold 100: "T100").
    pub n_train_users: Option<usize>,
    /// Optimize/verify attempts per batch; an edit is kept only if the same batch's mean
    /// ground-truth rank strictly improves.
    pub verify_steps: usize,
    /// Position-based feedback: the feedback prompt states the ground truth's actual and target
    /// position, and the edit prompt gets "Update Strength" = the batch's mean ground-truth rank.
    pub pbf: bool,
    /// Batch summarization (Eq. 5); off feeds the per-user feedback list to the edit directly.
    pub summarize: bool,
    pub hist_mask: f64,
    /// Initial prompt; `None` is the route's reference start (empty `p_gen`, or the reference
    /// rerank instruction for rerank-opt).
    pub initial_prompt: Option<String>,
    pub feedback_prompt_source: FeedbackPromptSource,
    pub feedback_list_order: FeedbackListOrder,
    /// Quirk: leave the position statement out of the feedback prompt even with PBF on, as the
    /// reference code does (it only adds Update Strength).
    pub reference_feedback_text: bool,
    /// With PBF on, give the edit prompt "Update Strength" (the batch's mean ground-truth rank).
    /// Off with PBF on is the Fig. 3 ablation of Update Strength alone; `reference_feedback_text`
    /// is the ablation of the position text alone (the reference code's `use_distance = 0` turns
    /// off Update Strength only).
    #[serde(skip_serializing_if = "is_true")]
    pub update_strength: bool,
    /// How the edited prompt is taken from the Edit answer: `both_markers` (default) or
    /// `after_bos` (see [`EditExtraction`]).
    #[serde(skip_serializing_if = "is_default")]
    pub edit_extraction: EditExtraction,
    pub missing_ids: MissingPolicy,
    /// Repeated ids in rerank answers: `dedup` (default) or `keep-as-reference`.
    #[serde(skip_serializing_if = "is_default")]
    pub duplicate_ids: DuplicatePolicy,
    /// Rerank answers without a marked list: `first-list` (default), `require-markers` or
    /// `skip-enumerations`.
    #[serde(skip_serializing_if = "is_default")]
    pub unmarked_answers: UnmarkedAnswers,
    pub unparseable: UnparseableRule,
    /// Training-call budget (see [`OproConfig::max_training_calls`]); `None`, the default, trains
    /// every batch of every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_training_calls: Option<u64>,
    /// Training budget in answered calls or tokens (see [`Budget`]); `max_training_calls = N`
    /// is its alias `budget = { calls = N }`. Setting both is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Shuffle the training users every epoch, seeded by the run's seed and the epoch, so that
    /// a seed changes a learned method's run (with the users in file order and greedy decoding
    /// two seeds repeat each other answer for answer). Off keeps the reference code's order.
    #[serde(skip_serializing_if = "is_default")]
    pub shuffle_train_users: bool,
    /// `valid-lcb` also chooses an epoch by the lower confidence bound of its validation
    /// NDCG@10 (see [`Selection::ValidLcb`]); `best-valid` (default) does not.
    #[serde(skip_serializing_if = "is_default")]
    pub select: Selection,
}

impl Default for AgpConfig {
    fn default() -> Self {
        Self {
            label: None,
            epochs: 10,
            batch_size: 10,
            history_length: 5,
            n_train_users: None,
            verify_steps: 1,
            pbf: true,
            summarize: true,
            hist_mask: 0.0,
            initial_prompt: None,
            feedback_prompt_source: FeedbackPromptSource::PGen,
            feedback_list_order: FeedbackListOrder::Reranked,
            reference_feedback_text: false,
            update_strength: true,
            edit_extraction: EditExtraction::BothMarkers,
            missing_ids: MissingPolicy::Reference,
            duplicate_ids: DuplicatePolicy::Dedup,
            unmarked_answers: UnmarkedAnswers::FirstList,
            unparseable: UnparseableRule::Zero,
            max_training_calls: None,
            budget: None,
            shuffle_train_users: false,
            select: Selection::BestValid,
        }
    }
}

impl AgpConfig {
    /// The reference code's behaviour where it deviates from the paper's description or from
    /// this crate's defaults: the feedback quirks, repeated ids keeping their place, and the
    /// edit taken after `|beginoftext|`. `unmarked_answers` stays `first-list`, the closest
    /// reading of the reference's missing `find_first_list`; `missing_ids` and `unparseable`
    /// are already the reference's at their defaults (the DeepSeek rule is per model).
    pub fn reference_code() -> Self {
        Self {
            feedback_prompt_source: FeedbackPromptSource::RerankPrompt,
            feedback_list_order: FeedbackListOrder::Backbone,
            reference_feedback_text: true,
            edit_extraction: EditExtraction::AfterBos,
            duplicate_ids: DuplicatePolicy::KeepAsReference,
            ..Self::default()
        }
    }

    /// The parser's options for rerank answers.
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            missing_ids: self.missing_ids,
            duplicate_ids: self.duplicate_ids,
            unmarked_answers: self.unmarked_answers,
        }
    }

    /// Training users this config uses with `cands`.
    pub fn train_users(&self, cands: &CandidateFile) -> usize {
        self.n_train_users.unwrap_or(cands.train_users.len())
    }

    /// The training loop's settings.
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            history_length: self.history_length,
            hist_mask: self.hist_mask,
            parse: self.parse_options(),
            unparseable: self.unparseable,
            max_training_calls: self.max_training_calls,
            budget: self.budget,
            shuffle_train_users: self.shuffle_train_users,
            select: self.select,
        }
    }
}

/// Settings of OPRO (Yang et al. 2023, "Large Language Models as Optimizers") as a baseline
/// optimizer of AGP's `p_gen`: the training loop is AGP's (training users, batches, epochs,
/// validation selection, checkpoints) and so are profile and rerank (Eqs. 2–3); only the way a
/// new prompt is found differs. Each batch the current prompt is scored (mean NDCG@10 of the
/// batch's users), the LLM is shown the best scored prompts so far in ascending order of score
/// and a few of the batch's users (history and the item they chose next, never where it
/// landed), and asked for a better prompt; a proposal that scores strictly higher on the same
/// users replaces the current prompt. Training calls per epoch: [`crate::opro_train_calls`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OproConfig {
    /// Row label in reports; default e.g. `OPRO-T100`.
    pub label: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub history_length: usize,
    /// As [`AgpConfig::n_train_users`].
    pub n_train_users: Option<usize>,
    pub hist_mask: f64,
    /// Initial `p_gen`; `None` is AGP's (empty).
    pub initial_prompt: Option<String>,
    /// Proposals per batch, each from its own meta-prompt (1..=100); OPRO's default of 8. 1
    /// matches AGP's one edit per batch.
    pub n_candidates: usize,
    /// What each proposal call sends: OPRO samples its optimizer at temperature 1.0.
    pub proposal_decoding: Decoding,
    /// Send each proposal call a seed of its own (from the run seed, the batch and the
    /// proposal's index), so that proposals whose meta-prompts coincide are still distinct
    /// requests, sampled and recorded apart. Off sends no seed.
    pub seeded_proposals: bool,
    /// Scored prompts the meta-prompt shows, the best ones (1..=1000; OPRO: 20).
    pub history_size: usize,
    /// Example users per meta-prompt, drawn from the batch (0..=100; OPRO: 3).
    pub n_exemplars: usize,
    /// Training-call budget: once the run's answered training requests (every stage but
    /// `test`, as [`crate::MethodRun::training_calls`] counts them) reach it, the remaining
    /// training batches are skipped and the prompt stays; epochs are still evaluated. A batch
    /// that starts under the budget runs to its end, so training may pass the budget by at most
    /// one batch's calls. For a comparison at equal calls, run AGP first, take its
    /// `training_calls()`, set that here and give this method enough epochs to spend it
    /// (`⌈budget / opro_train_calls(...)⌉` or more). `None`, the default, trains every batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_training_calls: Option<u64>,
    /// Training budget in answered calls or tokens (see [`Budget`]); `max_training_calls = N`
    /// is its alias `budget = { calls = N }`. Setting both is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Shuffle the training users every epoch, seeded by the run's seed and the epoch, so that
    /// a seed changes a learned method's run (with the users in file order and greedy decoding
    /// two seeds repeat each other answer for answer). Off keeps the reference code's order.
    #[serde(skip_serializing_if = "is_default")]
    pub shuffle_train_users: bool,
    /// `valid-lcb` also chooses an epoch by the lower confidence bound of its validation
    /// NDCG@10 (see [`Selection::ValidLcb`]); `best-valid` (default) does not.
    #[serde(skip_serializing_if = "is_default")]
    pub select: Selection,
    pub missing_ids: MissingPolicy,
    pub duplicate_ids: DuplicatePolicy,
    pub unmarked_answers: UnmarkedAnswers,
    pub unparseable: UnparseableRule,
}

impl Default for OproConfig {
    fn default() -> Self {
        let agp = AgpConfig::default();
        Self {
            label: None,
            epochs: agp.epochs,
            batch_size: agp.batch_size,
            history_length: agp.history_length,
            n_train_users: None,
            hist_mask: 0.0,
            initial_prompt: None,
            n_candidates: OPRO_CANDIDATES,
            proposal_decoding: OPRO_DECODING,
            seeded_proposals: true,
            history_size: 20,
            n_exemplars: 3,
            max_training_calls: None,
            budget: None,
            shuffle_train_users: false,
            select: Selection::BestValid,
            missing_ids: agp.missing_ids,
            duplicate_ids: agp.duplicate_ids,
            unmarked_answers: agp.unmarked_answers,
            unparseable: agp.unparseable,
        }
    }
}

impl OproConfig {
    /// The cheaper variant this crate ran first: one proposal per batch (AGP's one edit),
    /// sent at the provider's default decoding with no seed.
    pub fn one_proposal() -> Self {
        Self {
            n_candidates: 1,
            proposal_decoding: Decoding::PROVIDER_DEFAULT,
            seeded_proposals: false,
            ..Self::default()
        }
    }
}

impl ProtegiConfig {
    /// The cheaper variant this crate ran first: a greedy beam of 1, one gradient per batch,
    /// no paraphrases, every call at the provider's default decoding (AGP's calls per batch).
    pub fn beam_one() -> Self {
        Self {
            beam_width: 1,
            n_gradients: 1,
            n_paraphrases: 0,
            gradient_decoding: Decoding::PROVIDER_DEFAULT,
            edit_decoding: Decoding::PROVIDER_DEFAULT,
            ..Self::default()
        }
    }
}

/// OPRO's published proposals per step and their decoding (google-deepmind/opro:
/// `num_generated_instructions_in_each_step = 8`, optimizer temperature 1.0).
pub const OPRO_CANDIDATES: usize = 8;
pub const OPRO_DECODING: Decoding = Decoding::temperature(1.0);
/// ProTeGi's released defaults (microsoft/LMOps `prompt_optimization`): beam 4, 4 gradients of 4
/// errors each, 2 Monte-Carlo paraphrases per step, every call at temperature 0.7.
pub const PROTEGI_BEAM: usize = 4;
pub const PROTEGI_GRADIENTS: usize = 4;
pub const PROTEGI_ERRORS_PER_GRADIENT: usize = 4;
pub const PROTEGI_PARAPHRASES: usize = 2;
pub const PROTEGI_DECODING: Decoding = Decoding::temperature(0.7);

/// Settings of ProTeGi (Pryzant et al. 2023, "Automatic Prompt Optimization with 'Gradient
/// Descent' and Beam Search") as a baseline optimizer of AGP's `p_gen`, on AGP's training loop
/// with AGP's profile and rerank (Eqs. 2–3). Each batch every beam prompt is scored; the users
/// it misses (ground truth not in the top `hit_at`), worst first, go in groups of
/// `errors_per_gradient` to a gradient prompt ("why did the prompt get these wrong?"), each
/// gradient to an edit prompt that writes `n_edits` new prompts, and the beam becomes the
/// `beam_width` best of the old beam and the new prompts by mean NDCG@10 on the batch.
///
/// ProTeGi's error signal is binary (a user is a hit or a miss), where AGP's feedback states the
/// ground truth's position. Departure from the paper: the beam is selected by scoring every
/// prompt on the batch, not by a bandit over random minibatches. Training calls per epoch:
/// [`crate::protegi_train_calls`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtegiConfig {
    /// Row label in reports; default e.g. `ProTeGi-T100`.
    pub label: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub history_length: usize,
    /// As [`AgpConfig::n_train_users`].
    pub n_train_users: Option<usize>,
    pub hist_mask: f64,
    /// Initial `p_gen`; `None` is AGP's (empty).
    pub initial_prompt: Option<String>,
    /// Prompts kept after each batch (1..=100); ProTeGi's 4. 1 is greedy and matches AGP's
    /// calls.
    pub beam_width: usize,
    /// Gradients per beam prompt and batch, each over its own group of failing users (1..=100);
    /// ProTeGi's released code asks 4. 1 matches AGP's calls.
    pub n_gradients: usize,
    /// Failing users shown per gradient, the worst first (1..=1000; 4 as in ProTeGi's code).
    pub errors_per_gradient: usize,
    /// New prompts asked of each edit call (1..=100; 1 as in ProTeGi's code).
    pub n_edits: usize,
    /// Monte-Carlo successors: paraphrases asked of every new prompt and of the prompt it came
    /// from, one call each (0..=100; ProTeGi's code `mc_samples_per_step` = 2, sampled in one
    /// call with `n = 2`, which not every API offers). Each is scored like an edit's prompt.
    pub n_paraphrases: usize,
    /// What each gradient call sends (ProTeGi's code samples every call at 0.7).
    pub gradient_decoding: Decoding,
    /// What each edit call sends, and each paraphrase call (both are the `edit` stage; each
    /// paraphrase also gets a seed of its own, so that the paraphrases of one prompt are
    /// distinct requests).
    pub edit_decoding: Decoding,
    /// A user counts as an error when the ground truth is not among the top `hit_at` of the
    /// rerank (1..=K−1).
    pub hit_at: usize,
    /// Training-call budget, as [`OproConfig::max_training_calls`] (with
    /// [`crate::protegi_train_calls`] for the epochs it takes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_training_calls: Option<u64>,
    /// Training budget in answered calls or tokens (see [`Budget`]); `max_training_calls = N`
    /// is its alias `budget = { calls = N }`. Setting both is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Shuffle the training users every epoch, seeded by the run's seed and the epoch, so that
    /// a seed changes a learned method's run (with the users in file order and greedy decoding
    /// two seeds repeat each other answer for answer). Off keeps the reference code's order.
    #[serde(skip_serializing_if = "is_default")]
    pub shuffle_train_users: bool,
    /// `valid-lcb` also chooses an epoch by the lower confidence bound of its validation
    /// NDCG@10 (see [`Selection::ValidLcb`]); `best-valid` (default) does not.
    #[serde(skip_serializing_if = "is_default")]
    pub select: Selection,
    pub missing_ids: MissingPolicy,
    pub duplicate_ids: DuplicatePolicy,
    pub unmarked_answers: UnmarkedAnswers,
    pub unparseable: UnparseableRule,
}

impl Default for ProtegiConfig {
    fn default() -> Self {
        let agp = AgpConfig::default();
        Self {
            label: None,
            epochs: agp.epochs,
            batch_size: agp.batch_size,
            history_length: agp.history_length,
            n_train_users: None,
            hist_mask: 0.0,
            initial_prompt: None,
            beam_width: PROTEGI_BEAM,
            n_gradients: PROTEGI_GRADIENTS,
            errors_per_gradient: PROTEGI_ERRORS_PER_GRADIENT,
            n_edits: 1,
            n_paraphrases: PROTEGI_PARAPHRASES,
            gradient_decoding: PROTEGI_DECODING,
            edit_decoding: PROTEGI_DECODING,
            hit_at: 3,
            max_training_calls: None,
            budget: None,
            shuffle_train_users: false,
            select: Selection::BestValid,
            missing_ids: agp.missing_ids,
            duplicate_ids: agp.duplicate_ids,
            unmarked_answers: agp.unmarked_answers,
            unparseable: agp.unparseable,
        }
    }
}

/// Settings of random search, the control of the prompt optimizers: on AGP's training loop
/// with AGP's profile and rerank (Eqs. 2–3), each batch scores the current `p_gen`, asks the LLM
/// once to apply one randomly drawn edit to it ([`crate::methods::random_search`] says which
/// edits and how they are drawn), scores the result on the same users (stage `verify`, as AGP's
/// verify step) and keeps it only if the batch's mean ground-truth rank strictly improves. No
/// feedback, scores or examples reach the proposal: whatever an optimizer gains over this at
/// the same budget is what its signal is worth. Training calls per batch of b users: 4b + 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomSearchConfig {
    /// Row label in reports; default e.g. `RandomSearch-T100`.
    pub label: Option<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub history_length: usize,
    /// As [`AgpConfig::n_train_users`].
    pub n_train_users: Option<usize>,
    pub hist_mask: f64,
    /// Initial `p_gen`; `None` is AGP's (empty).
    pub initial_prompt: Option<String>,
    /// As [`OproConfig::max_training_calls`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_training_calls: Option<u64>,
    /// Training budget in answered calls or tokens (see [`Budget`]); `max_training_calls = N`
    /// is its alias `budget = { calls = N }`. Setting both is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Shuffle the training users every epoch, seeded by the run's seed and the epoch, so that
    /// a seed changes a learned method's run (with the users in file order and greedy decoding
    /// two seeds repeat each other answer for answer). Off keeps the reference code's order.
    #[serde(skip_serializing_if = "is_default")]
    pub shuffle_train_users: bool,
    /// `valid-lcb` also chooses an epoch by the lower confidence bound of its validation
    /// NDCG@10 (see [`Selection::ValidLcb`]); `best-valid` (default) does not.
    #[serde(skip_serializing_if = "is_default")]
    pub select: Selection,
    pub missing_ids: MissingPolicy,
    pub duplicate_ids: DuplicatePolicy,
    pub unmarked_answers: UnmarkedAnswers,
    pub unparseable: UnparseableRule,
}

impl Default for RandomSearchConfig {
    fn default() -> Self {
        let agp = AgpConfig::default();
        Self {
            label: None,
            epochs: agp.epochs,
            batch_size: agp.batch_size,
            history_length: agp.history_length,
            n_train_users: None,
            hist_mask: 0.0,
            initial_prompt: None,
            max_training_calls: None,
            budget: None,
            shuffle_train_users: false,
            select: Selection::BestValid,
            missing_ids: agp.missing_ids,
            duplicate_ids: agp.duplicate_ids,
            unmarked_answers: agp.unmarked_answers,
            unparseable: agp.unparseable,
        }
    }
}

/// The parts of an optimizer's config that AGP's training loop and Eqs. 2–3 read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSettings {
    pub epochs: usize,
    pub batch_size: usize,
    pub history_length: usize,
    pub hist_mask: f64,
    pub parse: ParseOptions,
    pub unparseable: UnparseableRule,
    pub max_training_calls: Option<u64>,
    pub budget: Option<Budget>,
    pub shuffle_train_users: bool,
    pub select: Selection,
}

impl LoopSettings {
    /// The budget in force: `budget`, or `max_training_calls` as a budget in calls.
    pub fn training_budget(&self) -> Option<Budget> {
        Budget::resolve(self.budget, self.max_training_calls)
    }
}

macro_rules! optimizer_config_common {
    ($t:ty) => {
        impl $t {
            /// Training users this config uses with `cands`.
            pub fn train_users(&self, cands: &CandidateFile) -> usize {
                self.n_train_users.unwrap_or(cands.train_users.len())
            }

            /// The training loop's settings.
            pub fn loop_settings(&self) -> LoopSettings {
                LoopSettings {
                    epochs: self.epochs,
                    batch_size: self.batch_size,
                    history_length: self.history_length,
                    hist_mask: self.hist_mask,
                    parse: ParseOptions {
                        missing_ids: self.missing_ids,
                        duplicate_ids: self.duplicate_ids,
                        unmarked_answers: self.unmarked_answers,
                    },
                    unparseable: self.unparseable,
                    max_training_calls: self.max_training_calls,
                    budget: self.budget,
                    shuffle_train_users: self.shuffle_train_users,
                    select: self.select,
                }
            }
        }
    };
}

optimizer_config_common!(OproConfig);
optimizer_config_common!(ProtegiConfig);
optimizer_config_common!(RandomSearchConfig);

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The history a prompt shows, against the paper's last 5 items unmasked.
fn history_departures(differs: &mut impl FnMut(bool, String), length: usize, mask: f64) {
    differs(
        length != 5,
        format!("history of {length} items instead of the paper's 5"),
    );
    differs(
        mask != 0.0,
        format!("{mask} of the shown history masked instead of none"),
    );
}

/// A prompt optimizer's training loop, against the paper's: T100, 10 epochs, batches of 10,
/// history 5, no budget.
fn loop_departures(differs: &mut impl FnMut(bool, String), s: &LoopSettings, n: Option<usize>) {
    if let Some(n) = n {
        differs(n != 100, format!("T{n} instead of the paper's T100"));
    }
    differs(
        s.epochs != 10,
        format!(
            "{} epoch{} instead of the paper's 10",
            s.epochs,
            plural(s.epochs)
        ),
    );
    differs(
        s.batch_size != 10,
        format!("batches of {} instead of the paper's 10", s.batch_size),
    );
    history_departures(differs, s.history_length, s.hist_mask);
    differs(
        s.parse.missing_ids != MissingPolicy::Reference,
        "ids the answer leaves out are appended in backbone order instead of scoring rank K".into(),
    );
    differs(
        s.unparseable != UnparseableRule::default(),
        "unparseable answers score the NDCG of rank 10 (the reference code's DeepSeek rule) \
         instead of 0"
            .into(),
    );
    match s.training_budget() {
        Some(Budget {
            calls: Some(n),
            tokens: None,
        }) => differs(true, format!("training stops after {n} calls")),
        Some(Budget {
            calls: None,
            tokens: Some(n),
        }) => differs(true, format!("training stops after {n} tokens")),
        _ => {}
    }
}

fn check_range(field: &'static str, v: usize, lo: usize, hi: usize) -> Result<(), AgpError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else if hi == usize::MAX {
        // No upper bound known yet (it comes with the candidate lists).
        Err(AgpError::config(field, format!("{lo}.."), v))
    } else {
        Err(AgpError::config(field, format!("{lo}..={hi}"), v))
    }
}

/// `keep-as-reference` repeats ids, so `complete-with-base` could no longer make a permutation.
fn check_parse(opts: ParseOptions) -> Result<(), AgpError> {
    if opts.duplicate_ids == DuplicatePolicy::KeepAsReference
        && opts.missing_ids == MissingPolicy::CompleteWithBase
    {
        return Err(AgpError::config(
            "duplicate_ids",
            "\"dedup\" beside missing_ids = \"complete-with-base\"",
            "\"keep-as-reference\"",
        ));
    }
    Ok(())
}

fn check_mask(field: &'static str, v: f64) -> Result<(), AgpError> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(AgpError::config(field, "0.0..1.0 (exclusive)", v))
    }
}

/// The checks every prompt-optimizing method shares: its training loop against the candidate
/// file, Eqs. 2–3's history and parser settings, and the budget.
fn check_training(
    cands: Option<&CandidateFile>,
    n_train_users: Option<usize>,
    s: LoopSettings,
) -> Result<(), AgpError> {
    check_range("epochs", s.epochs, 1, 1000)?;
    match cands {
        Some(cands) => {
            if cands.train_users.is_empty() {
                return Err(AgpError::Data(format!(
                    "candidate file ({} / {}) has no train_users; a prompt-optimizing method \
                     needs some",
                    cands.dataset, cands.model
                )));
            }
            let n_train = n_train_users.unwrap_or(cands.train_users.len());
            check_range("n_train_users", n_train, 1, cands.train_users.len())?;
            check_range("batch_size", s.batch_size, 1, n_train)?;
        }
        // Before the lists exist, only what a list cannot change: at least one user, and a
        // batch no larger than the users asked for (when they are named).
        None => {
            if let Some(n) = n_train_users {
                check_range("n_train_users", n, 1, usize::MAX)?;
            }
            check_range(
                "batch_size",
                s.batch_size,
                1,
                n_train_users.unwrap_or(usize::MAX),
            )?;
        }
    }
    check_range("history_length", s.history_length, 1, 1000)?;
    check_parse(s.parse)?;
    check_mask("hist_mask", s.hist_mask)?;
    check_budget(s.budget, s.max_training_calls)?;
    match s.select {
        Selection::BestValid | Selection::ValidLcb => Ok(()),
        other => Err(AgpError::config(
            "select",
            "\"best-valid\" or \"valid-lcb\"",
            format!("\"{other}\""),
        )),
    }
}

impl MethodConfig {
    /// Report label: the config's `label`, else e.g. `AGP-T100` (training users as used with
    /// `cands`).
    pub fn label(&self, cands: &CandidateFile) -> String {
        let given = match self {
            MethodConfig::Base(c) => &c.label,
            MethodConfig::LlmDir(c) | MethodConfig::LlmCot(c) => &c.label,
            MethodConfig::LlmDirPointwise(c) => &c.label,
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                &c.label
            }
            MethodConfig::RankGpt(c) => &c.label,
            MethodConfig::PrpAllpair(c) | MethodConfig::PrpSort(c) => &c.label,
            MethodConfig::Setwise(c) => &c.label,
            MethodConfig::First(c) => &c.label,
            MethodConfig::Opro(c) => &c.label,
            MethodConfig::Protegi(c) => &c.label,
            MethodConfig::RandomSearch(c) => &c.label,
        };
        if let Some(l) = given {
            return l.clone();
        }
        match self {
            MethodConfig::Base(_) => "Base".into(),
            MethodConfig::LlmDir(_) => "LLM-Dir".into(),
            MethodConfig::LlmCot(_) => "LLM-CoT".into(),
            MethodConfig::Agp(c) => format!("AGP-T{}", c.train_users(cands)),
            MethodConfig::RerankOpt(c) => format!("RerankOpt-T{}", c.train_users(cands)),
            MethodConfig::LlmDirPointwise(_) => "LLM-Dir (pointwise)".into(),
            MethodConfig::AgpPointwise(c) => format!("AGP-T{} (pointwise)", c.train_users(cands)),
            MethodConfig::RankGpt(c) => format!("RankGPT (w{}/s{})", c.window, c.step),
            MethodConfig::PrpAllpair(_) => "PRP-allpair".into(),
            MethodConfig::PrpSort(_) => "PRP-sort".into(),
            MethodConfig::Setwise(c) => format!("Setwise (c{})", c.num_child),
            MethodConfig::First(_) => "FIRST".into(),
            MethodConfig::Opro(c) => format!("OPRO-T{}", c.train_users(cands)),
            MethodConfig::Protegi(c) => format!("ProTeGi-T{}", c.train_users(cands)),
            MethodConfig::RandomSearch(c) => format!("RandomSearch-T{}", c.train_users(cands)),
        }
    }

    /// Check every field against its allowed range, and against the candidate file where the
    /// range depends on it.
    pub fn validate(&self, cands: &CandidateFile) -> Result<(), AgpError> {
        self.check(Some(cands))
    }

    /// The checks that need no candidate file: every range that does not depend on the lists
    /// or the users. An experiment runs them as it loads, before any data is read or backbone
    /// trained, so a `hist_mask = 1.5` costs nothing; [`MethodConfig::validate`] adds the rest
    /// once the candidate lists exist.
    pub fn validate_settings(&self) -> Result<(), AgpError> {
        self.check(None)
    }

    fn check(&self, cands: Option<&CandidateFile>) -> Result<(), AgpError> {
        // The largest list size a check may assume before the lists exist: the bound it has
        // beyond K (a window, a child count) still applies.
        let k = cands.map_or(usize::MAX, |c| c.k);
        match self {
            MethodConfig::Base(_) => Ok(()),
            MethodConfig::LlmDir(c) | MethodConfig::LlmCot(c) => {
                check_range("history_length", c.history_length, 1, 1000)?;
                check_parse(c.parse_options())?;
                check_mask("hist_mask", c.hist_mask)
            }
            MethodConfig::LlmDirPointwise(c) => {
                check_range("history_length", c.history_length, 1, 1000)?;
                check_mask("hist_mask", c.hist_mask)
            }
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                check_training(cands, c.n_train_users, c.loop_settings())?;
                check_range("verify_steps", c.verify_steps, 1, 100)
            }
            MethodConfig::Opro(c) => {
                check_training(cands, c.n_train_users, c.loop_settings())?;
                check_range("n_candidates", c.n_candidates, 1, 100)?;
                c.proposal_decoding
                    .validate(("proposal_decoding.temperature", "proposal_decoding.top_p"))?;
                check_range("history_size", c.history_size, 1, 1000)?;
                check_range("n_exemplars", c.n_exemplars, 0, 100)
            }
            MethodConfig::Protegi(c) => {
                check_training(cands, c.n_train_users, c.loop_settings())?;
                check_range("beam_width", c.beam_width, 1, 100)?;
                check_range("n_gradients", c.n_gradients, 1, 100)?;
                check_range("errors_per_gradient", c.errors_per_gradient, 1, 1000)?;
                check_range("n_edits", c.n_edits, 1, 100)?;
                check_range("n_paraphrases", c.n_paraphrases, 0, 100)?;
                c.gradient_decoding
                    .validate(("gradient_decoding.temperature", "gradient_decoding.top_p"))?;
                c.edit_decoding
                    .validate(("edit_decoding.temperature", "edit_decoding.top_p"))?;
                // A top-K hit would hold every user, leaving no error to learn from.
                check_range("hit_at", c.hit_at, 1, k.saturating_sub(1).max(1))
            }
            MethodConfig::RandomSearch(c) => {
                check_training(cands, c.n_train_users, c.loop_settings())
            }
            MethodConfig::RankGpt(c) => {
                check_range("history_length", c.history_length, 1, 1000)?;
                check_mask("hist_mask", c.hist_mask)?;
                // Wider than the list is clamped to it, as RankGPT's 20 over K = 10 is.
                check_range("window", c.window, 2, 100)?;
                // A step of a whole window would leave no overlap to carry the best items on.
                check_range("step", c.step, 1, c.window - 1)
            }
            MethodConfig::PrpAllpair(c) | MethodConfig::PrpSort(c) => {
                check_range("history_length", c.history_length, 1, 1000)?;
                check_mask("hist_mask", c.hist_mask)
            }
            MethodConfig::Setwise(c) => {
                check_range("history_length", c.history_length, 1, 1000)?;
                check_mask("hist_mask", c.hist_mask)?;
                // More children than K - 1 would ask the same as K - 1.
                check_range("num_child", c.num_child, 1, k.saturating_sub(1).max(1))
            }
            MethodConfig::First(c) => {
                check_range("history_length", c.history_length, 1, 1000)?;
                check_mask("hist_mask", c.hist_mask)?;
                // Ids 10 and up are two tokens in many vocabularies, and their first token
                // would be read as id 1.
                if let Some(cands) = cands
                    && !(2..=10).contains(&cands.k)
                {
                    return Err(AgpError::Data(format!(
                        "FIRST reads each candidate id as one token, so it needs lists of 2..=10 \
                         candidates (ids 0..9); the candidate file ({} / {}) has K = {}",
                        cands.dataset, cands.model, cands.k
                    )));
                }
                Ok(())
            }
        }
    }

    /// LLM requests per evaluated user for lists of `k` candidates. For the prompt-optimizing
    /// methods this is the evaluation of a learned prompt (profile and rerank), not training.
    ///
    /// With K = 10 and default settings: Base 0, LLM-Dir and LLM-CoT 1, LLM-Dir (pointwise) 10,
    /// AGP, OPRO, ProTeGi and random search 2, RerankOpt 1, AGP (pointwise) 11; RankGPT (w20/s10) 1,
    /// (w4/s2) 4 (1 + ⌈(K − w)/s⌉ windows); PRP-allpair 90 (K·(K − 1)); PRP-sort 48..=88 and Setwise (c3)
    /// 11..=17 (heapsort: the bounds of [`crate::methods::rankers::heapsort_calls`]); FIRST 1.
    /// Training calls per epoch are [`crate::eq7_api_calls`] (AGP), [`crate::opro_train_calls`]
    /// and [`crate::protegi_train_calls`].
    pub fn calls_per_user(&self, k: usize) -> CallsPerUser {
        use crate::methods::rankers;
        let k64 = k as u64;
        match self {
            MethodConfig::Base(_) => CallsPerUser::exactly(0),
            MethodConfig::LlmDir(_) | MethodConfig::LlmCot(_) | MethodConfig::RerankOpt(_) => {
                CallsPerUser::exactly(1)
            }
            MethodConfig::LlmDirPointwise(_) => CallsPerUser::exactly(k64),
            MethodConfig::Agp(_)
            | MethodConfig::Opro(_)
            | MethodConfig::Protegi(_)
            | MethodConfig::RandomSearch(_) => CallsPerUser::exactly(2),
            MethodConfig::AgpPointwise(_) => CallsPerUser::exactly(1 + k64),
            MethodConfig::RankGpt(c) => {
                CallsPerUser::exactly(rankers::rankgpt_windows(k, c.window, c.step).len() as u64)
            }
            MethodConfig::PrpAllpair(_) => CallsPerUser::exactly(k64 * k64.saturating_sub(1)),
            MethodConfig::PrpSort(_) => {
                let (min, max) = rankers::heapsort_calls(k, 2, rankers::prp_calls_per_node);
                CallsPerUser { min, max }
            }
            MethodConfig::Setwise(c) => {
                let (min, max) = rankers::heapsort_calls(k, c.num_child, |_| 1);
                CallsPerUser { min, max }
            }
            MethodConfig::First(_) => CallsPerUser::exactly(1),
        }
    }

    /// What each stage of this method sends beyond the run's settings, for the stages whose
    /// decoding is a setting of the method: OPRO's proposals (`edit`), ProTeGi's gradients
    /// (`feedback`) and edits and paraphrases (`edit`). An entry at
    /// [`Decoding::PROVIDER_DEFAULT`] sends nothing; a method with no such stage gives an empty
    /// list (every call at the run's settings; FIRST's label request is always one greedy step).
    pub fn decoding(&self) -> Vec<(Stage, Decoding)> {
        match self {
            MethodConfig::Opro(c) => vec![(Stage::Edit, c.proposal_decoding)],
            MethodConfig::Protegi(c) => vec![
                (Stage::Feedback, c.gradient_decoding),
                (Stage::Edit, c.edit_decoding),
            ],
            _ => Vec::new(),
        }
    }

    /// Each way this row's settings differ from its method's published defaults (the paper's
    /// for AGP, its variants, LLM-Dir and LLM-CoT; the released code's for the baselines), one
    /// short sentence each, from the config's values. Empty for a row at its published
    /// settings. A row whose method this crate can only run one way (ProTeGi's beam selection)
    /// lists that too.
    pub fn departures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut differs = |cond: bool, text: String| {
            if cond {
                out.push(text);
            }
        };
        match self {
            MethodConfig::Base(_) => {}
            MethodConfig::LlmDir(c) | MethodConfig::LlmCot(c) => {
                history_departures(&mut differs, c.history_length, c.hist_mask);
                differs(
                    c.missing_ids != MissingPolicy::Reference,
                    "ids the answer leaves out are appended in backbone order instead of scoring \
                     rank K"
                        .into(),
                );
                differs(
                    c.unparseable != UnparseableRule::default(),
                    "unparseable answers score the NDCG of rank 10 (the reference code's \
                     DeepSeek rule) instead of 0"
                        .into(),
                );
                differs(
                    matches!(self, MethodConfig::LlmDir(_))
                        && c.output_constraint != OutputConstraint::Agp,
                    "the reference code's output sentence instead of AGP's".into(),
                );
            }
            MethodConfig::LlmDirPointwise(c) => {
                history_departures(&mut differs, c.history_length, c.hist_mask)
            }
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                loop_departures(&mut differs, &c.loop_settings(), c.n_train_users);
                differs(
                    c.verify_steps != 1,
                    format!("{} verify attempts per batch instead of 1", c.verify_steps),
                );
                differs(!c.pbf, "no position-based feedback".into());
                differs(!c.summarize, "no batch summarization".into());
                differs(
                    c.pbf && !c.update_strength,
                    "no Update Strength in the edit prompt".into(),
                );
                differs(
                    c.pbf && c.reference_feedback_text,
                    "no position statement in the feedback prompt (reference code)".into(),
                );
                differs(
                    c.feedback_prompt_source != FeedbackPromptSource::PGen,
                    "the feedback prompt shows the rerank prompt instead of p_gen (reference \
                     code)"
                        .into(),
                );
                differs(
                    c.feedback_list_order != FeedbackListOrder::Reranked,
                    "the feedback prompt lists the candidates in backbone order instead of the \
                     reranked order (reference code)"
                        .into(),
                );
                differs(
                    c.initial_prompt.is_some(),
                    "a given initial prompt instead of the paper's start".into(),
                );
            }
            MethodConfig::RankGpt(c) => differs(
                (c.window, c.step) != (RANKGPT_WINDOW, RANKGPT_STEP),
                format!(
                    "window {} / step {} instead of RankGPT's {RANKGPT_WINDOW} / {RANKGPT_STEP}",
                    c.window, c.step
                ),
            ),
            MethodConfig::PrpAllpair(_) => {}
            MethodConfig::PrpSort(c) => differs(
                c.ties == PrpTies::Backbone,
                "pairs without a preference go to the backbone's earlier item instead of \
                 llm-rankers' keeping the heap node"
                    .into(),
            ),
            MethodConfig::Setwise(c) => differs(
                c.num_child != 3,
                format!("{} children per node instead of Setwise's 3", c.num_child),
            ),
            MethodConfig::First(c) => {
                if c.prefill.is_empty() {
                    differs(
                        true,
                        format!("no answer prefill instead of rank_llm's `{FIRST_PREFILL}`"),
                    );
                } else {
                    differs(
                        c.prefill != FIRST_PREFILL,
                        format!(
                            "answer prefill {:?} instead of rank_llm's `{FIRST_PREFILL}`",
                            c.prefill
                        ),
                    );
                }
            }
            MethodConfig::RandomSearch(c) => {
                loop_departures(&mut differs, &c.loop_settings(), c.n_train_users);
            }
            MethodConfig::Opro(c) => {
                loop_departures(&mut differs, &c.loop_settings(), c.n_train_users);
                differs(
                    c.n_candidates != OPRO_CANDIDATES,
                    format!(
                        "{} proposal{} per step instead of OPRO's {OPRO_CANDIDATES}",
                        c.n_candidates,
                        plural(c.n_candidates)
                    ),
                );
                differs(
                    c.proposal_decoding != OPRO_DECODING,
                    format!(
                        "proposals at {} instead of OPRO's {}",
                        c.proposal_decoding.describe(),
                        OPRO_DECODING.describe()
                    ),
                );
                differs(
                    c.history_size != 20,
                    format!(
                        "{} scored prompts shown instead of OPRO's 20",
                        c.history_size
                    ),
                );
                differs(
                    c.n_exemplars != 3,
                    format!("{} example users instead of OPRO's 3", c.n_exemplars),
                );
                differs(
                    c.initial_prompt.is_some(),
                    "a given initial prompt instead of AGP's start".into(),
                );
            }
            MethodConfig::Protegi(c) => {
                loop_departures(&mut differs, &c.loop_settings(), c.n_train_users);
                differs(
                    c.beam_width != PROTEGI_BEAM,
                    format!("beam {} instead of ProTeGi's {PROTEGI_BEAM}", c.beam_width),
                );
                differs(
                    c.n_gradients != PROTEGI_GRADIENTS,
                    format!(
                        "{} gradient{} per prompt instead of ProTeGi's {PROTEGI_GRADIENTS}",
                        c.n_gradients,
                        plural(c.n_gradients)
                    ),
                );
                differs(
                    c.errors_per_gradient != PROTEGI_ERRORS_PER_GRADIENT,
                    format!(
                        "{} errors per gradient instead of ProTeGi's \
                         {PROTEGI_ERRORS_PER_GRADIENT}",
                        c.errors_per_gradient
                    ),
                );
                differs(
                    c.n_edits != 1,
                    format!("{} prompts per edit instead of ProTeGi's 1", c.n_edits),
                );
                if c.n_paraphrases == 0 {
                    differs(true, "no Monte-Carlo paraphrases".into());
                } else {
                    differs(
                        c.n_paraphrases != PROTEGI_PARAPHRASES,
                        format!(
                            "{} Monte-Carlo paraphrases per prompt instead of ProTeGi's \
                             {PROTEGI_PARAPHRASES}",
                            c.n_paraphrases
                        ),
                    );
                }
                for (what, d) in [("gradient", c.gradient_decoding), ("edit", c.edit_decoding)] {
                    differs(
                        d != PROTEGI_DECODING,
                        format!(
                            "{what} calls at {} instead of ProTeGi's {}",
                            d.describe(),
                            PROTEGI_DECODING.describe()
                        ),
                    );
                }
                differs(
                    c.initial_prompt.is_some(),
                    "a given initial prompt instead of AGP's start".into(),
                );
                differs(
                    true,
                    "the beam is kept by scoring every prompt on the batch instead of ProTeGi's \
                     bandit selection"
                        .into(),
                );
            }
        }
        out
    }

    /// Epochs of training; 0 for a method that does not learn.
    pub fn training_epochs(&self) -> usize {
        match self {
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                c.epochs
            }
            MethodConfig::Opro(c) => c.epochs,
            MethodConfig::Protegi(c) => c.epochs,
            MethodConfig::RandomSearch(c) => c.epochs,
            MethodConfig::Base(_)
            | MethodConfig::LlmDir(_)
            | MethodConfig::LlmCot(_)
            | MethodConfig::LlmDirPointwise(_)
            | MethodConfig::RankGpt(_)
            | MethodConfig::PrpAllpair(_)
            | MethodConfig::PrpSort(_)
            | MethodConfig::Setwise(_)
            | MethodConfig::First(_) => 0,
        }
    }

    /// The training loop's settings of a method that learns (`None` for one that does not).
    pub fn loop_settings(&self) -> Option<LoopSettings> {
        match self {
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                Some(c.loop_settings())
            }
            MethodConfig::Opro(c) => Some(c.loop_settings()),
            MethodConfig::Protegi(c) => Some(c.loop_settings()),
            MethodConfig::RandomSearch(c) => Some(c.loop_settings()),
            _ => None,
        }
    }

    /// The share of history titles masked, for methods that read a history (`None` for Base).
    pub fn hist_mask(&self) -> Option<f64> {
        match self {
            MethodConfig::Base(_) => None,
            MethodConfig::LlmDir(c) | MethodConfig::LlmCot(c) => Some(c.hist_mask),
            MethodConfig::LlmDirPointwise(c) => Some(c.hist_mask),
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                Some(c.hist_mask)
            }
            MethodConfig::RankGpt(c) => Some(c.hist_mask),
            MethodConfig::PrpAllpair(c) | MethodConfig::PrpSort(c) => Some(c.hist_mask),
            MethodConfig::Setwise(c) => Some(c.hist_mask),
            MethodConfig::First(c) => Some(c.hist_mask),
            MethodConfig::Opro(c) => Some(c.hist_mask),
            MethodConfig::Protegi(c) => Some(c.hist_mask),
            MethodConfig::RandomSearch(c) => Some(c.hist_mask),
        }
    }

    /// The training-user setting of a method that learns (`None` for one that does not), for a
    /// caller that caps it to what a candidate file holds.
    pub fn n_train_users_mut(&mut self) -> Option<&mut Option<usize>> {
        match self {
            MethodConfig::Agp(c) | MethodConfig::RerankOpt(c) | MethodConfig::AgpPointwise(c) => {
                Some(&mut c.n_train_users)
            }
            MethodConfig::Opro(c) => Some(&mut c.n_train_users),
            MethodConfig::Protegi(c) => Some(&mut c.n_train_users),
            MethodConfig::RandomSearch(c) => Some(&mut c.n_train_users),
            MethodConfig::Base(_)
            | MethodConfig::LlmDir(_)
            | MethodConfig::LlmCot(_)
            | MethodConfig::LlmDirPointwise(_)
            | MethodConfig::RankGpt(_)
            | MethodConfig::PrpAllpair(_)
            | MethodConfig::PrpSort(_)
            | MethodConfig::Setwise(_)
            | MethodConfig::First(_) => None,
        }
    }
}
