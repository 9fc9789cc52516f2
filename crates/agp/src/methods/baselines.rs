//! Base, LLM-Dir, LLM-CoT and pointwise LLM-Dir: methods that do not learn.

use crate::Stage;
use async_trait::async_trait;

use crate::config::{ListwiseConfig, PointwiseConfig};
use crate::error::AgpError;
use crate::metrics::UnparseableRule;
use crate::parse::{ParseOutcome, parse_rerank};
use crate::prompts;
use crate::reranker::{Env, Ranking, RerankInput, Reranker};

use super::order_by_scores;

/// The backbone's own order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Base;

#[async_trait]
impl Reranker for Base {
    async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, AgpError> {
        Ok(Ranking {
            order: (0..input.candidates.len()).collect(),
            outcome: ParseOutcome::Backbone,
        })
    }
}

/// LLM-Dir (`cot == false`) or LLM-CoT (`cot == true`): one listwise call from the history.
#[derive(Debug, Clone)]
pub struct ListwiseBaseline {
    pub cot: bool,
    pub cfg: ListwiseConfig,
}

#[async_trait]
impl Reranker for ListwiseBaseline {
    fn unparseable_rule(&self) -> UnparseableRule {
        self.cfg.unparseable
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let hist = input.history_text(self.cfg.history_length, self.cfg.hist_mask, env.seed);
        let cands = prompts::candidate_list(&input.candidates);
        let k = input.candidates.len();
        let prompt = if self.cot {
            prompts::rerank_cot(&hist, &cands, k)
        } else {
            prompts::rerank_direct_with(&hist, &cands, k, self.cfg.output_constraint)
        };
        let answer = env.llm.chat(Stage::Test, Some(input.user), prompt).await?;
        Ok(parse_rerank(&answer, k, self.cfg.parse_options()))
    }
}

/// LLM-Dir with pointwise yes/no scoring of each candidate against the history.
#[derive(Debug, Clone)]
pub struct PointwiseBaseline {
    pub cfg: PointwiseConfig,
}

#[async_trait]
impl Reranker for PointwiseBaseline {
    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let hist = input.history_text(self.cfg.history_length, self.cfg.hist_mask, env.seed);
        let prefix = prompts::pointwise_prefix_history(&hist);
        let suffixes = input
            .candidates
            .iter()
            .map(|c| prompts::pointwise_suffix(c))
            .collect();
        let scores = env
            .llm
            .score(Stage::Test, Some(input.user), prefix, suffixes)
            .await?;
        Ok(Ranking {
            order: order_by_scores(&scores),
            outcome: ParseOutcome::Pointwise,
        })
    }
}
