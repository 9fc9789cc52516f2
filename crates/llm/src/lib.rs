//! What every reranker talks to: one async [`ChatModel`] trait over an OpenAI-compatible HTTP
//! client, an in-process GGUF model, and a record/replay store.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
        Self { role: Role::System, content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into() }
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
    Http { request_id: String, status: u16, message: String },
    #[error("replay miss for key {key} (model {model}); last message starts: {last_message_start:?}")]
    ReplayMiss { key: String, model: String, last_message_start: String },
    #[error("{0}")]
    Other(String),
}

#[async_trait]
pub trait ChatModel: Send + Sync {
    fn info(&self) -> ModelInfo;
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;
    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError>;
}
