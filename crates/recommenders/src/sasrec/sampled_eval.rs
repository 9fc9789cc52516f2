//! The original SASRec protocol: rank the held-out item among itself and 100 items drawn
//! uniformly from those the user did not train on; report HR@10 and NDCG@10.
//!
//! As kang205/SASRec `util.evaluate`: the exclusion set is the training sequence only (the
//! validation item may be drawn as a negative at test time), negatives may repeat, users with
//! an empty training sequence are skipped. Unlike the TF code, all users are evaluated (it
//! samples 10,000 when there are more) and every user's negatives come from their own seeded
//! stream, so results do not depend on the thread count. A negative that ties the target does
//! not push it down.

use crate::Scorer;
use crate::eval::{EvalError, Split};
use agp_datasets::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampledMetrics {
    /// Fraction of users whose target ranks in the top 10 of the `1 + n_negatives` candidates.
    pub hr10: f64,
    /// `1/log2(rank + 2)` inside the top 10, averaged over users.
    pub ndcg10: f64,
    pub users: usize,
    pub n_negatives: usize,
}

/// Evaluates `scorer` on `split` with `n_negatives` sampled negatives per user (100 in the paper).
pub fn sampled_eval<S: Scorer + ?Sized>(
    scorer: &S,
    dataset: &Dataset,
    split: Split,
    n_negatives: usize,
    seed: u64,
) -> Result<SampledMetrics, EvalError> {
    let n_items = crate::eval::check_item_count(scorer, dataset)?;
    let ranks: Vec<Option<usize>> = (0..dataset.n_users() as u32)
        .into_par_iter()
        .map_init(
            || vec![0f32; n_items],
            |buf, u| -> Result<Option<usize>, EvalError> {
                let train = &dataset.train[u as usize];
                if train.is_empty() {
                    return Ok(None);
                }
                let mut seen = train.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() >= n_items {
                    return Ok(None);
                }
                let target = split.target(dataset, u);
                if target as usize >= n_items {
                    return Err(EvalError::ItemOutOfRange {
                        user: u,
                        item: target,
                        n_items,
                    });
                }
                scorer.score_user(u, &split.history(dataset, u), buf);
                let st = buf[target as usize];
                if !st.is_finite() {
                    return Err(EvalError::NonFinite {
                        user: u,
                        item: target,
                        score: st,
                    });
                }
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(u as u64);
                let mut above = 0;
                for _ in 0..n_negatives {
                    let i = loop {
                        let i = rng.random_range(0..n_items as u32);
                        if seen.binary_search(&i).is_err() {
                            break i;
                        }
                    };
                    if buf[i as usize] > st {
                        above += 1;
                    }
                }
                Ok(Some(above))
            },
        )
        .collect::<Result<_, _>>()?;
    let evaluated: Vec<usize> = ranks.into_iter().flatten().collect();
    let users = evaluated.len();
    let denom = users.max(1) as f64;
    let hr10 = evaluated.iter().filter(|&&r| r < 10).count() as f64 / denom;
    let ndcg10 = evaluated
        .iter()
        .filter(|&&r| r < 10)
        .map(|&r| 1.0 / (r as f64 + 2.0).log2())
        .sum::<f64>()
        / denom;
    Ok(SampledMetrics {
        hr10,
        ndcg10,
        users,
        n_negatives,
    })
}
