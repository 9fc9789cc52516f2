//! The per-user evaluation path: score one user's full row with [`Scorer::score_user`], mask,
//! then [`rank_of`] / [`top_k`].
//!
//! This is the definition the blocked path ([`super::blocked`]) must reproduce bit for bit, so
//! it stays public: the identity tests and the benchmark compare against it. It is also what
//! evaluation runs for scorers without a [`crate::DotScorer`] (popularity) and for single
//! users the blocked path cannot certify (non-finite or huge vectors, history items out of
//! range, a history the model has no vector for).

use super::{EvalError, Split, check_item_count, masked_scores, rank_of, top_k};
use crate::Scorer;
use agp_datasets::Dataset;
use agp_datasets::candidates::RankedList;
use rayon::prelude::*;

/// One user's 0-based target rank on `split`; `buf` is scratch of length `n_items`.
pub fn rank_user<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    split: Split,
    user: u32,
    buf: &mut [f32],
) -> Result<Option<u32>, EvalError> {
    let n_items = buf.len();
    let target = split.target(dataset, user);
    if target as usize >= n_items {
        return Err(EvalError::ItemOutOfRange {
            user,
            item: target,
            n_items,
        });
    }
    masked_scores(scorer, user, &split.history(dataset, user), buf)?;
    Ok(rank_of(buf, target))
}

/// One user's top-`k` over items outside train + valid, as `(item, score)`, best first.
pub fn top_k_user<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    user: u32,
    k: usize,
    buf: &mut [f32],
) -> Result<Vec<(u32, f32)>, EvalError> {
    masked_scores(scorer, user, &Split::Test.history(dataset, user), buf)?;
    Ok(top_k(buf, k))
}

/// [`super::rank_targets`] computed user by user.
pub fn rank_targets<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    split: Split,
) -> Result<super::Ranks, EvalError> {
    let n_items = check_item_count(scorer, dataset)?;
    let ranks = (0..dataset.n_users() as u32)
        .into_par_iter()
        .map_init(
            || vec![0f32; n_items],
            |buf, u| rank_user(scorer, dataset, split, u, buf),
        )
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::Ranks { split, ranks })
}

/// [`crate::export::top_k_lists`] computed user by user.
pub fn top_k_lists<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    k: usize,
) -> Result<Vec<RankedList>, EvalError> {
    let n_items = check_item_count(scorer, dataset)?;
    (0..dataset.n_users() as u32)
        .into_par_iter()
        .map_init(
            || vec![0f32; n_items],
            |buf, u| {
                let (items, scores) = top_k_user(scorer, dataset, u, k, buf)?.into_iter().unzip();
                Ok(RankedList {
                    user: u,
                    items,
                    scores,
                })
            },
        )
        .collect()
}
