//! The most-popular baseline: every user gets the items ranked by training interaction count.
//! Printed beside every backbone, so a model that learnt nothing shows at once.

use crate::Scorer;
use agp_datasets::Dataset;

#[derive(Debug, Clone)]
pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    /// Counts each item's occurrences in the training sequences only (never valid/test, which
    /// would leak the targets).
    pub fn fit(dataset: &Dataset) -> Self {
        let mut counts = vec![0f32; dataset.n_items()];
        for seq in &dataset.train {
            for &i in seq {
                if let Some(c) = counts.get_mut(i as usize) {
                    *c += 1.0;
                }
            }
        }
        Self { counts }
    }
}

impl Scorer for Popularity {
    fn n_items(&self) -> usize {
        self.counts.len()
    }
    fn score_user(&self, _user: u32, _history: &[u32], out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{Split, rank_targets};
    use crate::synthetic;

    #[test]
    fn ranks_by_training_count() {
        let ds = synthetic::tiny();
        let pop = Popularity::fit(&ds);
        let mut out = vec![0.0; ds.n_items()];
        pop.score_user(0, &[], &mut out);
        let expected: Vec<f32> = (0..ds.n_items() as u32)
            .map(|i| ds.train.iter().flatten().filter(|&&j| j == i).count() as f32)
            .collect();
        assert_eq!(out, expected);
        let ranks = rank_targets(&pop, &ds, Split::Test).unwrap();
        assert_eq!(ranks.n_users(), ds.n_users());
    }
}
