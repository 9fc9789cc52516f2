//! The crate's view of a chat model: every call goes through [`Llm`], which adds the system
//! message and the run's sampling settings, tags the call with its pipeline stage, and books it
//! (answered, truncated or failed) in the run's scope of the model's [`UsageLedger`]. Its
//! [`RunCalls`] reads requests, tokens and failed calls per stage from there (what Eq. 7 is
//! compared against).
//!
//! A failed call is an [`AgpError::Llm`]. Under [`FailurePolicy::Continue`] the callers turn a
//! non-fatal one into an outcome for one user through [`Llm::tolerate`]; fatal reasons
//! ([`FailureReason::is_fatal`]) always end the run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use agp_llm::{
    CallKind, CallOutcome, CallUsage, ChatModel, ChatRequest, FailureReason, LabelRequest, Message,
    PriceTable, Sampling, ScoreRequest, Usage, UsageLedger,
};
use serde::{Deserialize, Serialize};

use crate::Stage;
use crate::config::Decoding;
use crate::error::AgpError;
use crate::prompts;

/// What a run does when an LLM call fails (after the HTTP client's own retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// A call whose reason is not fatal becomes an outcome: an evaluated user scores as an
    /// unusable answer (rank K, NDCG 0, [`crate::ParseOutcome::CallFailed`]); in training the
    /// user gives no feedback, and a failed summarize, edit or verify call discards that edit.
    /// One refusal or outage must not cost a paid run of tens of thousands of calls its report.
    #[default]
    Continue,
    /// Any failed call ends the run with its error.
    Stop,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Requests, tokens and failures of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageTally {
    /// HTTP requests answered: one per chat call, n per pointwise score request of n
    /// candidates (each candidate is its own request).
    pub calls: u64,
    /// Candidates scored by pointwise requests.
    pub scored_items: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Calls that ended without a usable answer (not in `calls`; a failed pointwise request
    /// counts once, since how many of its candidates were answered first is not known).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u64,
    /// Answers cut at `max_tokens` (`finish_reason = length`), kept and parsed as they are.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated: u64,
    /// Labels asked of log-probability calls (FIRST's identifiers, a yes/no per pointwise
    /// candidate), and of those the ones the provider left out of its top log-probabilities.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub labels_asked: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub labels_missing: u64,
}

#[derive(Debug, Default)]
struct Carried {
    stages: BTreeMap<Stage, StageTally>,
    failures: BTreeMap<FailureReason, u64>,
}

/// A run's calls per stage and failed calls by reason: what its scope of the model's
/// [`UsageLedger`] holds (every call is booked there once), plus what a resumed checkpoint
/// carried over from before.
#[derive(Debug, Default)]
pub struct RunCalls {
    ledger: UsageLedger,
    carried: Mutex<Carried>,
}

impl RunCalls {
    /// Books in `ledger`: give each run a scope of its own ([`UsageLedger::scope`]).
    pub fn new(ledger: UsageLedger) -> Self {
        Self {
            ledger,
            carried: Mutex::default(),
        }
    }

    pub fn ledger(&self) -> &UsageLedger {
        &self.ledger
    }

    fn carried(&self) -> std::sync::MutexGuard<'_, Carried> {
        self.carried.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> BTreeMap<Stage, StageTally> {
        let mut out = self.carried().stages.clone();
        // Prices do not enter a tally.
        for (account, t) in self.ledger.totals_by_account(&PriceTable::default()) {
            let s = out
                .entry(Stage::from_account(account).unwrap_or(Stage::Other))
                .or_default();
            s.calls += t.calls;
            s.scored_items += t.scored_items;
            s.prompt_tokens += t.prompt_tokens;
            s.completion_tokens += t.completion_tokens;
            s.failed += t.failed;
            s.truncated += t.truncated;
            s.labels_asked += t.labels_asked;
            s.labels_missing += t.labels_missing;
        }
        out
    }

    /// Failed calls by reason.
    pub fn failures(&self) -> BTreeMap<FailureReason, u64> {
        let mut out = self.carried().failures.clone();
        for (r, n) in self.ledger.failures() {
            *out.entry(r).or_default() += n;
        }
        out
    }

    /// Start from the tallies stored in a checkpoint (before the run makes a call). They are
    /// not booked in the ledger: its calls are the ones made now.
    pub fn restore(&self, tallies: BTreeMap<Stage, StageTally>) {
        self.carried().stages = tallies;
    }

    /// Start from the failure counts stored in a checkpoint, as [`RunCalls::restore`].
    pub fn restore_failures(&self, failures: BTreeMap<FailureReason, u64>) {
        self.carried().failures = failures;
    }
}

/// A chat model plus the run's sampling settings, failure policy and calls.
#[derive(Clone)]
pub struct Llm {
    pub model: Arc<dyn ChatModel>,
    pub sampling: Sampling,
    pub calls: Arc<RunCalls>,
    /// Read by [`Llm::tolerate`]; the driver sets it from [`crate::RunOptions::on_failure`].
    pub on_failure: FailurePolicy,
}

impl Llm {
    pub fn new(model: Arc<dyn ChatModel>, sampling: Sampling) -> Self {
        Self {
            model,
            sampling,
            calls: Arc::default(),
            on_failure: FailurePolicy::default(),
        }
    }

    /// Under [`FailurePolicy::Continue`], a failed call with a non-fatal reason becomes
    /// `Ok(Err(reason))` for the caller to score or skip; every other error is returned as it
    /// is, and a success is `Ok(Ok(value))`.
    pub fn tolerate<T>(
        &self,
        result: Result<T, AgpError>,
    ) -> Result<Result<T, FailureReason>, AgpError> {
        match result {
            Ok(v) => Ok(Ok(v)),
            Err(e) => match (self.on_failure, e.failure_reason()) {
                (FailurePolicy::Continue, Some(reason)) if !reason.is_fatal() => Ok(Err(reason)),
                _ => Err(e),
            },
        }
    }

    /// Send `prompt` as the user message after the fixed system message; return the answer.
    pub async fn chat(
        &self,
        stage: Stage,
        user: Option<u32>,
        prompt: String,
    ) -> Result<String, AgpError> {
        let req = ChatRequest {
            sampling: self.sampling.clone(),
            ..ChatRequest::new(vec![
                Message::system(prompts::SYSTEM),
                Message::user(prompt),
            ])
        };
        Ok(self.chat_request(stage, user, req).await?.content)
    }

    /// As [`Llm::chat`], with this stage's decoding in place of the run's (only the fields it
    /// sets) and, where given, a seed of its own. At [`Decoding::PROVIDER_DEFAULT`] and no seed
    /// the request is byte for byte the one [`Llm::chat`] sends.
    pub async fn chat_with(
        &self,
        stage: Stage,
        user: Option<u32>,
        prompt: String,
        decoding: &Decoding,
        seed: Option<u64>,
    ) -> Result<String, AgpError> {
        let mut sampling = self.sampling.clone();
        if let Some(t) = decoding.temperature {
            sampling.temperature = Some(t);
        }
        if let Some(p) = decoding.top_p {
            sampling.top_p = Some(p);
        }
        if let Some(s) = seed.or(decoding.seed) {
            sampling.seed = Some(s);
        }
        let req = ChatRequest {
            sampling,
            ..ChatRequest::new(vec![
                Message::system(prompts::SYSTEM),
                Message::user(prompt),
            ])
        };
        Ok(self.chat_request(stage, user, req).await?.content)
    }

    /// Send a whole request (for [`Llm::chat`], or an external method's own messages and
    /// sampling) tagged with `stage`, and book it in the ledger.
    pub async fn chat_request(
        &self,
        stage: Stage,
        user: Option<u32>,
        req: ChatRequest,
    ) -> Result<agp_llm::ChatResponse, AgpError> {
        let mut req = req.with_account(stage.as_str());
        // Whatever built the request (a method's stage, an external method's own body), what
        // it left unset goes out as the run's decoding, never as the provider's default.
        req.sampling = req.sampling.resolved(&self.sampling);
        let resp = match self.model.chat(&req).await {
            Ok(r) => r,
            Err(source) => return Err(self.failed(stage, CallKind::Chat, user, source)),
        };
        let truncated = resp.finish_reason.as_deref() == Some("length");
        self.book(
            stage,
            CallKind::Chat,
            1,
            CallOutcome::Answered { truncated },
            &resp.usage,
        );
        Ok(resp)
    }

    fn book(
        &self,
        stage: Stage,
        kind: CallKind,
        requests: u64,
        outcome: CallOutcome,
        usage: &Usage,
    ) {
        self.calls.ledger.book(CallUsage {
            account: stage.as_str(),
            model: self.model.info().model,
            kind,
            requests,
            outcome,
            usage: usage.clone(),
        });
    }

    /// Books a failed call and names its stage and user.
    fn failed(
        &self,
        stage: Stage,
        kind: CallKind,
        user: Option<u32>,
        source: agp_llm::LlmError,
    ) -> AgpError {
        let outcome = CallOutcome::Failed(source.reason());
        self.book(stage, kind, 0, outcome, &Usage::default());
        AgpError::Llm {
            stage,
            user,
            source,
        }
    }

    /// Yes/no scores (logit Yes − logit No) of `prefix + suffix` for each suffix.
    pub async fn score(
        &self,
        stage: Stage,
        user: Option<u32>,
        prefix: String,
        suffixes: Vec<String>,
    ) -> Result<Vec<f32>, AgpError> {
        let n = suffixes.len();
        let req = ScoreRequest {
            messages: vec![Message::system(prompts::SYSTEM)],
            prefix,
            suffixes,
            account: Some(stage.as_str()),
            priority: 0,
        };
        let resp = match self.model.score(&req).await {
            Ok(r) if r.scores.len() == n => r,
            Ok(r) => {
                let source = agp_llm::LlmError::Other(format!(
                    "score request for {n} candidates returned {} scores",
                    r.scores.len()
                ));
                return Err(self.failed(stage, CallKind::Score, user, source));
            }
            Err(source) => return Err(self.failed(stage, CallKind::Score, user, source)),
        };
        let answered = CallOutcome::Answered { truncated: false };
        let usage = Usage {
            labels_asked: n as u64,
            ..resp.usage
        };
        self.book(stage, CallKind::Score, n as u64, answered, &usage);
        Ok(resp.scores)
    }
}

impl Llm {
    /// First-token log-probabilities of `labels` as the answer to `prompt` (after the fixed
    /// system message), one per label; `NEG_INFINITY` for a label the backend did not see. One
    /// request, whatever the number of labels. The run's sampling settings do not apply: the
    /// backend reads one greedy step.
    ///
    /// A non-empty `prefill` is the start of the assistant's answer, the labels read as the
    /// token after it (see [`LabelRequest::prefill`]).
    pub async fn label_logprobs(
        &self,
        stage: Stage,
        user: Option<u32>,
        prompt: String,
        labels: Vec<String>,
        prefill: &str,
    ) -> Result<Vec<f32>, AgpError> {
        let n = labels.len();
        let req = LabelRequest {
            messages: vec![Message::system(prompts::SYSTEM), Message::user(prompt)],
            labels,
            prefill: prefill.to_string(),
            account: Some(stage.as_str()),
            priority: 0,
        };
        let resp = match self.model.label_logprobs(&req).await {
            Ok(r) if r.logprobs.len() == n => r,
            Ok(r) => {
                let source = agp_llm::LlmError::Other(format!(
                    "label request for {n} labels returned {} log-probabilities",
                    r.logprobs.len()
                ));
                return Err(self.failed(stage, CallKind::Labels, user, source));
            }
            Err(source) => return Err(self.failed(stage, CallKind::Labels, user, source)),
        };
        let answered = CallOutcome::Answered { truncated: false };
        let usage = Usage {
            labels_asked: n as u64,
            // Counted here, not by the backend, so answers recorded before the count existed
            // are counted on replay too.
            labels_missing: resp.logprobs.iter().filter(|l| !l.is_finite()).count() as u64,
            ..resp.usage
        };
        self.book(stage, CallKind::Labels, 1, answered, &usage);
        Ok(resp.logprobs)
    }
}

/// Eq. 7: API calls of one training epoch, (B·3 + 2)·N / B for batch size B and N training
/// users (the paper states it for N = 100). It counts profile, rerank and feedback per user and
/// summarize and edit per batch, one request each (a listwise rerank); it leaves out the verify
/// step's re-evaluation and the feedback calls skipped for users already ranked first.
pub fn eq7_api_calls(batch_size: usize, n_train_users: usize) -> f64 {
    if batch_size == 0 {
        return 0.0;
    }
    (batch_size as f64 * 3.0 + 2.0) * n_train_users as f64 / batch_size as f64
}

/// The stages of training calls: every stage but `test` (evaluation) and `other`.
pub const TRAINING_STAGES: [Stage; 6] = [
    Stage::Profile,
    Stage::Rerank,
    Stage::Feedback,
    Stage::Summarize,
    Stage::Edit,
    Stage::Verify,
];

/// Answered training requests in `tallies`: what a `max_training_calls` budget is measured
/// against, and what [`crate::MethodRun::training_calls`] reports. Failed calls are left out,
/// as they are of every other count of calls.
pub fn training_calls(tallies: &BTreeMap<Stage, StageTally>) -> u64 {
    TRAINING_STAGES
        .iter()
        .filter_map(|s| tallies.get(s))
        .map(|t| t.calls)
        .sum()
}

/// Training requests of one OPRO epoch over `n_train_users` in batches of `batch_size` with
/// `n_candidates` proposals per batch: each batch of b users pays 2b to score the current prompt
/// (profile and rerank per user), `n_candidates` meta-prompt calls and 2b per proposal, so an
/// epoch is 2N·(1 + n) + n·⌈N/B⌉. Exact when every call is answered and no proposal repeats the
/// current prompt or an earlier proposal of its batch (a repeat is not scored again); an upper
/// bound otherwise.
pub fn opro_train_calls(batch_size: usize, n_train_users: usize, n_candidates: usize) -> u64 {
    if batch_size == 0 {
        return 0;
    }
    let (n, b, c) = (
        n_train_users as u64,
        n_train_users.div_ceil(batch_size) as u64,
        n_candidates as u64,
    );
    2 * n * (1 + c) + c * b
}

/// Training requests of one ProTeGi epoch (an upper bound): per batch of b users and per beam
/// prompt, 2b to score it, up to `n_gradients` gradient calls and as many edit calls, 2b per
/// new prompt (`n_edits` per edit), and `n_paraphrases` paraphrase calls for each new prompt and
/// for the beam prompt itself, each paraphrase scored at 2b. With G gradients, e edits, P
/// paraphrases and s = G·e new prompts, an epoch is
/// w·(2N·(1 + s + P·(s + 1)) + (2G + P·(s + 1))·⌈N/B⌉) for beam width w. Exact when the beam is
/// full (from the first batch when w = 1), every beam prompt has at least
/// (G − 1)·`errors_per_gradient` + 1 failing users in every batch, every edit answer holds e
/// prompts, no prompt repeats another of the step, and every call is answered.
pub fn protegi_train_calls(
    batch_size: usize,
    n_train_users: usize,
    beam_width: usize,
    n_gradients: usize,
    n_edits: usize,
    n_paraphrases: usize,
) -> u64 {
    if batch_size == 0 {
        return 0;
    }
    let (n, b) = (
        n_train_users as u64,
        n_train_users.div_ceil(batch_size) as u64,
    );
    let (w, g, e, p) = (
        beam_width as u64,
        n_gradients as u64,
        n_edits as u64,
        n_paraphrases as u64,
    );
    let new = g * e;
    let paraphrases = p * (new + 1);
    w * (2 * n * (1 + new + paraphrases) + (2 * g + paraphrases) * b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizer_call_formulas() {
        // 20 users in batches of 5: 4 batches.
        assert_eq!(opro_train_calls(5, 20, 1), 2 * 20 * 2 + 4);
        assert_eq!(opro_train_calls(5, 20, 8), 2 * 20 * 9 + 8 * 4);
        // A short last batch still has its proposals: 18 users, 4 batches.
        assert_eq!(opro_train_calls(5, 18, 1), 2 * 18 * 2 + 4);
        assert_eq!(protegi_train_calls(5, 20, 1, 1, 1, 0), 2 * 20 * 2 + 2 * 4);
        assert_eq!(
            protegi_train_calls(5, 20, 4, 4, 1, 0),
            4 * (2 * 20 * 5 + 2 * 4 * 4)
        );
        // Two paraphrases of each of the 4 new prompts and of the beam prompt: 10 more calls
        // per beam prompt and batch, each scored on the batch.
        assert_eq!(
            protegi_train_calls(5, 20, 4, 4, 1, 2),
            4 * (2 * 20 * (5 + 10) + (2 * 4 + 10) * 4)
        );
        assert_eq!(opro_train_calls(0, 20, 1), 0);
        assert_eq!(protegi_train_calls(0, 20, 1, 1, 1, 0), 0);
        // Training stages are everything but evaluation.
        let t = |calls| StageTally {
            calls,
            ..StageTally::default()
        };
        let tallies = BTreeMap::from([
            (Stage::Profile, t(3)),
            (Stage::Edit, t(1)),
            (Stage::Test, t(7)),
        ]);
        assert_eq!(training_calls(&tallies), 4);
    }

    #[test]
    fn tallies_of_older_checkpoints_load_and_clean_ones_serialise_as_before() {
        let old = r#"{"calls":3,"scored_items":0,"prompt_tokens":5,"completion_tokens":2}"#;
        let t: StageTally = serde_json::from_str(old).unwrap();
        assert_eq!((t.calls, t.failed, t.truncated), (3, 0, 0));
        assert_eq!(serde_json::to_string(&t).unwrap(), old);
    }

    #[test]
    fn only_non_fatal_failures_are_tolerated_and_only_under_continue() {
        struct Never;
        #[async_trait::async_trait]
        impl ChatModel for Never {
            fn info(&self) -> agp_llm::ModelInfo {
                agp_llm::ModelInfo {
                    backend: "none".into(),
                    model: "none".into(),
                    file_sha256: None,
                }
            }
            async fn chat(
                &self,
                _: &ChatRequest,
            ) -> Result<agp_llm::ChatResponse, agp_llm::LlmError> {
                unreachable!()
            }
            async fn score(
                &self,
                _: &ScoreRequest,
            ) -> Result<agp_llm::ScoreResponse, agp_llm::LlmError> {
                unreachable!()
            }
        }
        let err = |reason| AgpError::Llm {
            stage: Stage::Test,
            user: Some(1),
            source: agp_llm::LlmError::Http {
                request_id: "r".into(),
                status: 0,
                reason,
                message: String::new(),
            },
        };
        let mut llm = Llm::new(Arc::new(Never), Sampling::default());
        assert_eq!(llm.on_failure, FailurePolicy::Continue);
        let tolerated = llm.tolerate::<()>(Err(err(FailureReason::Refusal)));
        assert!(matches!(tolerated, Ok(Err(FailureReason::Refusal))));
        assert!(
            llm.tolerate::<()>(Err(err(FailureReason::ClientError)))
                .is_err()
        );
        assert!(llm.tolerate::<()>(Err(AgpError::Data("d".into()))).is_err());
        assert!(matches!(llm.tolerate(Ok(1)), Ok(Ok(1))));
        llm.on_failure = FailurePolicy::Stop;
        assert!(
            llm.tolerate::<()>(Err(err(FailureReason::Timeout)))
                .is_err()
        );
    }
}
