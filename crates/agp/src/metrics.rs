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
    /// The same answer scored under the experiment's other [`AnswerScoring`] rule, so a report
    /// shows how much the rule moves each row. `None` where only one rule was applied
    /// (training steps, and results written before the rule existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_rule: Option<RuleScore>,
    /// How often the answers put the item shown first on top, for a method run under a
    /// candidate order ([`crate::order`]); absent otherwise, as in files written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_shown: Option<FirstShown>,
}

/// A user's rank and NDCG@10 under one [`AnswerScoring`] rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleScore {
    pub rank: usize,
    pub ndcg: f64,
}

/// What an answer that is not a full ranking scores, for every row of an experiment alike: one
/// with nothing readable in it, one that leaves candidates out, and a call that failed.
///
/// Methods differ in what they do with such an answer on their own (a listwise prompt keeps
/// only the ids it read; RankGPT keeps a window's order, PRP and setwise settle a pair or set
/// by backbone order, FIRST falls back to the backbone), and that difference, not the method,
/// used to order a table. The experiment's rule is applied by the driver at evaluation, after
/// the method has answered, so it reaches built-in and external methods the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerScoring {
    /// The reference code's rule: an answer with nothing readable, or a failed call, ranks the
    /// ground truth at K (NDCG 0, or the method's `deepseek` value), and so does a partial
    /// answer that left the ground truth out. A method's own fallbacks inside an answer it did
    /// read (a window kept, a pair settled) stand.
    #[default]
    RankK,
    /// Complete in backbone order: the candidates an answer left out follow the ones it ranked,
    /// in backbone order, and an answer with nothing readable (or a failed call) is the
    /// backbone's list. A method that never answers then scores Base.
    Backbone,
}

impl AnswerScoring {
    pub const ALL: [AnswerScoring; 2] = [AnswerScoring::RankK, AnswerScoring::Backbone];

    /// The name in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            AnswerScoring::RankK => "rank-k",
            AnswerScoring::Backbone => "backbone",
        }
    }

    /// The other rule, whose table every report shows beside the declared one.
    pub fn other(self) -> Self {
        match self {
            AnswerScoring::RankK => AnswerScoring::Backbone,
            AnswerScoring::Backbone => AnswerScoring::RankK,
        }
    }

    /// One sentence for a report: what an unusable or partial answer scored.
    pub fn describe(self) -> &'static str {
        match self {
            AnswerScoring::RankK => {
                "an answer with nothing readable in it, and a call that failed, rank the held-out \
                 item at K = 10 (NDCG 0), as do partial answers that leave it out (the reference \
                 code's rule)"
            }
            AnswerScoring::Backbone => {
                "candidates an answer leaves out follow the ones it ranked in backbone order, and \
                 an answer with nothing readable in it, or a call that failed, is the backbone's \
                 own list"
            }
        }
    }
}

impl std::fmt::Display for AnswerScoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ordering `rule` scores for an answer `order` with `outcome` over `k` candidates.
fn ruled_order(
    order: &[usize],
    outcome: ParseOutcome,
    k: usize,
    rule: AnswerScoring,
) -> Vec<usize> {
    let unusable = matches!(
        outcome,
        ParseOutcome::Unparseable | ParseOutcome::CallFailed
    );
    match rule {
        AnswerScoring::RankK if unusable => Vec::new(),
        AnswerScoring::RankK => order.to_vec(),
        AnswerScoring::Backbone => {
            let mut full: Vec<usize> = if unusable { Vec::new() } else { order.to_vec() };
            let mut seen = vec![false; k];
            for &i in &full {
                if let Some(s) = seen.get_mut(i) {
                    *s = true;
                }
            }
            full.extend((0..k).filter(|&i| !seen[i]));
            full
        }
    }
}

/// One evaluated user's result under the experiment's `rule`, with the other rule's score
/// beside it. `method_rule` is the method's own value for an unparseable answer under rank K
/// (the reference code's `deepseek` branch); `failure` is the reason a call failed, when it did
/// (then `order` is ignored).
#[allow(clippy::too_many_arguments)]
pub fn score_under_rule(
    user: u32,
    order: &[usize],
    gt: usize,
    k: usize,
    outcome: ParseOutcome,
    method_rule: UnparseableRule,
    failure: Option<FailureReason>,
    rule: AnswerScoring,
) -> UserResult {
    let (order, outcome) = match failure {
        Some(_) => (&[][..], ParseOutcome::CallFailed),
        None => (order, outcome),
    };
    let score = |r: AnswerScoring| {
        let ruled = ruled_order(order, outcome, k, r);
        // A failed call carries no answer for the `deepseek` value to credit.
        let unparseable = if failure.is_some() {
            UnparseableRule::Zero
        } else {
            method_rule
        };
        score_ordering(user, &ruled, gt, k, outcome, unparseable)
    };
    let other = score(rule.other());
    UserResult {
        failure,
        other_rule: Some(RuleScore {
            rank: other.rank,
            ndcg: other.ndcg,
        }),
        ..score(rule)
    }
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
            other_rule: None,
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
                other_rule: None,
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

    #[test]
    fn one_rule_for_every_kind_of_unusable_answer() {
        use AnswerScoring::*;
        let zero = UnparseableRule::Zero;
        // A ranker that fell back to the backbone because nothing was readable: its order is
        // full, but under rank K it is an unusable answer.
        let fallback: Vec<usize> = (0..10).collect();
        let r = score_under_rule(
            1,
            &fallback,
            2,
            10,
            ParseOutcome::Unparseable,
            zero,
            None,
            RankK,
        );
        assert_eq!((r.rank, r.ndcg), (10, 0.0));
        assert_eq!(r.other_rule.unwrap().rank, 3);
        let r = score_under_rule(
            1,
            &fallback,
            2,
            10,
            ParseOutcome::Unparseable,
            zero,
            None,
            Backbone,
        );
        assert_eq!(r.rank, 3);
        assert_eq!(r.other_rule.unwrap().rank, 10);
        // A partial listwise answer that left the ground truth out.
        let partial = [4, 0];
        let r = score_under_rule(1, &partial, 2, 10, ParseOutcome::Partial, zero, None, RankK);
        assert_eq!(r.rank, 10);
        let r = score_under_rule(
            1,
            &partial,
            2,
            10,
            ParseOutcome::Partial,
            zero,
            None,
            Backbone,
        );
        // 4, 0, then 1, 2, ...: the ground truth follows at position 4.
        assert_eq!(r.rank, 4);
        // A partial answer that ranked the ground truth scores it where it put it, either way.
        for rule in AnswerScoring::ALL {
            let r = score_under_rule(1, &[2, 4], 2, 10, ParseOutcome::Partial, zero, None, rule);
            assert_eq!(r.rank, 1);
        }
        // A failed call: rank K, or the backbone's list; never the deepseek credit.
        let ds = UnparseableRule::Deepseek;
        let f = Some(FailureReason::Refusal);
        let r = score_under_rule(1, &[2], 5, 10, ParseOutcome::Exact, ds, f, RankK);
        assert_eq!(
            (r.rank, r.ndcg, r.parse),
            (10, 0.0, ParseOutcome::CallFailed)
        );
        assert_eq!(r.failure, f);
        let r = score_under_rule(1, &[2], 5, 10, ParseOutcome::Exact, ds, f, Backbone);
        assert_eq!(r.rank, 6);
        // The method's deepseek value still applies to an unparseable answer under rank K.
        let r = score_under_rule(1, &[], 5, 10, ParseOutcome::Unparseable, ds, None, RankK);
        assert_eq!(r.ndcg, ndcg_at_10(10));
        // Repeated ids (keep-as-reference) are completed without adding a second copy.
        let r = score_under_rule(
            1,
            &[1, 1, 0],
            3,
            4,
            ParseOutcome::Partial,
            zero,
            None,
            Backbone,
        );
        assert_eq!(r.rank, 5);
    }

    #[test]
    fn rule_names_round_trip() {
        for rule in AnswerScoring::ALL {
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(json, format!("\"{}\"", rule.name()));
            assert_eq!(serde_json::from_str::<AnswerScoring>(&json).unwrap(), rule);
            assert_eq!(rule.other().other(), rule);
        }
    }
}
