//! Full-ranking evaluation of a [`Scorer`] on the leave-one-out held-out items.
//!
//! Every item is ranked (no sampled negatives); items in the history the model conditions on
//! are masked. On [`Split::Valid`] the history is the training sequence and the target the
//! validation item; on [`Split::Test`] the history is train + valid and the target the test item.
//!
//! With one held-out item per user, Recall@K and HR@K coincide (both are 1 when the target is in
//! the top K); both are reported because papers use either name.
//!
//! Scorers that implement [`crate::DotScorer`] are evaluated in user blocks with a GEMM
//! ([`blocked`]); the result is identical, rank for rank and score bit for score bit, to the
//! per-user path in [`mod@reference`], which everything else uses.

pub mod blocked;
pub mod reference;

use crate::Scorer;
use agp_datasets::Dataset;
use std::collections::BTreeMap;

/// Which held-out item is the target, and what history conditions the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Valid,
    Test,
}

impl Split {
    /// The items the model may condition on (and which are masked from the ranking).
    pub fn history(self, dataset: &Dataset, user: u32) -> Vec<u32> {
        match self {
            Split::Valid => dataset.train[user as usize].clone(),
            Split::Test => dataset.history_before_test(user),
        }
    }

    pub fn target(self, dataset: &Dataset, user: u32) -> u32 {
        match self {
            Split::Valid => dataset.valid[user as usize],
            Split::Test => dataset.test[user as usize],
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("model scores {model} items but the dataset has {dataset}")]
    ItemCount { model: usize, dataset: usize },
    #[error(
        "model gave a non-finite score ({score}) to item {item} for user {user}; it has diverged"
    )]
    NonFinite { user: u32, item: u32, score: f32 },
    #[error("user {user}: history or target item {item} out of range (n_items {n_items})")]
    ItemOutOfRange {
        user: u32,
        item: u32,
        n_items: usize,
    },
}

/// Scores `user` with `history`, checks every score is finite, and masks the history items by
/// setting them to −∞ (so "finite" afterwards means "rankable").
pub fn masked_scores<S: Scorer + ?Sized>(
    scorer: &S,
    user: u32,
    history: &[u32],
    out: &mut [f32],
) -> Result<(), EvalError> {
    scorer.score_user(user, history, out);
    if let Some((item, &score)) = out.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(EvalError::NonFinite {
            user,
            item: item as u32,
            score,
        });
    }
    for &h in history {
        let Some(slot) = out.get_mut(h as usize) else {
            return Err(EvalError::ItemOutOfRange {
                user,
                item: h,
                n_items: out.len(),
            });
        };
        *slot = f32::NEG_INFINITY;
    }
    Ok(())
}

/// 0-based rank of `target` among the unmasked items of `scores` (masked = −∞), or `None` if the
/// target itself is masked. Ties are broken by item id, the same order as [`top_k`], so the rank
/// and the exported list always agree.
pub fn rank_of(scores: &[f32], target: u32) -> Option<u32> {
    let t = target as usize;
    let st = scores[t];
    if st == f32::NEG_INFINITY {
        return None;
    }
    let above = scores[..t].iter().filter(|&&s| s >= st).count()
        + scores[t + 1..].iter().filter(|&&s| s > st).count();
    Some(above as u32)
}

/// The `k` best unmasked items of `scores` (masked = −∞) as `(item, score)`, best first; ties go
/// to the lower item id. Fewer than `k` when fewer items are unmasked.
pub fn top_k(scores: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (i, &s) in scores.iter().enumerate() {
        if s == f32::NEG_INFINITY || (best.len() == k && s <= best[k - 1].1) {
            continue;
        }
        // Strictly-greater keeps earlier (lower id) items ahead on ties.
        let pos = best.partition_point(|&(_, b)| b >= s);
        best.insert(pos, (i as u32, s));
        best.truncate(k);
    }
    best
}

/// Per-user rank of the held-out item on one split; every metric is a function of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranks {
    pub split: Split,
    /// 0-based rank of the target among unmasked items, by dense user id; `None` when the
    /// target is itself in the history (a repeat consumption), which counts as a miss.
    pub ranks: Vec<Option<u32>>,
}

/// The dataset's item count, after checking that the model scores exactly those items.
pub(crate) fn check_item_count<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
) -> Result<usize, EvalError> {
    let n_items = dataset.n_items();
    if scorer.n_items() != n_items {
        return Err(EvalError::ItemCount {
            model: scorer.n_items(),
            dataset: n_items,
        });
    }
    Ok(n_items)
}

/// Ranks every user's held-out item of `split` over all items (full ranking). Users are scored
/// in parallel, each independently, so the result does not depend on the thread count.
///
/// Equal to [`reference::rank_targets`] in every case; with several failing users this one
/// reports the lowest user's error.
pub fn rank_targets<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    split: Split,
) -> Result<Ranks, EvalError> {
    let n_items = check_item_count(scorer, dataset)?;
    let Some(dot) = scorer.as_dot().filter(|d| blocked::applicable(*d, n_items)) else {
        return reference::rank_targets(scorer, dataset, split);
    };
    let ranks = blocked::run(scorer, dot, dataset, blocked::Task::Rank(split))?
        .into_iter()
        .map(|o| match o {
            blocked::Outcome::Rank(r) => r,
            blocked::Outcome::TopK(_) => unreachable!("a rank task yields ranks"),
        })
        .collect();
    Ok(Ranks { split, ranks })
}

/// Every user's top-`k` (`(item, score)`, best first) over items not in train + valid; the
/// lists of the candidate export. Equal to what [`reference::top_k_lists`] holds.
pub(crate) fn top_k_per_user<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    k: usize,
) -> Result<Vec<Vec<(u32, f32)>>, EvalError> {
    let n_items = check_item_count(scorer, dataset)?;
    let Some(dot) = scorer.as_dot().filter(|d| blocked::applicable(*d, n_items)) else {
        return Ok(reference::top_k_lists(scorer, dataset, k)?
            .into_iter()
            .map(|l| l.items.into_iter().zip(l.scores).collect())
            .collect());
    };
    Ok(blocked::run(scorer, dot, dataset, blocked::Task::TopK(k))?
        .into_iter()
        .map(|o| match o {
            blocked::Outcome::TopK(t) => t,
            blocked::Outcome::Rank(_) => unreachable!("a top-k task yields lists"),
        })
        .collect())
}

impl Ranks {
    pub fn n_users(&self) -> usize {
        self.ranks.len()
    }

    /// Users whose target is in the top `k`.
    pub fn hits(&self, k: usize) -> usize {
        self.ranks
            .iter()
            .filter(|r| matches!(r, Some(r) if (*r as usize) < k))
            .count()
    }

    /// HR@K: fraction of users whose target is in the top K.
    pub fn hr(&self, k: usize) -> f64 {
        self.mean(|r| if (r as usize) < k { 1.0 } else { 0.0 })
    }

    /// Recall@K = |relevant ∩ top K| / |relevant|; with one relevant item, equal to [`Self::hr`].
    pub fn recall(&self, k: usize) -> f64 {
        self.hr(k)
    }

    /// NDCG@K with binary gain and one relevant item: 1/log2(rank + 2) inside the top K (IDCG = 1).
    pub fn ndcg(&self, k: usize) -> f64 {
        self.mean(|r| {
            if (r as usize) < k {
                1.0 / (r as f64 + 2.0).log2()
            } else {
                0.0
            }
        })
    }

    /// Mean reciprocal rank over the full ranking (not truncated).
    pub fn mrr(&self) -> f64 {
        self.mean(|r| 1.0 / (r as f64 + 1.0))
    }

    /// Averages `f(rank)` over users (a masked target contributes 0); summed in user order so
    /// the value is the same bit for bit on every run.
    fn mean(&self, f: impl Fn(u32) -> f64) -> f64 {
        if self.ranks.is_empty() {
            return 0.0;
        }
        let total: f64 = self.ranks.iter().map(|r| r.map_or(0.0, &f)).sum();
        total / self.ranks.len() as f64
    }

    /// `recall@K`, `ndcg@K`, `hr@K` for each K, plus `mrr`: the names the CLI JSON uses.
    pub fn summary(&self, ks: &[usize]) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for &k in ks {
            m.insert(format!("recall@{k}"), self.recall(k));
            m.insert(format!("ndcg@{k}"), self.ndcg(k));
            m.insert(format!("hr@{k}"), self.hr(k));
        }
        m.insert("mrr".to_owned(), self.mrr());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::tiny as tiny_dataset;

    /// Scores item i as `-(i as f32)`: item 0 best, whatever the user.
    struct ById(usize);
    impl Scorer for ById {
        fn n_items(&self) -> usize {
            self.0
        }
        fn score_user(&self, _: u32, _: &[u32], out: &mut [f32]) {
            for (i, s) in out.iter_mut().enumerate() {
                *s = -(i as f32);
            }
        }
    }

    #[test]
    fn top_k_orders_by_score_then_id_and_skips_masked() {
        let s = [0.5, 2.0, f32::NEG_INFINITY, 2.0, 1.0, 3.0];
        assert_eq!(top_k(&s, 3), vec![(5, 3.0), (1, 2.0), (3, 2.0)]);
        assert_eq!(top_k(&s, 10).len(), 5);
        assert!(top_k(&s, 0).is_empty());
        // The rank agrees with the list position, ties included.
        for (pos, &(item, _)) in top_k(&s, 5).iter().enumerate() {
            assert_eq!(rank_of(&s, item), Some(pos as u32));
        }
        assert_eq!(rank_of(&s, 2), None);
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let r = Ranks {
            split: Split::Test,
            ranks: vec![Some(0), Some(4), None, Some(30)],
        };
        assert_eq!(r.hits(5), 2);
        assert_eq!(r.hr(5), 0.5);
        assert_eq!(r.recall(1), 0.25);
        let ndcg5 = (1.0 + 1.0 / 6f64.log2()) / 4.0;
        assert!((r.ndcg(5) - ndcg5).abs() < 1e-12);
        let mrr = (1.0 + 0.2 + 1.0 / 31.0) / 4.0;
        assert!((r.mrr() - mrr).abs() < 1e-12);
        let s = r.summary(&[5]);
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["hr@5", "mrr", "ndcg@5", "recall@5"]
        );
    }

    #[test]
    fn history_is_masked_per_split() {
        let ds = tiny_dataset();
        let m = ById(ds.n_items());
        let valid = rank_targets(&m, &ds, Split::Valid).unwrap();
        let test = rank_targets(&m, &ds, Split::Test).unwrap();
        for u in 0..ds.n_users() as u32 {
            for (split, ranks) in [(Split::Valid, &valid), (Split::Test, &test)] {
                let h = split.history(&ds, u);
                let t = split.target(&ds, u);
                let expected =
                    (!h.contains(&t)).then(|| (0..t).filter(|i| !h.contains(i)).count() as u32);
                assert_eq!(ranks.ranks[u as usize], expected, "user {u} {split:?}");
            }
        }
    }

    #[test]
    fn non_finite_scores_and_item_count_mismatch_are_errors() {
        struct Nan;
        impl Scorer for Nan {
            fn n_items(&self) -> usize {
                7
            }
            fn score_user(&self, _: u32, _: &[u32], out: &mut [f32]) {
                out.fill(1.0);
                out[3] = f32::NAN;
            }
        }
        let ds = tiny_dataset();
        let err = rank_targets(&Nan, &ds, Split::Test).unwrap_err();
        assert!(matches!(err, EvalError::NonFinite { item: 3, .. }), "{err}");
        let err = rank_targets(&ById(3), &ds, Split::Test).unwrap_err();
        assert_eq!(
            err,
            EvalError::ItemCount {
                model: 3,
                dataset: 7
            }
        );
    }
}
