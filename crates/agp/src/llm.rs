//! The crate's view of a chat model: every call goes through [`Llm`], which adds the system
//! message and the run's sampling settings, tags the call with its pipeline stage, and counts
//! calls and tokens per stage (what Eq. 7 is compared against).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use agp_llm::{ChatModel, ChatRequest, Message, Sampling, ScoreRequest, Stage};
use serde::{Deserialize, Serialize};

use crate::error::AgpError;
use crate::prompts;

/// Calls and tokens of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StageTally {
    /// Requests sent (a pointwise score request counts once, however many candidates).
    pub calls: u64,
    /// Candidates scored by pointwise requests.
    pub scored_items: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Per-stage tallies of a run. Shared by all concurrent calls.
#[derive(Debug, Default)]
pub struct CallLedger {
    inner: Mutex<BTreeMap<Stage, StageTally>>,
}

impl CallLedger {
    pub fn snapshot(&self) -> BTreeMap<Stage, StageTally> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the tallies, e.g. with those stored in a checkpoint.
    pub fn restore(&self, tallies: BTreeMap<Stage, StageTally>) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = tallies;
    }

    fn add(&self, stage: Stage, f: impl FnOnce(&mut StageTally)) {
        f(self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(stage)
            .or_default());
    }
}

/// A chat model plus the run's sampling settings and call ledger.
#[derive(Clone)]
pub struct Llm {
    pub model: Arc<dyn ChatModel>,
    pub sampling: Sampling,
    pub ledger: Arc<CallLedger>,
}

impl Llm {
    pub fn new(model: Arc<dyn ChatModel>, sampling: Sampling) -> Self {
        Self {
            model,
            sampling,
            ledger: Arc::default(),
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
            messages: vec![Message::system(prompts::SYSTEM), Message::user(prompt)],
            sampling: self.sampling.clone(),
            stage: Some(stage),
        };
        let resp = self
            .model
            .chat(&req)
            .await
            .map_err(|source| AgpError::Llm {
                stage,
                user,
                source,
            })?;
        self.ledger.add(stage, |t| {
            t.calls += 1;
            t.prompt_tokens += resp.usage.prompt_tokens;
            t.completion_tokens += resp.usage.completion_tokens;
        });
        Ok(resp.content)
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
            stage: Some(stage),
        };
        let resp = self
            .model
            .score(&req)
            .await
            .map_err(|source| AgpError::Llm {
                stage,
                user,
                source,
            })?;
        if resp.scores.len() != n {
            return Err(AgpError::Llm {
                stage,
                user,
                source: agp_llm::LlmError::Other(format!(
                    "score request for {n} candidates returned {} scores",
                    resp.scores.len()
                )),
            });
        }
        self.ledger.add(stage, |t| {
            t.calls += 1;
            t.scored_items += n as u64;
            t.prompt_tokens += resp.usage.prompt_tokens;
            t.completion_tokens += resp.usage.completion_tokens;
        });
        Ok(resp.scores)
    }
}

/// Eq. 7: API calls of one training epoch, (B·3 + 2)·N / B for batch size B and N training
/// users (the paper states it for N = 100). It counts profile, rerank and feedback per user and
/// summarize and edit per batch; it leaves out the verify step's re-evaluation and the
/// feedback calls skipped for users already ranked first.
pub fn eq7_api_calls(batch_size: usize, n_train_users: usize) -> f64 {
    if batch_size == 0 {
        return 0.0;
    }
    (batch_size as f64 * 3.0 + 2.0) * n_train_users as f64 / batch_size as f64
}
