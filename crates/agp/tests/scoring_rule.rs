//! One rule for unusable answers reaches every row kind: under `rank-k` a model that never
//! gives a readable answer scores every test user at rank K, whatever the method falls back to
//! on its own, and under `backbone` it scores Base; each user also carries the other rule's
//! score.

mod common;

use std::sync::Arc;

use agp::{
    AgpConfig, AnswerScoring, FirstConfig, ListwiseConfig, MethodConfig, MethodRun, PrpConfig,
    RankGptConfig, RunOptions, SetwiseConfig, run_method,
};
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, LabelRequest, LabelResponse, LlmError, ModelInfo,
    ScoreRequest, ScoreResponse,
};
use async_trait::async_trait;
use common::{FakeModel, K, RankerAnswers, fixture};

/// Answers every chat with a sentence holding no id, and sees no label: nothing is readable.
struct Mute(FakeModel);

#[async_trait]
impl ChatModel for Mute {
    fn info(&self) -> ModelInfo {
        self.0.info()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut r = self.0.chat(req).await?;
        r.content = "I do not understand.".into();
        Ok(r)
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        self.0.score(req).await
    }

    async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        self.0.label_logprobs(req).await
    }
}

async fn run(cfg: &MethodConfig, scoring: AnswerScoring) -> MethodRun {
    let (ds, cands) = fixture();
    let model: Arc<dyn ChatModel> = Arc::new(Mute(FakeModel::answering(RankerAnswers::Unreadable)));
    let opts = RunOptions {
        jobs: 4,
        scoring,
        ..RunOptions::default()
    };
    run_method(cfg, &ds, &cands, model, &opts).await.unwrap()
}

fn kinds() -> Vec<MethodConfig> {
    vec![
        MethodConfig::LlmDir(ListwiseConfig::default()),
        MethodConfig::LlmCot(ListwiseConfig::default()),
        MethodConfig::Agp(AgpConfig {
            epochs: 1,
            batch_size: 5,
            n_train_users: Some(5),
            ..AgpConfig::default()
        }),
        MethodConfig::RankGpt(RankGptConfig {
            window: 4,
            step: 2,
            ..RankGptConfig::default()
        }),
        MethodConfig::PrpAllpair(PrpConfig::default()),
        MethodConfig::PrpSort(PrpConfig::default()),
        MethodConfig::Setwise(SetwiseConfig::default()),
        MethodConfig::First(FirstConfig::default()),
    ]
}

#[tokio::test]
async fn one_rule_reaches_every_kind() {
    let base = run(
        &MethodConfig::Base(Default::default()),
        AnswerScoring::RankK,
    )
    .await;
    let base_ranks: Vec<usize> = base.last.users.iter().map(|u| u.rank).collect();
    assert!(base_ranks.iter().any(|&r| r < K), "{base_ranks:?}");
    for cfg in kinds() {
        let name = serde_json::to_value(&cfg).unwrap()["kind"].clone();
        for scoring in AnswerScoring::ALL {
            let r = run(&cfg, scoring).await;
            assert_eq!(r.scoring, scoring);
            let users = &r.last.users;
            assert_eq!(users.len(), base_ranks.len(), "{name}");
            for (u, &b) in users.iter().zip(&base_ranks) {
                let other = u.other_rule.expect("evaluated users carry both rules");
                let (rank_k, backbone) = match scoring {
                    AnswerScoring::RankK => (u.rank, other.rank),
                    AnswerScoring::Backbone => (other.rank, u.rank),
                };
                assert_eq!(rank_k, K, "{name} {scoring}: user {}", u.user);
                assert_eq!(backbone, b, "{name} {scoring}: user {}", u.user);
            }
            let expected = match scoring {
                AnswerScoring::RankK => 0.0,
                AnswerScoring::Backbone => base.last.test.ndcg10,
            };
            assert!(
                (r.last.test.ndcg10 - expected).abs() < 1e-12,
                "{name} {scoring}: {} vs {expected}",
                r.last.test.ndcg10
            );
        }
    }
}
