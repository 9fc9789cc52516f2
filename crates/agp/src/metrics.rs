//! Ranking metrics with one relevant item per user (the held-out test item).

use agp_llm::FailureReason;
use serde::{Deserialize, Serialize};

use crate::order::FirstShown;
use crate::parse::ParseOutcome;

/// What an unparseable answer scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnparseableRule {
    /// Rank K, NDCG 0 (the reference code for OpenAI models).
    #[default]
    Zero,
    /// Rank K, NDCG as if the item were at rank 10 (the reference code's `deepseek` branch
    /// assigns 1/log2(11) ≈ 0.289).
    Deepseek,
}

/// NDCG@10 for one relevant item at 1-based `rank`: 1/log2(rank+1), 0 beyond rank 10.
pub fn ndcg_at_10(rank: usize) -> f64 {
    if (1..=10).contains(&rank) {
        1.0 / ((rank + 1) as f64).log2()
    } else {
        0.0
    }
}

/// One user's result for one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserResult {
    pub user: u32,
    /// 1-based rank of the ground truth after reranking (K when it is missing from the answer).
    pub rank: usize,
    pub ndcg: f64,
    pub parse: ParseOutcome,
    /// Why the user's call failed, when `parse` is [`ParseOutcome::CallFailed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReason>,
    /// How often the answers put the item shown first on top, for a method run under a
    /// candidate order ([`crate::order`]); absent otherwise, as in files written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_shown: Option<FirstShown>,
}

/// Score an ordering of candidate indices against the ground-truth index `gt`.
///
/// An ordering that does not contain `gt` (possible under the `reference` missing-id policy)
/// gives rank `k` and NDCG 0, or the `deepseek` value when nothing was parseable.
pub fn score_ordering(
    user: u32,
    order: &[usize],
    gt: usize,
    k: usize,
    parse: ParseOutcome,
    rule: UnparseableRule,
) -> UserResult {
    match order.iter().position(|&i| i == gt) {
        Some(p) => UserResult {
            user,
            rank: p + 1,
            ndcg: ndcg_at_10(p + 1),
            parse,
            failure: None,
            first_shown: None,
        },
        None => {
            let ndcg = if parse == ParseOutcome::Unparseable && rule == UnparseableRule::Deepseek {
                ndcg_at_10(10)
            } else {
                0.0
            };
            UserResult {
                user,
                rank: k,
                ndcg,
                parse,
                failure: None,
                first_shown: None,
            }
        }
    }
}

/// A user whose call failed scores as the reference code scores an unusable answer: rank `k`,
/// NDCG 0. This is the `zero` rule whatever the method's [`UnparseableRule`]: the `deepseek`
/// value credits an answer the model gave, and here there was none.
pub fn score_failed_call(user: u32, k: usize, reason: FailureReason) -> UserResult {
    UserResult {
        failure: Some(reason),
        // An empty ordering is exactly what an unparseable answer yields.
        ..score_ordering(
            user,
            &[],
            0,
            k,
            ParseOutcome::CallFailed,
            UnparseableRule::Zero,
        )
    }
}

/// Means over a set of users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MeanMetrics {
    pub n_users: usize,
    pub ndcg10: f64,
    /// Mean 1-based rank of the ground truth (lower is better).
    pub mean_rank: f64,
    pub hr1: f64,
    pub hr3: f64,
    pub hr5: f64,
}

impl MeanMetrics {
    pub fn of(results: &[UserResult]) -> Self {
        let n = results.len();
        if n == 0 {
            return Self::default();
        }
        let mean = |f: &dyn Fn(&UserResult) -> f64| results.iter().map(f).sum::<f64>() / n as f64;
        let hit = |cut: usize| mean(&|r: &UserResult| if r.rank <= cut { 1.0 } else { 0.0 });
        Self {
            n_users: n,
            ndcg10: mean(&|r| r.ndcg),
            mean_rank: mean(&|r| r.rank as f64),
            hr1: hit(1),
            hr3: hit(3),
            hr5: hit(5),
        }
    }
}

/// Expected NDCG@10 of a uniformly random order of `k` candidates holding one relevant item:
/// the chance level a Base row should be read against.
pub fn random_order_ndcg(k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    (1..=k).map(ndcg_at_10).sum::<f64>() / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_values() {
        assert_eq!(ndcg_at_10(1), 1.0);
        assert!((ndcg_at_10(3) - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_at_10(11), 0.0);
        assert!((random_order_ndcg(10) - 0.4544).abs() < 1e-4);
    }

    #[test]
    fn missing_ground_truth_rules() {
        let r = score_ordering(
            7,
            &[1, 2],
            0,
            10,
            ParseOutcome::Partial,
            UnparseableRule::Deepseek,
        );
        assert_eq!((r.rank, r.ndcg), (10, 0.0));
        let r = score_ordering(
            7,
            &[],
            0,
            10,
            ParseOutcome::Unparseable,
            UnparseableRule::Deepseek,
        );
        assert_eq!(r.rank, 10);
        assert!((r.ndcg - 0.2890648).abs() < 1e-6);
        let r = score_ordering(
            7,
            &[],
            0,
            10,
            ParseOutcome::Unparseable,
            UnparseableRule::Zero,
        );
        assert_eq!(r.ndcg, 0.0);
    }

    #[test]
    fn failed_call_scores_rank_k_and_zero() {
        let r = score_failed_call(3, 10, FailureReason::Refusal);
        assert_eq!((r.rank, r.ndcg), (10, 0.0));
        assert_eq!(r.parse, ParseOutcome::CallFailed);
        assert_eq!(r.failure, Some(FailureReason::Refusal));
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#""parse":"call_failed","failure":"refusal""#),
            "{json}"
        );
        let plain = score_ordering(3, &[0], 0, 10, ParseOutcome::Exact, UnparseableRule::Zero);
        assert!(!serde_json::to_string(&plain).unwrap().contains("failure"));
    }

    #[test]
    fn means() {
        let rs = [
            score_ordering(0, &[0, 1], 0, 2, ParseOutcome::Exact, UnparseableRule::Zero),
            score_ordering(1, &[0, 1], 1, 2, ParseOutcome::Exact, UnparseableRule::Zero),
        ];
        let m = MeanMetrics::of(&rs);
        assert_eq!(m.n_users, 2);
        assert_eq!(m.mean_rank, 1.5);
        assert_eq!(m.hr1, 0.5);
        assert_eq!(m.hr3, 1.0);
        assert!((m.ndcg10 - (1.0 + 1.0 / 3f64.log2()) / 2.0).abs() < 1e-12);
    }
}
